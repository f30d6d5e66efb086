"""The console's event hub: what the services commit, and what other gateways push, reaches the browsers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from core.clock import FakeClock
from core.enums import AlertStatus, Priority
from gateway.app import create_app
from gateway.config import load_config
from gateway.console.hub import EventHub, relayed, watched
from gateway.console.views import close_streams
from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert, NewPage, StepPlan
from tests.support import TOKEN, write_config


def drain(queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def test_alert_changes_written_through_the_store_are_published(tmp_path: Path) -> None:
    hub = EventHub()
    queue = hub.subscribe()
    raw = SqliteStore(tmp_path / "gateway.db")
    await raw.open()
    try:
        store = watched(raw, hub)
        new = NewAlert(dedup_key="k", priority=Priority.LOW, source="api", summary="s", team="sre",
                       policy="default", route="r")
        alert, created, _ = await store.create_alert(new, now=1.0, escalate_at=None, note="triggered")
        assert created and drain(queue) == [("alert", {"id": alert.id})]
        await store.set_priority(alert.id, Priority.HIGH, now=2.0, note="raised")
        await store.change_status(alert.id, AlertStatus.ACKNOWLEDGED, now=3.0, by="x", note="ack")
        assert drain(queue) == [("alert", {"id": alert.id})] * 2
        assert (await store.get_alert(alert.id)) is not None and drain(queue) == []  # reads publish nothing
    finally:
        await raw.close()


async def test_a_browser_far_behind_is_told_to_fetch_again() -> None:
    hub = EventHub()
    queue = hub.subscribe()
    for n in range(1000):
        hub.publish("alert", id=n)
    assert ("resync", {}) in drain(queue)
    hub.unsubscribe(queue)
    hub.publish("alert", id=1)
    assert queue.empty() and hub.listeners == 0


async def test_an_alert_closed_on_another_gateway_is_published() -> None:
    class Peers:
        def __init__(self) -> None:
            self.closed: list[int] = []

        async def alert_closed_elsewhere(self, alert_id: int) -> None:
            self.closed.append(alert_id)

        async def rejoined(self) -> None:
            self.closed.append(-1)

    hub = EventHub()
    queue = hub.subscribe()
    peers = Peers()
    relay = relayed(peers, hub)  # type: ignore[arg-type]
    await relay.alert_closed_elsewhere(7)
    await relay.rejoined()
    assert peers.closed == [7, -1] and drain(queue) == [("alert", {"id": 7})]


async def test_the_event_streams_end_when_the_gateway_stops(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> None:
    # An open stream would otherwise hold the gateway's shutdown up (aiohttp waits for running handlers).
    app = create_app(load_config(write_config(tmp_path)), clock=FakeClock())
    client = await aiohttp_client(app)
    signed = await client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)
    assert signed.status == 303
    async with client.get("/console/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert (await stream.content.readuntil(b"\n\n")).startswith(b"retry:")
        await close_streams(app)
        rest = await asyncio.wait_for(stream.content.read(), 30)  # EOF: the handler returned
        assert b"event:" not in rest


async def test_a_page_marked_sent_is_published(tmp_path: Path) -> None:
    hub = EventHub()
    raw = SqliteStore(tmp_path / "gateway.db")
    await raw.open()
    try:
        store = watched(raw, hub)
        plan = StepPlan(step=0, repeat=0, next_due=21.0,
                        pages=[NewPage(engineer="alice", number="+15550000001", channel="call")], notes=[])
        new = NewAlert(dedup_key="k", priority=Priority.LOW, source="api", summary="s", team="sre",
                       policy="default", route="r")
        alert, _, pages = await store.create_alert(new, now=1.0, escalate_at=21.0, note="t", first_step=plan)
        queue = hub.subscribe()
        await store.mark_page_sent(pages[0].id, now=2.0)
        assert drain(queue) == [("alert", {"id": alert.id})]
    finally:
        await raw.close()


async def test_a_hold_held_on_by_another_window_is_published(tmp_path: Path) -> None:
    from gateway.store import HoldWindow

    hub = EventHub()
    queue = hub.subscribe()
    raw = SqliteStore(tmp_path / "gateway.db")
    await raw.open()
    try:
        store = watched(raw, hub)
        first = (HoldWindow(key="config:db", name="db", until=10.0),)
        new = NewAlert(dedup_key="k", priority=Priority.LOW, source="api", summary="s", team="sre",
                       policy="default", route="r")
        alert, _ = await store.create_held_alert(new, now=1.0, note="held", windows=first)
        drain(queue)
        assert await store.extend_hold(alert.id, expect=first, windows=(HoldWindow(key="api:1", name="m 1",
                                                                                    until=20.0),),
                                       now=10.0, note="still held")
        assert drain(queue) == [("alert", {"id": alert.id})]  # its timeline has a new note
    finally:
        await raw.close()
