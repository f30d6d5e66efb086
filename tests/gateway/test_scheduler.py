"""The scheduler alone: a fake clock, the real store in memory, no provider, no HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.clock import FakeClock, settle
from gateway.config import Config, load_config
from gateway.page_kinds import AlertCallKind, PageKinds
from gateway.scheduler import Scheduler
from gateway.sqlite_store import SqliteStore
from gateway.store import Alert, NewAlert, Page
from gateway.templates import Templates
from tests.support import write_config

CONFIG = """
api_tokens: [{name: t, token: t0k3n}]
engineers:
  alice: {phones: ["+15550000001"]}
  bob: {phones: ["+15550000002"]}
teams:
  sre: {members: [alice, bob]}
policies:
  default:
    repeat: 1
    steps:
      - {notify: primary, timeout: 20s}
      - {notify: secondary, via: both, timeout: 30s}
default_route: {team: sre, policy: default}
"""


class Sent:
    """Paging's place: records what the scheduler hands over."""

    def __init__(self) -> None:
        self.pages: list[tuple[int, str, str, int]] = []  # (alert, engineer, channel, ring seconds)

    async def send(self, page: Page, alert: Alert, *, ring_s: int) -> None:
        self.pages.append((alert.id, page.engineer or "", page.channel, ring_s))


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Scheduler, SqliteStore, FakeClock, Sent, Config]]:
    config = load_config(write_config(tmp_path, CONFIG))
    store = SqliteStore(Path(":memory:"))
    await store.open()
    clock = FakeClock()
    sent = Sent()

    async def acknowledge(alert_id: int, by: str, how: str) -> None:
        raise AssertionError("no call is answered here")

    kinds = PageKinds(AlertCallKind(Templates(None), acknowledge))
    scheduler = Scheduler(config=config, store=store, clock=clock, paging=sent, kinds=kinds)
    await scheduler.start()
    try:
        yield scheduler, store, clock, sent, config
    finally:
        await scheduler.stop()
        await store.close()


async def _trigger(scheduler: Scheduler, store: SqliteStore, clock: FakeClock, config: Config) -> Alert:
    kind = scheduler.kinds.of_source("api")
    first = scheduler.plan(team="sre", policy=config.policies["default"], kind=kind, step_index=0, repeat=0,
                           now=clock.now())
    alert, created, pages = await store.create_alert(
        NewAlert(dedup_key="k", priority="high", source="api", summary="disk full", team="sre", policy="default",
                 route="r"), now=clock.now(), escalate_at=clock.now(), note="triggered", first_step=first)
    assert created and [p.engineer for p in pages] == ["alice"]
    scheduler.due_at(first.next_due)
    return alert


async def _until(condition: object, store: SqliteStore) -> None:
    for _ in range(200):  # the store answers from its own thread: give it loop turns, not wall time
        await settle()
        if callable(condition) and condition():
            return
        await store.ping()
    raise AssertionError("condition not met")


async def test_steps_run_at_their_timeouts_round_after_round_then_stop(rig: tuple) -> None:
    scheduler, store, clock, sent, config = rig
    alert = await _trigger(scheduler, store, clock, config)
    await clock.advance(19)
    await store.ping()
    assert sent.pages == []  # step 2 is not due before 20 s
    await clock.advance(1)
    await _until(lambda: len(sent.pages) == 2, store)
    assert sent.pages == [(alert.id, "bob", "call", 30), (alert.id, "bob", "sms", 30)]
    await clock.advance(30)  # round 2, step 1
    await _until(lambda: len(sent.pages) == 3, store)
    assert sent.pages[2] == (alert.id, "alice", "call", 20)
    await clock.advance(20)
    await _until(lambda: len(sent.pages) == 5, store)
    await clock.advance(30)  # the policy ran out
    esc = None
    for _ in range(200):
        esc = await store.get_escalation(alert.id)
        if esc is not None and esc.next_due is None:
            break
        await settle()
    assert esc is not None and esc.next_due is None
    await clock.advance(3600)
    await store.ping()
    assert len(sent.pages) == 5
    timeline = [t.message for t in await store.timeline(alert.id)]
    assert timeline[-1] == "escalation exhausted: nobody acknowledged after 2 round(s)"


async def test_an_acknowledged_alert_gets_no_further_step(rig: tuple) -> None:
    scheduler, store, clock, sent, config = rig
    alert = await _trigger(scheduler, store, clock, config)
    await store.change_status(alert.id, "acknowledged", now=clock.now(), by="alice", note="ack")
    await clock.advance(3600)
    await store.ping()
    await settle()
    assert sent.pages == []


async def test_when_every_page_of_a_step_failed_the_next_step_starts_at_once(rig: tuple) -> None:
    scheduler, store, clock, sent, config = rig
    alert = await _trigger(scheduler, store, clock, config)
    (page,) = await store.pages_for(alert.id)
    finished = await store.finish_page(page.id, outcome="busy", detail="", now=clock.now(), note=None)
    assert finished is not None
    await scheduler.step_failed(finished)
    await _until(lambda: len(sent.pages) == 2, store)  # no clock movement: step 2 runs now
    assert [p[1] for p in sent.pages] == ["bob", "bob"]
