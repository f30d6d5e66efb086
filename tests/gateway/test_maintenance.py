"""Maintenance windows: matching alerts are recorded, not paged (or paged at low priority), and page when the
window ends while they are still open; across a restart and across gateways sharing one PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import ConfigError, load_config
from gateway.web.maintenance import MAINTENANCE
from tests.postgres import PgDatabase
from tests.support import ALICE, AUTH, BASE_CONFIG, TOKEN, Gateway, eventually, write_config

# The clock starts at Wednesday 2026-01-07T12:00Z; alice is sre's primary that week.
CONFIG = BASE_CONFIG.replace(
    f"    token: {TOKEN}\n",
    f"    token: {TOKEN}\n  - {{name: watcher, token: viewer-token, role: viewer}}\n",
) + """
time_windows:
  wednesday_lunch: {weekly: [{days: wed, from: "11:30", to: "13:30"}]}
maintenance:
  - name: db-upgrade
    matchers: ['service="db"']
    start: "2026-01-07T11:00"
    end: "2026-01-07T13:00"
    comment: Postgres upgrade
  - name: lunch
    matchers: ['service="cache"']
    during: [wednesday_lunch]
  - name: batch-quiet
    matchers: ['service="batch"']
    start: "2026-01-07T00:00Z"
    end: "2026-01-08T00:00Z"
    action: low_priority
