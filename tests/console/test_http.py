"""The console over real HTTP with no browser: limits, client input and what a page may show."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request

from core.clock import FakeClock
from core.enums import Priority
from gateway.app import create_app
from gateway.config import load_config
from gateway.console import hub as hub_module
from gateway.console import sessions
from gateway.console.views import HUB, MESSAGES, events
from gateway.store import NewAlert, NewPage, StepPlan, TimelineEntry
from gateway.web import overrides as api_overrides
from gateway.web.keys import CLOCK, STORE
from tests.support import AUTH, TOKEN, write_config

Client = Callable[..., Awaitable[TestClient]]


async def signed_in(tmp_path: Path, aiohttp_client: Client) -> tuple[TestClient, Any, FakeClock]:
    clock = FakeClock()
    app = create_app(load_config(write_config(tmp_path)), clock=clock)
    client = await aiohttp_client(app)
    answer = await client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)
    assert answer.status == 303
    return client, app, clock


async def csrf_of(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', await (await client.get("/console/alerts")).text())
    assert found
    return found.group(1)


async def test_event_streams_are_capped_per_session_and_overall(
        tmp_path: Path, aiohttp_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    client, app, _ = await signed_in(tmp_path, aiohttp_client)
    streams = []
    for _ in range(hub_module.MAX_PER_SESSION):
        stream = await client.get("/console/events")
        assert stream.status == 200
        await stream.content.readuntil(b"\n\n")
        streams.append(stream)
    refused = await client.get("/console/events")
    assert refused.status == 503
    streams.pop().close()  # one closed: its place is free again
    await asyncio.wait_for(_until(lambda: app[HUB].listeners == hub_module.MAX_PER_SESSION - 1), 30)
    again = await client.get("/console/events")
    assert again.status == 200
    streams.append(again)
    # another session has its own allowance, but not beyond the overall cap
    monkeypatch.setattr(hub_module, "MAX_STREAMS", hub_module.MAX_PER_SESSION + 1)
    other = await aiohttp_client(client.server)
    assert (await other.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)).status == 303
    first = await other.get("/console/events")
    assert first.status == 200
    assert (await other.get("/console/events")).status == 503
    for stream in [*streams, first]:
        stream.close()


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.01)


async def test_a_stream_ends_once_its_session_has_expired(tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, clock = await signed_in(tmp_path, aiohttp_client)
    stream = await client.get("/console/events")
    await stream.content.readuntil(b"\n\n")
    app[HUB].publish("phone", number="+15550000001")
    assert b"+15550000001" in await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 30)
    await clock.advance(13 * 3600)
    app[HUB].publish("phone", number="+15550000002")
    rest = await asyncio.wait_for(stream.content.read(), 30)  # the server ends the stream
    assert b"+15550000002" not in rest
    await asyncio.wait_for(_until(lambda: app[HUB].listeners == 0), 30)


async def test_a_waiting_caller_and_a_team_filter_find_alerts_behind_500_newer_ones(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, _ = await signed_in(tmp_path, aiohttp_client)
    store = app[STORE]
    await store.create_alert(NewAlert(dedup_key="h", priority=Priority.HIGH, source="hotline", summary="caller",
                                      details={"caller": "+15557770001", "hotline": "ops"}, team="sre",
                                      policy="default", route="r"), now=1.0, escalate_at=None, note="t")
    await store.create_alert(NewAlert(dedup_key="d", priority=Priority.HIGH, source="api", summary="dba one",
                                      team="dba", policy="default", route="r"), now=1.0, escalate_at=None, note="t")
    for n in range(510):
        await store.create_alert(NewAlert(dedup_key=f"k{n}", priority=Priority.LOW, source="api", summary=f"s{n}",
                                          team="sre", policy="default", route="r"), now=2.0, escalate_at=None,
                                 note="t")
    hotline = await (await client.get("/console/hotline")).text()
    assert "+1555***0001" in hotline and "Nobody is waiting" not in hotline
    for query in ("team=dba", "priority=high&team=dba"):
        filtered = await (await client.get(f"/console/alerts?{query}")).text()
        assert "dba one" in filtered and "match these filters" not in filtered, query


async def test_the_console_adds_overrides_by_the_apis_rules(tmp_path: Path, aiohttp_client: Client,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_overrides, "MAX_LIVE", 2)
    client, _, _ = await signed_in(tmp_path, aiohttp_client)
    token = await csrf_of(client)

    async def add(start: str, end: str) -> str:
        answer = await client.post("/console/oncall/sre/overrides", allow_redirects=False, data={
            "csrf": token, "engineer": "bob", "role": "primary", "start": start, "end": end})
        assert answer.status == 303
        return answer.headers["Location"]

    assert (await add("9999-12-01T00:00", "9999-12-31T23:59")).endswith("message=override_start")
    for n in range(2):  # FakeClock: 2026-01-07 12:00 UTC
        assert "message" not in await add(f"2026-01-1{n}T00:00", f"2026-01-1{n}T01:00")
    assert (await add("2026-01-15T00:00", "2026-01-15T01:00")).endswith("message=override_limit")
    listed = await (await client.get("/api/v1/teams/sre/overrides", headers=AUTH)).json()
    assert len([o for o in listed["overrides"] if o["source"] == "api"]) == 2


async def test_overrides_changed_through_the_api_reach_the_console(tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, _ = await signed_in(tmp_path, aiohttp_client)
    queue = app[HUB].subscribe()
    added = await client.post("/api/v1/teams/sre/overrides", headers=AUTH, json={
        "engineer": "bob", "role": "primary", "start": "2026-01-10T00:00:00Z", "end": "2026-01-10T01:00:00Z"})
    assert added.status == 201
    assert ("oncall", {"team": "sre"}) in drain(queue)
    override_id = (await added.json())["id"]
    deleted = await client.delete(f"/api/v1/teams/sre/overrides/{override_id}", headers=AUTH)
    assert deleted.status == 200
    assert ("oncall", {"team": "sre"}) in drain(queue)


def drain(queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_odd_client_input_is_a_4xx_never_a_500(tmp_path: Path, aiohttp_client: Client) -> None:
    client, _, _ = await signed_in(tmp_path, aiohttp_client)
    assert (await client.get("/console/alerts/%C2%B2")).status == 404  # '²'.isdigit() is True
    token = await csrf_of(client)
    posted = await client.post("/console/alerts/%C2%B2/acknowledge", data={"csrf": token}, allow_redirects=False)
    assert posted.status == 404
    for body, ctype in ((b"token=x", "application/x-www-form-urlencoded; charset=bogus"),
                        (b"token=\xff\xfe", "application/x-www-form-urlencoded")):
        answer = await client.post("/console/sign-in", data=body, headers={"Content-Type": ctype},
                                   allow_redirects=False)
        assert answer.status == 400, ctype
    for body, ctype in ((f"csrf={token}".encode(), "application/x-www-form-urlencoded; charset=bogus"),
                        (f"csrf={token}&x=\xff".encode("latin-1"), "application/x-www-form-urlencoded")):
        answer = await client.post("/console/sign-out", data=body, headers={"Content-Type": ctype},
                                   allow_redirects=False)
        assert answer.status == 400, ctype


async def test_a_page_shows_only_fixed_messages_never_the_links_text(tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, _ = await signed_in(tmp_path, aiohttp_client)
    alert, _, _ = await app[STORE].create_alert(NewAlert(
        dedup_key="x", priority=Priority.LOW, source="api", summary="s", team="sre", policy="default", route="r"),
        now=1.0, escalate_at=None, note="t")
    token = await csrf_of(client)
    assert (await client.post(f"/console/alerts/{alert.id}/resolve", data={"csrf": token},
                              allow_redirects=False)).status == 303
    again = await client.post(f"/console/alerts/{alert.id}/acknowledge", data={"csrf": token},
                              allow_redirects=False)
    assert again.headers["Location"] == f"/console/alerts/{alert.id}?message=conflict"
    shown = await (await client.get(again.headers["Location"])).text()
    assert MESSAGES["conflict"] in shown
    planted = await client.get(f"/console/alerts/{alert.id}?message=Session+expired:+sign+in+at+evil.example")
    assert "evil.example" not in await planted.text()


async def test_the_system_page_does_not_show_the_stores_error_text(tmp_path: Path, aiohttp_client: Client,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    client, app, _ = await signed_in(tmp_path, aiohttp_client)

    async def unreachable() -> None:
        raise OSError("connect to postgres://gateway:hunter2@db.internal failed")

    app[STORE].ping = unreachable
    text = await (await client.get("/console/system")).text()
    assert "store not reachable" in text and "hunter2" not in text
    assert "hunter2" in caplog.text  # in the gateway's log instead


async def test_the_hotline_history_shows_each_calls_pages_and_voicemail(tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, _ = await signed_in(tmp_path, aiohttp_client)
    store = app[STORE]
    calls = []
    for n in range(3):
        plan = StepPlan(step=0, repeat=0, next_due=99.0, notes=[],
                        pages=[NewPage(engineer=("alice", "bob", "carol")[n], number=f"+1555000000{n + 1}",
                                       channel="call")])
        alert, _, _ = await store.create_alert(NewAlert(
            dedup_key=f"h{n}", priority=Priority.HIGH, source="hotline", summary="caller", team="sre",
            details={"caller": f"+1555777000{n}", "hotline": "ops"}, policy="hotline", route="r"),
            now=1.0, escalate_at=99.0, note="t", first_step=plan)
        calls.append(alert)
    await store.add_timeline(TimelineEntry(alert_id=calls[1].id, at=2.0, kind="note",
                                           message="voicemail (12 s) left by the caller"))
    rows = re.findall(r"<tr><td>.*?</tr>", await (await client.get("/console/hotline")).text(), re.S)
    assert len(rows) == 3  # newest first
    assert "carol" in rows[0] and "voicemail" not in rows[0]
    assert "bob" in rows[1] and "voicemail (12 s)" in rows[1]
    assert "alice" in rows[2] and "bob" not in rows[2]


async def test_after_sign_in_only_a_console_page_is_a_destination(tmp_path: Path, aiohttp_client: Client) -> None:
    client, _, _ = await signed_in(tmp_path, aiohttp_client)
    for wanted, landing in [("/console/alerts/3?status=triggered", "/console/alerts/3?status=triggered"),
                            ("/console", "/console"),
                            ("/console/../api/v1/alerts", "/console/alerts"),
                            ("/console/%2e%2e/api/v1/alerts", "/console/alerts"),
                            ("/console\\evil.example", "/console/alerts"),
                            ("/console@evil.example", "/console/alerts"),
                            ("/consoleX", "/console/alerts"),
                            ("//evil.example/console", "/console/alerts"),
                            ("/console/\r\nSet-Cookie: x=1", "/console/alerts")]:
        answer = await client.post("/console/sign-in", data={"token": TOKEN, "next": wanted}, allow_redirects=False)
        assert (answer.status, answer.headers["Location"]) == (303, landing), wanted


async def test_a_cancelled_stream_lets_the_cancellation_through_and_unsubscribes(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    app = create_app(config, clock=FakeClock())
    request = make_mocked_request("GET", "/console/events", app=app)
    _, session = sessions.issue(config, config.api_tokens[0], now=app[CLOCK].now())
    request[sessions.SESSION] = session
    task = asyncio.create_task(events(request))
    await asyncio.wait_for(_until(lambda: app[HUB].listeners == 1), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app[HUB].listeners == 0
