"""Heartbeat monitors: late by their grace time, an alert on their route; a check-in resolves it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.alerts import IngestResult
from gateway.app import create_app
from gateway.config import load_config
from gateway.heartbeats import Heartbeats
from gateway.signals import AlertSignal
from gateway.web.maintenance import HEARTBEATS
from tests.postgres import PgDatabase
from tests.support import ALICE, BASE_CONFIG, CAROL, TOKEN, Gateway, eventually, write_config

CONFIG = BASE_CONFIG.replace(
    f"    token: {TOKEN}\n",
    f"    token: {TOKEN}\n  - {{name: watcher, token: viewer-token, role: viewer}}\n",
) + """
heartbeats:
  backup:
    interval: 1h
    grace: 10m
    labels: {team: dba}
    summary: Nightly backup did not check in
  sync:
    interval: 30m
    team: sre
    priority: high
"""
MINUTE = 60.0


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, CONFIG)), clock=clock))
    yield Gateway(client, clock)


async def _heartbeats(gateway: Gateway) -> dict[str, dict[str, Any]]:
    status, body = await gateway.get("/api/v1/heartbeats", headers={"Authorization": "Bearer viewer-token"})
    assert status == 200, body
    return {item["name"]: item for item in body["heartbeats"]}


async def _open_alert(gateway: Gateway, name: str) -> dict[str, Any] | None:
    status, body = await gateway.get("/api/v1/alerts?status=triggered")
    assert status == 200
    found = [a for a in body["alerts"] if a["dedup_key"] == f"heartbeat:{name}"]
    return found[0] if found else None


async def test_a_late_heartbeat_triggers_an_alert_on_its_route_and_a_check_in_resolves_it(gateway: Gateway) -> None:
    listed = await _heartbeats(gateway)
    assert (listed["backup"]["state"], listed["backup"]["last_check_in"]) == ("never", None)
    assert listed["backup"]["deadline"] == "2026-01-07T13:10:00Z"  # from the gateway's start

    status, body = await gateway.post("/api/v1/heartbeats/backup")
    assert status == 200 and body["state"] == "ok" and body["last_check_in"] == "2026-01-07T12:00:00Z", body
    await gateway.clock.advance(69 * MINUTE)  # 13:09: not late yet (1 h + 10 min grace)
    await _service(gateway).check_deadlines()
    assert await _open_alert(gateway, "backup") is None
    await gateway.clock.advance(MINUTE)  # 13:10

    async def late() -> dict[str, Any] | None:
        return await _open_alert(gateway, "backup")

    alert = await eventually(late)
    assert (alert["team"], alert["route"], alert["source"], alert["summary"]) == (
        "dba", "dba", "heartbeat", "Nightly backup did not check in")
    await gateway.alert_where(alert["id"], lambda a: len(a["pages"]) == 1)  # the dba route texts carol
    assert (await _heartbeats(gateway))["backup"]["state"] == "late"
    await gateway.clock.advance(30 * MINUTE)
    assert len((await gateway.get("/api/v1/alerts"))[1]["alerts"]) == 2  # still one per heartbeat (sync too)

    status, body = await gateway.post("/api/v1/heartbeats/backup")
    assert status == 200 and body["state"] == "ok"
    resolved = await gateway.alert(alert["id"])
    assert resolved["status"] == "resolved"
    assert any("heartbeat backup checked in (token tests)" in t["message"] for t in resolved["timeline"])
    assert await _open_alert(gateway, "backup") is None
    await gateway.clock.advance(69 * MINUTE)
    await _service(gateway).check_deadlines()
    assert await _open_alert(gateway, "backup") is None
    await gateway.clock.advance(2 * MINUTE)  # late again: a new alert
    again = await eventually(late)
    assert again["id"] != alert["id"]


async def test_a_heartbeat_never_seen_counts_from_start_and_may_name_its_team(gateway: Gateway) -> None:
    await gateway.clock.advance(29 * MINUTE)
    await _service(gateway).check_deadlines()
    assert await _open_alert(gateway, "sync") is None
    await gateway.clock.advance(MINUTE)

    async def late() -> dict[str, Any] | None:
        return await _open_alert(gateway, "sync")

    alert = await eventually(late)
    assert (alert["team"], alert["priority"]) == ("sre", "high")
    await gateway.ringing(ALICE)
    assert (await gateway.phone(CAROL))["calls"] == 0


async def test_unknown_heartbeat_is_404_and_a_viewer_may_not_check_in(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/heartbeats/nope")
    assert status == 404 and body["error"] == "not_found"
    status, body = await gateway.post("/api/v1/heartbeats/backup", headers={"Authorization": "Bearer viewer-token"})
    assert status == 403
    assert (await _heartbeats(gateway))["backup"]["last_check_in"] is None


async def test_check_ins_are_shared_and_lateness_is_one_alert_across_gateways(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_PG_PASSWORD", pg_database.password or "")
    text = CONFIG.replace("store:\n  path: gateway.db\n",
                          f'store: {{url: "{pg_database.url}", password_env: GATEWAY_TEST_PG_PASSWORD}}\n')
    config = load_config(write_config(tmp_path, text))
    clock = FakeClock()
    one = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
    two = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
    status, _ = await one.post("/api/v1/heartbeats/backup")
    assert status == 200
    assert (await _heartbeats(two))["backup"]["last_check_in"] == "2026-01-07T12:00:00Z"
    await clock.advance(71 * MINUTE)

    async def late() -> dict[str, Any] | None:
        return await _open_alert(two, "backup")

    alert = await eventually(late)
    await clock.advance(1)
    status, body = await one.get("/api/v1/alerts")
    assert [a["dedup_key"] for a in body["alerts"]].count("heartbeat:backup") == 1
    status, _ = await two.post("/api/v1/heartbeats/backup")
    assert status == 200
    assert (await one.alert(alert["id"]))["status"] == "resolved"


def _service(gateway: Gateway) -> Heartbeats:
    return gateway.client.server.app[HEARTBEATS]


async def _resolve_by_hand(gateway: Gateway, alert_id: int) -> None:
    status, body = await gateway.post(f"/api/v1/alerts/{alert_id}/resolve")
    assert status == 200, body


async def test_an_alert_resolved_by_hand_while_still_late_triggers_again_after_interval_and_grace(
    gateway: Gateway,
) -> None:
    status, _ = await gateway.post("/api/v1/heartbeats/backup")
    assert status == 200
    await gateway.clock.advance(70 * MINUTE)  # 13:10: late

    async def late() -> dict[str, Any] | None:
        return await _open_alert(gateway, "backup")

    first = await eventually(late)
    await gateway.clock.advance(5 * MINUTE)
    await _resolve_by_hand(gateway, first["id"])  # 13:15, and still no check-in
    for minutes in (1, 68):  # 13:16, 14:24: the monitor looks (here, at once) and leaves it resolved
        await gateway.clock.advance(minutes * MINUTE)
        await _service(gateway).check_deadlines()
        assert await _open_alert(gateway, "backup") is None
    await gateway.clock.advance(MINUTE)  # 14:25: a whole interval + grace since the resolve
    again = await eventually(late)
    assert again["id"] != first["id"]


async def test_a_restart_does_not_alert_again_for_a_lateness_resolved_by_hand(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    path = write_config(tmp_path, CONFIG)
    first_clock = FakeClock()
    one = Gateway(await aiohttp_client(create_app(load_config(path), clock=first_clock)), first_clock)
    status, _ = await one.post("/api/v1/heartbeats/backup")
    assert status == 200
    await one.clock.advance(70 * MINUTE)

    async def late() -> dict[str, Any] | None:
        return await _open_alert(one, "backup")

    alert = await eventually(late)
    await _resolve_by_hand(one, alert["id"])  # 13:10
    await one.client.close()

    clock = FakeClock(start=one.clock.now() + 10 * MINUTE)  # 13:20: still late, its lateness resolved by hand
    two = Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)
    await _service(two).check_deadlines()
    assert await _open_alert(two, "backup") is None  # not at once
    await clock.advance(59 * MINUTE)  # 14:19
    await _service(two).check_deadlines()
    assert await _open_alert(two, "backup") is None
    await clock.advance(MINUTE)  # 14:20: interval + grace after the resolve

    async def late_again() -> dict[str, Any] | None:
        return await _open_alert(two, "backup")

    assert (await eventually(late_again))["id"] != alert["id"]


async def test_a_check_in_while_the_late_alert_is_written_resolves_it(gateway: Gateway,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    service = _service(gateway)
    ingest = service.alerts.ingest

    async def checked_in_meanwhile(signal: AlertSignal) -> IngestResult:
        if signal.dedup_key == "heartbeat:backup":  # the job checks in just as the monitor finds it late
            await service.store.heartbeat_seen("backup", now=gateway.clock.now())
            assert await service.store.find_open_alert("heartbeat:backup") is None  # nothing to resolve yet
        return await ingest(signal)

    monkeypatch.setattr(service.alerts, "ingest", checked_in_meanwhile)
    status, _ = await gateway.post("/api/v1/heartbeats/backup")
    assert status == 200
    await gateway.clock.advance(70 * MINUTE)

    async def resolved() -> dict[str, Any] | None:
        alerts = (await gateway.get("/api/v1/alerts"))[1]["alerts"]
        found = [a for a in alerts if a["dedup_key"] == "heartbeat:backup" and a["status"] == "resolved"]
        return found[0] if found else None

    alert = await gateway.alert((await eventually(resolved))["id"])
    assert any("checked in as it was found late" in t["message"] for t in alert["timeline"])