"""
HOUR = 3600.0


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, CONFIG)), clock=clock))
    yield Gateway(client, clock)


async def _trigger(gateway: Gateway, service: str, key: str) -> dict[str, Any]:
    status, body = await gateway.post("/api/v1/alerts", {"summary": f"{service} down", "dedup_key": key,
                                                         "labels": {"service": service}, "team": "sre"})
    assert status == 202, body
    return await gateway.alert(body["id"])


async def _paged(gateway: Gateway, alert_id: int) -> dict[str, Any]:
    return await gateway.alert_where(alert_id, lambda a: len(a["pages"]) > 0)


async def _still_held(gateway: Gateway, alert_id: int) -> bool:
    """Whether ``alert_id`` is still held once the gateway has looked at its holds (now, not some time later)."""
    service = gateway.client.server.app[MAINTENANCE]
    await service.release_due()
    return alert_id in [hold.alert_id for hold in await service.store.list_holds()]


def _notes(alert: dict[str, Any], kind: str | None = None) -> list[str]:
    return [t["message"] for t in alert["timeline"] if kind is None or t["kind"] == kind]


async def test_an_alert_in_a_window_is_recorded_not_paged_and_pages_when_the_window_ends(gateway: Gateway) -> None:
    held = await _trigger(gateway, "db", "db-1")
    quiet = await _trigger(gateway, "db", "db-2")
    assert held["status"] == "triggered" and held["pages"] == []
    assert any("held by maintenance window db-upgrade until 2026-01-07T13:00:00Z" in m for m in _notes(held))
    status, again = await gateway.post("/api/v1/alerts", {"summary": "db down", "dedup_key": "db-1",
                                                          "labels": {"service": "db"}, "team": "sre"})
    assert status == 200 and again["id"] == held["id"]  # deduplicated as usual
    status, _ = await gateway.post(f"/api/v1/alerts/{quiet['id']}/resolve")
    assert status == 200
    await gateway.clock.advance(HOUR / 2)
    assert await _still_held(gateway, held["id"])
    assert (await gateway.alert(held["id"]))["pages"] == []
    assert (await gateway.phone(ALICE))["calls"] == 0
    status, listed = await gateway.get("/api/v1/maintenance")
    assert listed["windows"][0]["held_alerts"] == [held["id"], quiet["id"]]  # held until the window ends

    await gateway.clock.advance(HOUR / 2)  # 13:00: the window ends
    paged = await _paged(gateway, held["id"])
    assert paged["pages"][0]["engineer"] == "alice"
    assert any("maintenance over (window db-upgrade ended): paging starts now" in m
               for m in _notes(paged, "maintenance"))
    await gateway.ringing(ALICE)
    assert (await gateway.alert(quiet["id"]))["pages"] == []  # resolved during the window: never paged
    assert (await gateway.phone(ALICE))["calls"] == 1


async def test_an_alert_no_window_matches_pages_at_once(gateway: Gateway) -> None:
    alert = await _trigger(gateway, "web", "web-1")
    await _paged(gateway, alert["id"])


async def test_low_priority_action_pages_now_at_low_priority(gateway: Gateway) -> None:
    alert = await _trigger(gateway, "batch", "batch-1")  # the sre-critical route would make it high
    assert alert["priority"] == "low"
    assert any("low priority: maintenance window batch-quiet" in m for m in _notes(alert))
    await _paged(gateway, alert["id"])


async def test_a_recurring_window_holds_until_its_time_window_ends(gateway: Gateway) -> None:
    alert = await _trigger(gateway, "cache", "cache-1")
    assert any("held by maintenance window lunch until 2026-01-07T13:30:00Z" in m for m in _notes(alert))
    await gateway.clock.advance(HOUR + 1)  # 13:00: the one-off window ends, not this one
    assert await _still_held(gateway, alert["id"])
    assert (await gateway.alert(alert["id"]))["pages"] == []
    await gateway.clock.advance(HOUR / 2)  # 13:30
    await _paged(gateway, alert["id"])
    status, listed = await gateway.get("/api/v1/maintenance")
    assert status == 200
    assert all(w["held_alerts"] == [] for w in listed["windows"])
    lunch = next(w for w in listed["windows"] if w["name"] == "lunch")
    assert (lunch["state"], lunch["recurring"], lunch["start"]) == ("upcoming", True, "2026-01-14T11:30:00Z")


WINDOW = {"matchers": ['service="queue"', 'env=~"prod|staging"'], "end": "2026-01-07T18:00:00+01:00",
          "comment": "broker upgrade"}


async def test_a_window_added_through_the_api_and_ended_early_releases_its_alerts(gateway: Gateway) -> None:
    status, added = await gateway.post("/api/v1/maintenance", WINDOW)
    assert status == 201, added
    assert (added["source"], added["state"], added["created_by"], added["action"]) == (
        "api", "active", "tests", "suppress")
    assert (added["start"], added["end"]) == ("2026-01-07T12:00:00Z", "2026-01-07T17:00:00Z")
    status, body = await gateway.post("/api/v1/alerts", {"summary": "queue", "labels": {"service": "queue",
                                                                                       "env": "prod"}})
    assert status == 202
    alert_id = body["id"]
    staging_only = await gateway.post("/api/v1/alerts", {"summary": "queue dev", "labels": {"service": "queue",
                                                                                           "env": "dev"}})
    await _paged(gateway, staging_only[1]["id"])  # not all matchers match: paged
    await gateway.clock.advance(60)
    assert (await gateway.alert(alert_id))["pages"] == []

    status, ended = await gateway.post(f"/api/v1/maintenance/{added['id']}/end")
    assert status == 200, ended
    assert (ended["state"], ended["ended_by"], ended["ended_at"]) == ("ended", "tests", "2026-01-07T12:01:00Z")
    released = await _paged(gateway, alert_id)
    assert _notes(released, "maintenance") == [
        f"maintenance over (window maintenance {added['id']} ended early by tests): paging starts now"]
    status, again = await gateway.post(f"/api/v1/maintenance/{added['id']}/end")
    assert status == 409 and again["error"] == "conflict"
    status, missing = await gateway.post("/api/v1/maintenance/999/end")
    assert status == 404 and missing["error"] == "not_found"
    status, listed = await gateway.get("/api/v1/maintenance", headers={"Authorization": "Bearer viewer-token"})
    assert status == 200
    names = [w["name"] for w in listed["windows"]]
    assert names == ["db-upgrade", "lunch", "batch-quiet", f"maintenance {added['id']}"]
    assert listed["windows"][-1]["ended_by"] == "tests"


@pytest.mark.parametrize(("change", "field"), [
    ({"matchers": []}, "matchers"),
    ({"matchers": "service=db"}, "matchers"),
    ({"matchers": ["service"]}, "matchers[0]"),
    ({"matchers": ['service=~"("']}, "matchers[0]"),
    ({"matchers": ['env!="dev"']}, "matchers"),  # would hold every alert without an env label
    ({"matchers": ['service=~".*"', 'env=""']}, "matchers"),  # every matcher matches an alert with no labels
    ({"end": "2026-01-07T18:00:00"}, "end"),  # no offset and no time_zone
    ({"end": "soon"}, "end"),
    ({"end": "2026-01-07T11:00:00Z"}, "end"),  # in the past
    ({"start": "2026-01-07T19:00:00Z"}, "end"),  # ends before it starts
    ({"end": "2026-06-01T00:00:00Z"}, "end"),  # longer than 90 days
    ({"action": "mute"}, "action"),
    ({"comment": 7}, "comment"),
    ({"time_zone": "Mars/Olympus"}, "time_zone"),
])
async def test_bad_input_is_refused_naming_the_field_and_nothing_is_stored(gateway: Gateway, change: dict[str, Any],
                                                                           field: str) -> None:
    status, body = await gateway.post("/api/v1/maintenance", {**WINDOW, **change})
    assert status == 422 and body["details"]["field"] == field, body
    status, listed = await gateway.get("/api/v1/maintenance")
    assert [w["source"] for w in listed["windows"]] == ["config", "config", "config"]


async def test_a_time_without_offset_is_read_in_time_zone_and_a_viewer_may_not_add(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/maintenance", WINDOW, headers={"Authorization": "Bearer viewer-token"})
    assert status == 403 and body["details"]["role_needed"] == "responder"
    status, body = await gateway.post("/api/v1/maintenance", {**WINDOW, "end": "2026-01-07T18:00",
                                                              "time_zone": "Europe/Amsterdam"})
    assert status == 201 and body["end"] == "2026-01-07T17:00:00Z", body
    status, body = await gateway.post("/api/v1/maintenance", data=b"[1]", headers=AUTH)
    assert status == 422


async def _start(aiohttp_client: Callable[..., Any], config_path: Path, clock: FakeClock) -> Gateway:
    return Gateway(await aiohttp_client(create_app(load_config(config_path), clock=clock)), clock)


async def test_a_restart_keeps_a_held_alert_held_and_releases_it_when_the_window_ended_meanwhile(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    path = write_config(tmp_path, CONFIG)
    first = await _start(aiohttp_client, path, FakeClock())
    status, added = await first.post("/api/v1/maintenance", WINDOW)
    assert status == 201
    held = await _trigger(first, "db", "db-1")  # until 13:00
    queued = (await first.post("/api/v1/alerts", {"summary": "q", "labels": {"service": "queue", "env": "prod"}}))[1]
    await first.client.close()

    second = await _start(aiohttp_client, path, FakeClock(start=first.clock.now() + 30 * 60))  # 12:30
    await second.clock.advance(1)
    assert await _still_held(second, held["id"]) and await _still_held(second, queued["id"])
    assert (await second.alert(held["id"]))["pages"] == []
    assert (await second.alert(queued["id"]))["pages"] == []
    await second.client.close()

    third = await _start(aiohttp_client, path, FakeClock(start=first.clock.now() + 2 * HOUR))  # 14:00
    await _paged(third, held["id"])  # db-upgrade ended while the gateway was down: released at start
    assert await _still_held(third, queued["id"])  # its window runs until 17:00
    status, _ = await third.post(f"/api/v1/maintenance/{added['id']}/end")
    assert status == 200
    await _paged(third, queued["id"])


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = BASE_CONFIG + """
time_windows:
  nights: {weekly: [{days: daily, from: "22:00", to: "06:00"}]}
