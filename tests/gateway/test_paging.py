"""Paging alone: the real store in memory, a fake clock, an SMS provider that refuses."""

from __future__ import annotations

from pathlib import Path

from core.clock import FakeClock
from core.enums import AlertStatus, Channel, PageStatus, Priority
from gateway.config import load_config
from gateway.page_kinds import AlertCallKind, PageKinds
from gateway.paging import Paging
from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert, NewPage, Page, StepPlan
from gateway.templates import Templates
from providers.base import CallOutcome, CallResult, ProviderError, SmsRequest
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
        # A failover re-sends only what is still wanted: this page's alert is open, a closed one's is not; a
        # message that is no page (a handoff notice) has no alert to close and is always wanted.
        await store.change_status(alert.id, AlertStatus.ACKNOWLEDGED, now=1.0, by="t", note="t")
        assert not await paging.page_wanted(f"page-{pages[0].id}")
        assert await paging.page_wanted("notice-7")
    finally:
        await paging.stop()
        await store.close()


async def test_an_alert_closed_on_another_gateway_stops_this_gateways_calls_but_not_an_accepted_leg(
    tmp_path: Path,
) -> None:
    """Two gateways' paging on one store: B placed the calls; A heard their outcomes and closed the alert."""
    store = SqliteStore(tmp_path / "shared.db")
    await store.open()
    config = load_config(write_config(tmp_path, BASE_CONFIG))
    templates = Templates(None)

    async def step_failed(page: Page) -> None:
        return None

    async def acknowledge(alert_id: int, by: str, how: str) -> None:
        return None

    def paging(voice: FakeProvider) -> Paging:
        return Paging(config=config, store=store, clock=FakeClock(), voice=voice, sms=None, templates=templates,
                      kinds=PageKinds(AlertCallKind(templates, acknowledge)), on_step_failed=step_failed)

    voice_a, voice_b = FakeProvider("a"), FakeProvider("b")
    a, b = paging(voice_a), paging(voice_b)
    await a.start()
    await b.start()
    try:
        plan = StepPlan(step=0, repeat=0, next_due=60.0, pages=[
            NewPage(engineer="carol", number="+15550000003", channel=Channel.CALL),
            NewPage(engineer="dave", number="+15550000004", channel=Channel.CALL)])
        alert, _, pages = await store.create_alert(
            NewAlert(dedup_key="k", priority=Priority.HIGH, source="api", summary="s", team="dba", policy="texting",
                     route="dba"), now=0.0, escalate_at=None, note="t", first_step=plan)
        for page in pages:
            await b.send(page, alert)

        async def placed() -> bool:
            return sorted(voice_b.placed) == ["page-1", "page-2"]

        await eventually(placed)
        # Carol accepted (a leg bridged to a caller: it stays up); her webhook reached gateway A.
        await a.call_ended(CallResult(call_id="page-1", outcome=CallOutcome.ACCEPTED, detail=""))
        await b.release_local(alert.id)  # the push from A

        async def dave_hung_up() -> bool:
            return "page-2" in voice_b.canceled

        await eventually(dave_hung_up)
        assert "page-1" not in voice_b.canceled
    finally:
        await a.stop()
        await b.stop()
        await store.close()
