"""Paging alone: the real store in memory, a fake clock, an SMS provider that refuses."""

from __future__ import annotations

from pathlib import Path

from core.clock import FakeClock
from core.enums import Channel, PageStatus, Priority
from gateway.config import load_config
from gateway.page_kinds import AlertCallKind, PageKinds
from gateway.paging import Paging
from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert, NewPage, Page, StepPlan
from gateway.templates import Templates
from providers.base import ProviderError, SmsRequest
from tests.gateway.test_provider_manager import FakeProvider
from tests.support import BASE_CONFIG, eventually, write_config


class RefusingSms(FakeProvider):
    async def send_sms(self, request: SmsRequest) -> None:
        raise ProviderError("21610: unsubscribed recipient")


async def test_an_sms_page_that_cannot_be_sent_moves_its_step_on(tmp_path: Path) -> None:
    store = SqliteStore(Path(":memory:"))
    await store.open()
    failed: list[Page] = []

    async def step_failed(page: Page) -> None:
        failed.append(page)

    async def acknowledge(alert_id: int, by: str, how: str) -> None:
        pass

    templates = Templates(None)
    voice = FakeProvider("voice")
    paging = Paging(config=load_config(write_config(tmp_path, BASE_CONFIG)), store=store, clock=FakeClock(),
                    voice=voice, sms=RefusingSms("sms"), templates=templates,
                    kinds=PageKinds(AlertCallKind(templates, acknowledge)), on_step_failed=step_failed)
    try:
        plan = StepPlan(step=0, repeat=0, pages=[NewPage(engineer="carol", number="+15550000003", channel=Channel.SMS)],
                        next_due=60.0)
        alert, _, pages = await store.create_alert(
            NewAlert(dedup_key="k", priority=Priority.LOW, source="api", summary="s", team="dba", policy="texting",
                     route="dba"), now=0.0, escalate_at=None, note="t", first_step=plan)
        await paging.send(pages[0], alert)

        async def reported() -> bool:
            return bool(failed)

        await eventually(reported)
        assert failed[0].status == PageStatus.DONE and failed[0].outcome == "failed"
    finally:
        await paging.stop()
        await store.close()