maintenance:
  - {name: a, matchers: ['service="db"'], start: "2026-01-07T13:00", end: "2026-01-07T11:00"}
  - {name: b, matchers: ['service="db"'], during: [weekends]}
  - {name: c, matchers: ['service'], during: [nights]}
  - {name: d, during: [nights]}
  - {name: e, matchers: ['x="y"'], during: [nights], start: "2026-01-07T13:00"}
  - {name: a, matchers: ['x="y"'], during: [nights], action: mute}
  - {name: f, matchers: ['env!="dev"', 'service=~".*"'], during: [nights]}
heartbeats:
  backup: {grace: 5m}
  sync: {interval: 1h, team: nobody}
"""
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, bad))
    text = "\n".join(caught.value.problems)
    for expected in ("maintenance[0].end: must be after start",
                     "maintenance[1].during[0]: unknown time window 'weekends'",
                     "maintenance[2].matchers[0]: 'service' is not a matcher",
                     "maintenance[3].matchers: at least one matcher is required",
                     "maintenance[4].during: either during (recurring) or start and end",
                     "maintenance[5].action:",
                     "maintenance[5].name: maintenance window name 'a' is listed twice",
                     "maintenance[6].matchers: every matcher also matches an alert without that label",
                     "heartbeats.backup.interval: is required",
                     "heartbeats.sync.team: unknown team 'nobody'"):
        assert expected in text, f"{expected!r} not in:\n{text}"


def test_check_config_reports_a_bad_window(tmp_path: Path) -> None:
    bad = CONFIG.replace("during: [wednesday_lunch]", "during: [weekends]")
    result = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(write_config(tmp_path, bad))],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 1
    assert "maintenance[1].during[0]: unknown time window 'weekends'" in result.stdout, result.stdout


def _on_postgresql(tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GATEWAY_TEST_PG_PASSWORD", pg_database.password or "")
    text = CONFIG.replace("store:\n  path: gateway.db\n",
                          f'store: {{url: "{pg_database.url}", password_env: GATEWAY_TEST_PG_PASSWORD}}\n')
    return write_config(tmp_path, text)


async def test_several_gateways_share_windows_and_release_each_held_alert_once(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _on_postgresql(tmp_path, pg_database, monkeypatch)
    clock = FakeClock()  # one time for both (one machine's clock, as in production)
    one = await _start(aiohttp_client, path, clock)
    two = await _start(aiohttp_client, path, clock)
    status, added = await one.post("/api/v1/maintenance", WINDOW)
    assert status == 201

    async def two_knows() -> bool:
        listed = (await two.get("/api/v1/maintenance"))[1]["windows"]
        return any(w["id"] == added["id"] and w["state"] == "active" for w in listed)

    await eventually(two_knows)
    status, body = await two.post("/api/v1/alerts", {"summary": "q", "labels": {"service": "queue", "env": "prod"}})
    assert status == 202
    alert_id = body["id"]
    held = await two.alert(alert_id)
    assert held["pages"] == [] and any("held by maintenance window" in m for m in _notes(held))
    db = await one.post("/api/v1/alerts", {"summary": "db", "labels": {"service": "db"}, "dedup_key": "db-1"})
    await clock.advance(60)

    status, _ = await one.post(f"/api/v1/maintenance/{added['id']}/end")  # ended on the other gateway
    assert status == 200
    paged = await _paged(two, alert_id)
    await clock.advance(HOUR)  # 13:01: db-upgrade is over on both gateways
    paged_db = await _paged(one, db[1]["id"])
    await clock.advance(1)
    for alert in (await one.alert(alert_id), await one.alert(db[1]["id"])):
        assert len(_notes(alert, "maintenance")) == 1, alert["timeline"]  # released once
    assert len(paged["pages"]) == 1 and len(paged_db["pages"]) == 1


async def test_a_held_alert_of_a_gateway_that_stopped_is_released_by_another(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = _on_postgresql(tmp_path, pg_database, monkeypatch)
    clock = FakeClock()
    one = await _start(aiohttp_client, path, clock)
    two = await _start(aiohttp_client, path, clock)
    held = await _trigger(one, "db", "db-1")  # held by db-upgrade until 13:00; two hears of it (a push)
    acknowledged = await _trigger(one, "db", "db-2")
    status, _ = await one.post(f"/api/v1/alerts/{acknowledged['id']}/acknowledge")
    assert status == 200
    await one.client.close()  # gone before the window ends
    await clock.advance(HOUR)
    paged = await _paged(two, held["id"])
    assert any("maintenance over" in m for m in _notes(paged, "maintenance"))
    await clock.advance(1)
    quiet = await two.alert(acknowledged["id"])
    assert quiet["pages"] == [] and _notes(quiet, "maintenance") == []  # acknowledged meanwhile: stays quiet


async def test_a_held_alert_escalated_by_hand_pages_now_and_is_no_longer_held(gateway: Gateway) -> None:
    held = await _trigger(gateway, "db", "db-1")  # held by db-upgrade until 13:00
    status, body = await gateway.post(f"/api/v1/alerts/{held['id']}/escalate")
    assert status == 200, body
    paged = await _paged(gateway, held["id"])
    assert _notes(paged, "maintenance") == ["escalated by api token tests (API) during maintenance: paging starts now"]
    assert not any("starts again" in m for m in _notes(paged))  # it had not started: nothing to start again
    listed = (await gateway.get("/api/v1/maintenance"))[1]["windows"]
    assert listed[0]["held_alerts"] == []
    status, body = await gateway.post(f"/api/v1/alerts/{held['id']}/acknowledge")
    assert status == 200
    await gateway.clock.advance(HOUR)  # 13:00: the window ends; nothing left to release
    await gateway.clock.advance(1)
    await gateway.client.server.app[MAINTENANCE].release_due()
    assert _notes(await gateway.alert(held["id"]), "maintenance") == [
        "escalated by api token tests (API) during maintenance: paging starts now"]


async def test_a_priority_rule_and_a_window_together_say_on_the_timeline_what_applies(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    text = CONFIG + """
priority_rules:
  - name: tier-one
    matchers: ['tier="1"']
