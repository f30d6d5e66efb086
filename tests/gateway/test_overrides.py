"""Overrides added at run time: the API, at once in /api/v1/oncall, the escalations and ``gateway oncall``,
and on every gateway sharing one PostgreSQL."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import gateway.overrides as overrides_module
import gateway.web.overrides as overrides_web
from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import Config, load_config
from gateway.overrides import Schedule
from gateway.pg_store import PgStore
from gateway.store import NewOverride
from tests.postgres import PgDatabase
from tests.support import ALICE, AUTH, BASE_CONFIG, BOB, TOKEN, Gateway, eventually, write_config

# The clock starts at 2026-01-07T12:00Z: in team sre's first week alice is primary, bob secondary.
CONFIG = BASE_CONFIG.replace(
    f"    token: {TOKEN}\n",
    f"    token: {TOKEN}\n  - {{name: watcher, token: viewer-token, role: viewer}}\n",
).replace(
    '    rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: UTC}\n',
    '    rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: UTC}\n'
    '    overrides:\n'
    '      - {start: "2026-01-20T00:00Z", end: "2026-01-21T00:00Z", engineer: bob, role: primary}\n',
)
SWAP = {"role": "primary", "engineer": "bob", "start": "2026-01-07T10:00:00Z", "end": "2026-01-08T10:00:00+00:00"}


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, CONFIG)), clock=clock))
    yield Gateway(client, clock)


async def _primary(gateway: Gateway) -> str:
    status, body = await gateway.get("/api/v1/oncall?team=sre")
    assert status == 200, body
    return str(body["teams"][0]["primary"]["id"])


async def test_an_override_added_and_removed_takes_effect_at_once(gateway: Gateway) -> None:
    assert await _primary(gateway) == "alice"
    status, added = await gateway.post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 201, added
    assert (added["source"], added["created_by"], added["engineer"]["id"]) == ("api", "tests", "bob")
    assert await _primary(gateway) == "bob"
    status, body = await gateway.get("/api/v1/oncall?team=sre")
    assert body["teams"][0]["secondary"]["id"] == "alice"  # swapped
    assert body["teams"][0]["until"] == "2026-01-08T10:00:00Z"
    status, listed = await gateway.get("/api/v1/teams/sre/overrides", headers={"Authorization": "Bearer viewer-token"})
    assert status == 200
    assert [(o["source"], o.get("id"), o["engineer"]["id"]) for o in listed["overrides"]] == [
        ("config", None, "bob"), ("api", added["id"], "bob")]
    async with gateway.client.delete(f"/api/v1/teams/sre/overrides/{added['id']}", headers=AUTH) as resp:
        assert resp.status == 200
        assert (await resp.json())["deleted_by"] == "tests"
    assert await _primary(gateway) == "alice"
    async with gateway.client.delete(f"/api/v1/teams/sre/overrides/{added['id']}", headers=AUTH) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"


async def test_the_next_escalation_step_pages_whoever_an_override_put_on_call(gateway: Gateway) -> None:
    status, _ = await gateway.post("/api/v1/teams/sre/overrides", {**SWAP, "engineer": "bob"})
    assert status == 201
    status, created = await gateway.post("/api/v1/alerts", {"summary": "disk", "team": "sre"})
    assert status == 202, created

    async def paged() -> list[str]:
        return [p["engineer"] for p in (await gateway.alert(created["id"]))["pages"]]

    assert (await eventually(paged))[0] == "bob"


@pytest.mark.parametrize(("change", "field"), [
    ({"engineer": "carol"}, "engineer"),  # not a member of sre
    ({"engineer": 7}, "engineer"),
    ({"role": "tertiary"}, "role"),
    ({"start": "2026-01-07T10:00:00"}, "start"),  # no offset
    ({"start": "tomorrow"}, "start"),
    ({"end": "2026-01-07T09:00:00Z"}, "end"),  # before start
    ({"end": "2026-05-01T00:00:00Z"}, "end"),  # longer than 90 days
    ({"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}, "end"),  # over already
])
async def test_a_bad_override_is_refused_naming_the_field(gateway: Gateway, change: dict[str, Any],
                                                          field: str) -> None:
    status, body = await gateway.post("/api/v1/teams/sre/overrides", {**SWAP, **change})
    assert status == 422 and body["details"]["field"] == field, body
    status, listed = await gateway.get("/api/v1/teams/sre/overrides")
    assert [o["source"] for o in listed["overrides"]] == ["config"]


async def test_unknown_team_is_404_and_a_viewer_may_not_add(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/teams/nope/overrides", SWAP)
    assert status == 404, body
    status, body = await gateway.post("/api/v1/teams/sre/overrides", SWAP,
                                      headers={"Authorization": "Bearer viewer-token"})
    assert status == 403 and body["details"]["role_needed"] == "responder", body


def _cli_oncall(config: Path, *extra: str) -> str:
    result = subprocess.run([sys.executable, "-m", "gateway", "oncall", str(config), "--team", "sre", *extra],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_gateway_oncall_reads_the_stores_overrides_and_works_without_a_store(
    gateway: Gateway, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    status, _ = await gateway.post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 201
    at = "2026-01-07T12:00:00+00:00"
    assert "sre   Bob" in _cli_oncall(config, "--at", at)
    assert "sre   Alice" in _cli_oncall(config, "--at", at, "--config-only")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    alone = write_config(elsewhere, CONFIG)  # its store (elsewhere/gateway.db) does not exist
    assert "sre   Alice" in _cli_oncall(alone, "--at", at)
    assert not (elsewhere / "gateway.db").exists()  # and is not created


async def test_an_override_added_on_one_gateway_reaches_another_on_the_same_postgresql(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_PG_PASSWORD", pg_database.password or "")
    text = CONFIG.replace("store:\n  path: gateway.db\n",
                          f'store: {{url: "{pg_database.url}", password_env: GATEWAY_TEST_PG_PASSWORD}}\n')
    config = load_config(write_config(tmp_path, text))
    one = Gateway(await aiohttp_client(create_app(config, clock=FakeClock())), FakeClock())
    two = Gateway(await aiohttp_client(create_app(config, clock=FakeClock())), FakeClock())
    assert await _primary(two) == "alice"
    status, added = await one.post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 201, added

    async def primary_on_two() -> bool:
        return await _primary(two) == "bob"

    await eventually(primary_on_two)
    assert "sre   Bob" in _cli_oncall(tmp_path / "gateway.yaml", "--at", "2026-01-07T12:00:00+00:00")
    async with one.client.delete(f"/api/v1/teams/sre/overrides/{added['id']}", headers=AUTH) as resp:
        assert resp.status == 200

    async def back_on_two() -> bool:
        return await _primary(two) == "alice"

    await eventually(back_on_two)
    assert "sre   Alice" in _cli_oncall(tmp_path / "gateway.yaml", "--at", "2026-01-07T12:00:00+00:00")


async def test_the_hotline_screens_whoever_an_override_put_on_call(aiohttp_client: Callable[..., Any],
                                                                   tmp_path: Path) -> None:
    from tests.gateway.test_hotline_story import HOTLINE_CONFIG, _dial

    clock = FakeClock()
    hotline = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, HOTLINE_CONFIG)),
                                                      clock=clock)), clock)
    status, _ = await hotline.post("/api/v1/teams/sre/overrides", SWAP)  # bob primary, alice secondary
    assert status == 201
    await _dial(hotline, "1")
    bob = await hotline.ringing(BOB)
    assert bob["call"]["state"] == "ringing"
    assert (await hotline.phone(ALICE))["call"] is None  # the rotation's primary is not called first


# bob leaves: gone from the engineers and from team sre (and from the YAML's own override)
WITHOUT_BOB = (CONFIG.replace('  bob: {name: Bob, phones: ["+15550000002"]}\n', "")
               .replace("members: [alice, bob]", "members: [alice]")
               .replace('      - {start: "2026-01-20T00:00Z", end: "2026-01-21T00:00Z", engineer: bob, '
                        'role: primary}\n', "").replace("    overrides:\n", ""))


async def test_a_stored_override_of_a_former_member_is_ignored_with_a_warning(
    aiohttp_client: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    assert "bob" not in WITHOUT_BOB
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, CONFIG)), clock=FakeClock()))
    status, added = await Gateway(client, FakeClock()).post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 201, added
    await client.close()

    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="gateway.overrides"):
        after = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, WITHOUT_BOB)),
                                                        clock=clock)), clock)
        assert await _primary(after) == "alice"  # was a 500 (bob is no engineer any more)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"override {added['id']} " in m and "bob" in m for m in warnings), warnings
    status, listed = await after.get("/api/v1/teams/sre/overrides")
    assert [o["engineer"]["id"] for o in listed["overrides"]] == ["bob"]  # still listed: it can be removed

    status, call = await after.post("/api/v1/calls", {"team": "sre", "message": "db down"})
    assert status == 202, call  # was a 500
    assert [p["engineer"] for p in call["pages"]] == ["alice"]

    status, created = await after.post("/api/v1/alerts", {"summary": "disk", "team": "sre"})
    assert status == 202, created

    async def paged() -> list[str]:
        return [p["engineer"] for p in (await after.alert(created["id"]))["pages"]]

    assert await eventually(paged) == ["alice"]  # the step was skipped: nobody paged


def _on_postgresql(tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("GATEWAY_TEST_PG_PASSWORD", pg_database.password or "")
    text = CONFIG.replace("store:\n  path: gateway.db\n",
                          f'store: {{url: "{pg_database.url}", password_env: GATEWAY_TEST_PG_PASSWORD}}\n')
    return load_config(write_config(tmp_path, text))


BOB_TODAY = NewOverride(team="sre", role="primary", engineer="bob", start=1767780000.0, end=1767866400.0,
                        created_by="other")  # 2026-01-07T10:00Z to 2026-01-08T10:00Z


async def test_an_override_committed_while_a_gateway_starts_is_seen_by_it(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another gateway adds an override after this one first read them and before it listens for pushes."""
    config = _on_postgresql(tmp_path, pg_database, monkeypatch)
    other = PgStore(pg_database.url, password=pg_database.password)
    await other.open()
    real_load, loads = Schedule.load, []

    async def load_then_another_gateway_adds(self: Schedule) -> None:
        await real_load(self)
        loads.append(1)
        if len(loads) == 1:
            await other.add_override(BOB_TODAY, now=1767787200.0)

    monkeypatch.setattr(Schedule, "load", load_then_another_gateway_adds)
    clock = FakeClock()
    try:
        gateway = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
        assert await _primary(gateway) == "bob"  # was alice until sre changed again
    finally:
        await other.close()


