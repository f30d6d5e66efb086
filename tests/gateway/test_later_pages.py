"""Sending a personal rule's later pages (gateway.later_pages) when the store fails part-way: none is lost."""

from __future__ import annotations

from pathlib import Path

from core.clock import FakeClock
from gateway.config import load_config
from gateway.later_pages import LaterPages
from gateway.sqlite_store import SqliteStore
from gateway.store import Alert, Escalation, NewAlert, NewPage, Page, StepPlan
from tests.support import ALICE, BASE_CONFIG, write_config


class AwayForOneRead(SqliteStore):
    """A real store whose next read of an escalation fails (the database away for a moment)."""

    away = False

    async def get_escalation(self, alert_id: int) -> Escalation | None:
        if self.away:
            self.away = False
            raise ConnectionError("the database went away")
        return await super().get_escalation(alert_id)


async def test_a_store_error_between_falling_due_and_sending_loses_no_page(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, BASE_CONFIG))
    store = AwayForOneRead(tmp_path / "later.db")
    await store.open()
    clock = FakeClock()
    sent: list[int] = []

    async def send(page: Page, alert: Alert) -> None:
        assert page.due_at is None  # handed over as a page to send now
        sent.append(page.id)

    async def skip(page: Page, detail: str) -> None:
        raise AssertionError(f"page {page.id} skipped: {detail}")

    later = LaterPages(config=config, store=store, clock=clock, send=send, skip=skip)
    try:
        now = clock.now()
        plan = StepPlan(step=0, repeat=0, next_due=now + 20, pages=[
            NewPage(engineer="alice", number=ALICE, channel="call", due_at=now + 10)])
        _, _, pages = await store.create_alert(
            NewAlert(dedup_key="k", priority="high", source="api", summary="disk full", team="sre",
                     policy="default", route="r"), now=now, escalate_at=now, note="t", first_step=plan)
        await clock.advance(10)
        store.away = True
        try:
            await later.send_due()
        except ConnectionError:
            pass  # the scheduler logs it and looks again a second later
        assert await later.send_due() is None  # that second look sends the call, and nothing is left due
        assert sent == [pages[0].id]
        assert await later.send_due() is None and sent == [pages[0].id]  # once
    finally:
        await store.close()