"""
    gateway = await _start(aiohttp_client, write_config(tmp_path, text), FakeClock())

    async def trigger(service: str) -> dict[str, Any]:
        status, body = await gateway.post("/api/v1/alerts", {"summary": service, "priority": "low", "team": "sre",
                                                             "labels": {"service": service, "tier": "1"}})
        assert status == 202, body
        return await gateway.alert(body["id"])

    low = await trigger("batch")  # low_priority window: it pages now, at low priority, whatever the rule says
    assert low["priority"] == "low"
    assert not any("raised to high" in m for m in _notes(low)), low["timeline"]
    assert _notes(low, "priority") == ["priority rule tier-one not applied: maintenance window batch-quiet pages "
                                       "it at low priority"]
    held = await trigger("db")  # held: it pages at high priority when the window ends, and says why
    assert held["priority"] == "high"
    assert "high priority (raised by rule tier-one); held by maintenance window db-upgrade" in _notes(held)[0]


async def test_windows_are_read_again_every_minute_in_case_a_push_was_lost(gateway: Gateway) -> None:
    from gateway.store import NewMaintenance
    from gateway.web.keys import STORE

    store = gateway.client.server.app[STORE]  # added by "another gateway" whose push never arrived
    added = await store.add_maintenance(NewMaintenance(
        matchers=('service="queue"',), start=gateway.clock.now(), end=gateway.clock.now() + HOUR,
        action="suppress", comment="", created_by="elsewhere"), now=gateway.clock.now())

    async def known() -> bool:
        listed = (await gateway.get("/api/v1/maintenance"))[1]["windows"]
        return any(w["id"] == added.id and w["state"] == "active" for w in listed)

    assert not await known()
    await gateway.clock.advance(60)
    await eventually(known)
    held = await _trigger(gateway, "queue", "queue-1")
    assert any(f"held by maintenance window maintenance {added.id}" in m for m in _notes(held))


async def test_a_window_the_yaml_ends_sooner_after_a_restart_releases_its_alerts_then(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    path = write_config(tmp_path, CONFIG)
    first = await _start(aiohttp_client, path, FakeClock())
    held = await _trigger(first, "db", "db-1")  # held by db-upgrade until 13:00
    await first.client.close()
    write_config(tmp_path, CONFIG.replace('end: "2026-01-07T13:00"', 'end: "2026-01-07T12:20"'))  # done early
    second = await _start(aiohttp_client, path, FakeClock(start=first.clock.now() + 30 * 60))  # 12:30
    paged = await _paged(second, held["id"])
    assert _notes(paged, "maintenance") == ["maintenance over (window db-upgrade ended): paging starts now"]


async def test_a_window_the_yaml_makes_longer_holds_its_alerts_on_and_one_moved_away_releases_them(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    path = write_config(tmp_path, CONFIG)
    first = await _start(aiohttp_client, path, FakeClock())
    held = await _trigger(first, "db", "db-1")  # held by db-upgrade until 13:00
    await first.client.close()
    write_config(tmp_path, CONFIG.replace('end: "2026-01-07T13:00"', 'end: "2026-01-07T14:00"'))  # it overran
    second = await _start(aiohttp_client, path, FakeClock(start=first.clock.now() + 30 * 60))  # 12:30
    await second.clock.advance(HOUR / 2)  # 13:00
    assert await _still_held(second, held["id"])
    assert _notes(await second.alert(held["id"]), "maintenance") == [
        "maintenance window db-upgrade runs longer now: still held until 2026-01-07T14:00:00Z"]
    await second.clock.advance(HOUR)  # 14:00
    await _paged(second, held["id"])
    await second.client.close()


async def test_a_window_the_yaml_moves_to_next_week_does_not_hold_its_alert_past_its_note(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    path = write_config(tmp_path, CONFIG)
    first = await _start(aiohttp_client, path, FakeClock())
    held = await _trigger(first, "db", "db-1")  # "held by ... db-upgrade until 13:00: paged then if still open"
    await first.client.close()
    write_config(tmp_path, CONFIG.replace('start: "2026-01-07T11:00"', 'start: "2026-01-14T11:00"')
                 .replace('end: "2026-01-07T13:00"', 'end: "2026-01-14T13:00"'))  # the name reused
    second = await _start(aiohttp_client, path, FakeClock(start=first.clock.now() + 30 * 60))  # 12:30
    await second.clock.advance(1)
    assert await _still_held(second, held["id"])
    await second.clock.advance(HOUR / 2)  # 13:00: nothing on now holds it on
    await _paged(second, held["id"])


async def test_a_held_alert_is_not_timed_as_a_slow_first_dial(gateway: Gateway) -> None:
    from tests.gateway.test_metrics import scrape, value

    held = await _trigger(gateway, "db", "db-1")  # held for an hour: its delay is chosen, not latency
    escalated = await _trigger(gateway, "db", "db-2")
    await gateway.clock.advance(HOUR / 2)
    assert (await gateway.post(f"/api/v1/alerts/{escalated['id']}/escalate"))[0] == 200
    await gateway.ringing(ALICE)
    await gateway.post(f"/api/v1/alerts/{escalated['id']}/resolve")
    await gateway.clock.advance(HOUR / 2)  # 13:00
    await _paged(gateway, held["id"])
    await gateway.ringing(ALICE)
    assert value(await scrape(gateway), "gateway_alert_to_first_dial_seconds_count") == 0
    paged = await _trigger(gateway, "web", "web-1")  # no window: timed
    await _paged(gateway, paged["id"])

    async def timed() -> bool:
        return value(await scrape(gateway), "gateway_alert_to_first_dial_seconds_count") == 1

    await eventually(timed)


async def test_a_released_alert_pages_by_the_engineers_own_notification_rules(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    text = CONFIG.replace('alice: {name: Alice, phones: ["+15550000001"]}', (
        'alice: {name: Alice, phones: ["+15550000001"], notification_rules: [{via: sms, after: 0s}, '
        '{via: call, after: 10s}]}'))
    assert text != CONFIG
    gateway = await _start(aiohttp_client, write_config(tmp_path, text), FakeClock())
    held = await _trigger(gateway, "db", "db-1")
    assert await _still_held(gateway, held["id"])
    await gateway.clock.advance(HOUR)  # 13:00: released; alice's rules: a text now, a call 10 s later
    texted = await gateway.alert_where(held["id"], lambda a: [p["channel"] for p in a["pages"]] == ["sms", "call"])
    assert texted["pages"][1]["status"] == "due"
    await gateway.clock.advance(10)
    await gateway.ringing(ALICE)


async def test_a_held_alert_stays_held_by_a_window_added_meanwhile_that_matches_it(gateway: Gateway) -> None:
    held = await _trigger(gateway, "db", "db-1")  # held by db-upgrade until 13:00
    await gateway.clock.advance(HOUR / 2)  # 12:30: the work overruns; a window is added until 14:00
    status, added = await gateway.post("/api/v1/maintenance", {"matchers": ['service="db"'],
                                                               "end": "2026-01-07T14:00:00Z"})
    assert status == 201, added
    await gateway.clock.advance(HOUR / 2)  # 13:00: db-upgrade is over, the added window is not
    assert await _still_held(gateway, held["id"])
    assert _notes(await gateway.alert(held["id"]), "maintenance") == [
        f"maintenance window db-upgrade ended; still held by maintenance window maintenance {added['id']} "
        "until 2026-01-07T14:00:00Z"]
    listed = (await gateway.get("/api/v1/maintenance"))[1]["windows"]
    assert next(w for w in listed if w["id"] == added["id"])["held_alerts"] == [held["id"]]
    await gateway.clock.advance(HOUR)  # 14:00
    paged = await _paged(gateway, held["id"])
    assert _notes(paged, "maintenance")[1:] == [
        f"maintenance over (window maintenance {added['id']} ended): paging starts now"]


async def test_a_held_alert_released_while_a_low_priority_window_matches_it_pages_at_low_priority(
    gateway: Gateway,
) -> None:
    status, body = await gateway.post("/api/v1/alerts", {"summary": "db batch", "dedup_key": "db-batch", "team": "sre",
                                                         "labels": {"service": "db", "job": "batch"}})
    assert status == 202
    status, added = await gateway.post("/api/v1/maintenance", {"matchers": ['job="batch"'], "action": "low_priority",
                                                               "end": "2026-01-07T18:00:00Z"})
    assert status == 201
    held = await gateway.alert(body["id"])
    assert held["priority"] == "high" and held["pages"] == []  # held by db-upgrade until 13:00
    await gateway.clock.advance(HOUR)  # 13:00: released while the low_priority window is on
    paged = await _paged(gateway, held["id"])
    assert paged["priority"] == "low"
    assert _notes(paged, "priority") == [f"low priority: maintenance window maintenance {added['id']}"]