async def test_a_push_whose_handling_fails_makes_the_gateway_read_every_team_again(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _on_postgresql(tmp_path, pg_database, monkeypatch)

    async def failing_reload(self: Schedule, team_id: str) -> None:
        raise RuntimeError("reload failed")

    monkeypatch.setattr(Schedule, "reload", failing_reload)
    await _another_gateway_adds_and_this_one_sees(aiohttp_client, config, pg_database)


async def test_a_lost_push_is_made_up_for_by_reading_the_overrides_again_now_and_then(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = _on_postgresql(tmp_path, pg_database, monkeypatch)

    async def lost(self: Schedule, team_id: str) -> None:
        pass  # as if the push never arrived

    monkeypatch.setattr(Schedule, "reload", lost)
    monkeypatch.setattr(overrides_module, "REFRESH_S", 0.05)  # every 60 s in production
    await _another_gateway_adds_and_this_one_sees(aiohttp_client, config, pg_database)


async def _another_gateway_adds_and_this_one_sees(aiohttp_client: Callable[..., Any], config: Config,
                                                  pg_database: PgDatabase) -> None:
    other = PgStore(pg_database.url, password=pg_database.password)
    await other.open()
    clock = FakeClock()
    try:
        gateway = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
        assert await _primary(gateway) == "alice"
        await other.add_override(BOB_TODAY, now=1767787200.0)

        async def bob_primary() -> bool:
            return await _primary(gateway) == "bob"

        await eventually(bob_primary)
    finally:
        await other.close()


async def test_a_team_has_at_most_so_many_overrides_not_ended_yet(gateway: Gateway,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(overrides_web, "MAX_LIVE", 2)
    soon = {**SWAP, "start": "2026-01-07T12:00:00Z", "end": "2026-01-07T13:00:00Z"}
    for body in (soon, SWAP):
        status, _ = await gateway.post("/api/v1/teams/sre/overrides", body)
        assert status == 201
    status, refused = await gateway.post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 409 and refused["error"] == "too_many_overrides", refused
    assert refused["details"] == {"team": "sre", "limit": 2}
    status, _ = await gateway.post("/api/v1/teams/dba/overrides", {**SWAP, "engineer": "carol"})
    assert status == 201  # per team
    await gateway.clock.advance(3600)  # the first one ended: it no longer counts
    status, _ = await gateway.post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 201


async def test_an_override_long_over_is_left_out_of_the_schedule(gateway: Gateway) -> None:
    status, _ = await gateway.post("/api/v1/teams/sre/overrides", SWAP)
    assert status == 201
    during = "/api/v1/oncall?team=sre&at=2026-01-07T12:00:00Z"
    assert (await gateway.get(during))[1]["teams"][0]["primary"]["id"] == "bob"
    await gateway.clock.advance(timedelta(weeks=9, days=2).total_seconds())  # it ended nine weeks and a day ago
    status, _ = await gateway.post("/api/v1/teams/sre/overrides", {
        **SWAP, "start": "2026-03-20T00:00:00Z", "end": "2026-03-21T00:00:00Z"})
    assert status == 201  # a change: the team is built again (and every REFRESH_S anyway)
    assert (await gateway.get(during))[1]["teams"][0]["primary"]["id"] == "alice"
