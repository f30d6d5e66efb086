"""Durable first, then act: a restarted gateway carries on where it stopped."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert, NewPage, StepPlan
from tests.support import ALICE, BOB, Gateway, eventually


async def _start(aiohttp_client: Callable[..., Any], config_path: Path, clock: FakeClock) -> Gateway:
    client = await aiohttp_client(create_app(load_config(config_path), clock=clock))
    return Gateway(client, clock)


async def test_restart_mid_escalation_continues_at_the_right_step(
    aiohttp_client: Callable[..., Any], config_path: Path
) -> None:
    clock = FakeClock()
    first = await _start(aiohttp_client, config_path, clock)
    status, body = await first.post("/api/v1/alerts", {"summary": "restart me", "team": "sre"})
    assert status == 202
    alert_id = body["id"]
    await first.ringing(ALICE)
    await first.alert_where(alert_id, lambda a: a["pages"][0]["status"] == "sent")
    await first.client.close()  # the gateway stops while Alice's phone rings

    clock2 = FakeClock(start=clock.now() + 5)
    second = await _start(aiohttp_client, config_path, clock2)
    # Step 1 was already sent: Alice is not called again on start.
    await clock2.advance(1)
    assert (await second.phone(ALICE))["calls"] == 0
    alert = await second.alert(alert_id)
    assert len(alert["pages"]) == 1 and alert["escalation"]["next_step"] == 2

    # At the step's timeout (20 s after it started) the secondary rings.
    await clock2.advance(14)
    await second.ringing(BOB)
    assert (await second.phone(ALICE))["calls"] == 0
    await second.post(f"/api/v1/sandbox/phones/{BOB}/answer")
    await second.post(f"/api/v1/sandbox/phones/{BOB}/press", {"digits": "1"})
    await second.alert_where(alert_id, lambda a: a["status"] == "acknowledged")


async def test_page_written_but_not_sent_before_a_crash_is_sent_on_start(
    aiohttp_client: Callable[..., Any], config_path: Path
) -> None:
    clock = FakeClock()
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    await store.open()
    alert, created, _ = await store.create_alert(
        NewAlert(dedup_key="crash", priority="high", source="api", summary="crashed mid-step", team="sre",
                 policy="default", route="sre-critical"),
        now=clock.now(), escalate_at=clock.now(), note="triggered",
    )
    esc = await store.get_escalation(alert.id)
    assert created and esc is not None
    # The step was made durable (page due, escalation moved on) and then the process died.
    pages = await store.start_step(
        alert.id, expect=esc, now=clock.now(),
        plan=StepPlan(step=0, repeat=0, pages=[NewPage(engineer="alice", number=ALICE, channel="call")],
                      next_due=clock.now() + 20),
    )
    assert pages is not None and pages[0].status == "due"
    await store.close()

    gateway = await _start(aiohttp_client, config_path, clock)
    await gateway.ringing(ALICE)
    body = await gateway.alert_where(alert.id, lambda a: a["pages"][0]["status"] == "sent")
    assert len(body["pages"]) == 1


async def test_acknowledged_alert_is_never_paged_after_restart(
    aiohttp_client: Callable[..., Any], config_path: Path
) -> None:
    clock = FakeClock()
    first = await _start(aiohttp_client, config_path, clock)
    _, body = await first.post("/api/v1/alerts", {"summary": "ack then restart", "team": "sre"})
    await first.ringing(ALICE)
    await first.post(f"/api/v1/alerts/{body['id']}/acknowledge")
    await first.client.close()

    second = await _start(aiohttp_client, config_path, FakeClock(start=clock.now() + 1))
    await second.clock.advance(600)
    assert (await second.phone(ALICE))["calls"] == 0
    assert (await second.phone(BOB))["calls"] == 0
    assert (await second.alert(body["id"]))["status"] == "acknowledged"


async def test_accepted_alert_is_durable_before_202(aiohttp_client: Callable[..., Any], config_path: Path) -> None:
    clock = FakeClock()
    gateway = await _start(aiohttp_client, config_path, clock)
    status, body = await gateway.post("/api/v1/alerts", {"summary": "durable", "team": "sre", "dedup_key": "d1"})
    assert status == 202
    # A second connection to the same file sees the alert as soon as the 202 is in.
    store = SqliteStore(load_config(config_path).store_path)
    await store.open()
    try:
        found = await store.find_open_alert("d1")
        assert found is not None and found.id == body["id"]
    finally:
        await store.close()
    await eventually(lambda: gateway.ringing(ALICE))
