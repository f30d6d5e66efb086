"""The call-session runner: each result reported exactly once, nothing raised, sessions survive a restart."""

from __future__ import annotations

import asyncio
from typing import Any

from ivr_flows import AlertCallFlow, HotlineCallerFlow, ScreeningFlow
from ivr_flows.model import (
    Answered,
    DigitsReceived,
    EngineerConnected,
    FlowOutcome,
    Hold,
    HungUp,
    NobodyAccepted,
    Record,
    RecordingFinished,
)
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    CallResult,
    InboundCall,
    InboundSms,
    Reply,
    SmsStatusChanged,
)
from providers.call_session import CallSessions


class Recorder:
    """The gateway's side of the events, recording what it was told."""

    def __init__(self, *, fail: bool = False) -> None:
        self.reports: list[object] = []
        self.fail = fail

    async def call_ended(self, event: CallResult) -> None:
        self.reports.append(event)
        if self.fail:
            raise RuntimeError("the gateway broke")

    async def caller_waiting(self, event: CallerWaiting) -> None:
        self.reports.append(event)

    async def caller_finished(self, event: CallerFinished) -> None:
        self.reports.append(event)

    async def inbound_call(self, call: InboundCall) -> None:
        return None

    async def sms_status(self, event: SmsStatusChanged) -> None:
        pass

    async def sms_received(self, sms: InboundSms) -> Reply:
        return Reply()


class MemoryStore:
    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}

    async def save_call_session(self, call_id: str, data: dict[str, Any]) -> None:
        self.sessions[call_id] = data

    async def load_call_session(self, call_id: str) -> dict[str, Any] | None:
        return self.sessions.get(call_id)

    async def delete_call_session(self, call_id: str) -> None:
        self.sessions.pop(call_id, None)


def _runner(store: MemoryStore | None = None, events: Recorder | None = None) -> tuple[CallSessions, Recorder]:
    runner = CallSessions(provider="test", store=store)
    runner.events = events or Recorder()
    assert isinstance(runner.events, Recorder)
    return runner, runner.events


async def test_an_acknowledged_alert_call_is_reported_once_whatever_comes_after() -> None:
    runner, events = _runner()
    started = await runner.start("page-1", outbound=True, flow=AlertCallFlow(message="disk full"))
    assert started.actions == ()  # an alert call waits for the answer
    answered = await runner.advance(started.session, Answered())
    assert answered.actions  # the message inside a gather
    await runner.advance(answered.session, DigitsReceived(digits="1"))
    await runner.advance(answered.session, DigitsReceived(digits="1"))
    await runner.advance(answered.session, HungUp())
    await runner.end(answered.session, CallOutcome.NO_ANSWER, "hung up")
    assert events.reports == [CallResult(call_id="page-1", outcome=CallOutcome.ACKNOWLEDGED)]
    assert runner.get("page-1") is None


async def test_a_call_that_ends_without_an_outcome_reports_the_providers_reason() -> None:
    runner, events = _runner()
    started = await runner.start("page-2", outbound=True, flow=AlertCallFlow(message="m"))
    await runner.end(started.session, CallOutcome.BUSY, "busy (SIP 486)")
    await runner.end(started.session, CallOutcome.FAILED, "again")
    assert events.reports == [CallResult(call_id="page-2", outcome=CallOutcome.BUSY, detail="busy (SIP 486)")]


async def test_a_machine_never_acknowledges() -> None:
    runner, events = _runner()
    started = await runner.start("page-3", outbound=True, flow=AlertCallFlow(message="m"))
    await runner.advance(started.session, Answered(machine=True))
    await runner.advance(started.session, DigitsReceived(digits="1"))
    assert [r.outcome for r in events.reports if isinstance(r, CallResult)] == [CallOutcome.MACHINE]


async def test_an_accepted_screening_call_is_reported_while_its_line_stays_up() -> None:
    runner, events = _runner()
    started = await runner.start("page-4", outbound=True, flow=ScreeningFlow(caller="+1 555-777-0001"))
    await runner.advance(started.session, Answered())
    await runner.advance(started.session, DigitsReceived(digits="1"))
    assert events.reports == [CallResult(call_id="page-4", outcome=CallOutcome.ACCEPTED)]
    assert runner.get("page-4") is not None  # not over: the gateway bridges it next


async def test_a_hotline_caller_waits_once_per_hold_and_finishes_once_with_the_recording() -> None:
    runner, events = _runner()
    flow = HotlineCallerFlow(greeting="Hello", priority_menu=True, voicemail=True)
    started = await runner.start("in-1", outbound=False, flow=flow)
    session = started.session
    await runner.advance(session, Answered())
    held = await runner.advance(session, DigitsReceived(digits="1"))
    assert any(isinstance(a, Hold) for a in held.actions)
    assert session.waiting
    recording = await runner.advance(session, NobodyAccepted())
    assert any(isinstance(a, Record) for a in recording.actions)
    await runner.advance(session, RecordingFinished(url="https://rec/1.wav", duration_s=9))
    await runner.end(session, CallOutcome.NO_ANSWER, "completed")
    assert events.reports == [
        CallerWaiting(call_id="in-1", priority="high"),
        CallerFinished(call_id="in-1", outcome=FlowOutcome.VOICEMAIL, recording_url="https://rec/1.wav"),
    ]


async def test_a_caller_who_hangs_up_on_hold_is_finished_as_abandoned() -> None:
    runner, events = _runner()
    started = await runner.start("in-2", outbound=False, flow=HotlineCallerFlow(greeting="Hi"))
    await runner.advance(started.session, Answered())  # no menu: straight on hold
    assert events.reports == [CallerWaiting(call_id="in-2", priority="low")]
    await runner.advance(started.session, HungUp(cause="completed"))
    await runner.end(started.session, CallOutcome.NO_ANSWER, "completed")
    finished = [r for r in events.reports if isinstance(r, CallerFinished)]
    assert finished == [CallerFinished(call_id="in-2", outcome=FlowOutcome.ABANDONED, detail="completed")]


async def test_a_gateway_that_raises_never_raises_into_the_provider() -> None:
    runner, events = _runner(events=Recorder(fail=True))
    started = await runner.start("page-5", outbound=True, flow=AlertCallFlow(message="m"))
    await runner.advance(started.session, Answered())
    await runner.advance(started.session, DigitsReceived(digits="1"))  # call_ended raises inside
    assert len(events.reports) == 1


async def test_a_restarted_gateway_carries_on_the_call_from_the_store_and_forgets_it_when_over() -> None:
    store = MemoryStore()
    before, _ = _runner(store)
    started = await before.start("page-6", outbound=True, flow=AlertCallFlow(message="m"), extra={"sid": "CA1"})
    await before.advance(started.session, Answered())
    assert "page-6" in store.sessions

    after, events = _runner(store)  # a new process on the same store
    session = await after.find("page-6")
    assert session is not None and session.extra == {"sid": "CA1"}
    await after.advance(session, DigitsReceived(digits="1"))
    assert events.reports == [CallResult(call_id="page-6", outcome=CallOutcome.ACKNOWLEDGED)]
    await after.end(session, CallOutcome.NO_ANSWER)
    assert store.sessions == {}
    assert await after.find("page-6") is None


async def test_an_unreadable_stored_session_is_no_call_rather_than_an_error() -> None:
    store = MemoryStore()
    store.sessions["page-7"] = {"call_id": "page-7", "flow": {"kind": "gone"}}
    runner, _ = _runner(store)
    assert await runner.find("page-7") is None


async def test_engineer_connected_is_a_flow_event_like_any_other() -> None:
    runner, _events = _runner()
    started = await runner.start("in-3", outbound=False, flow=HotlineCallerFlow(greeting="Hi"))
    await runner.advance(started.session, Answered())
    connected = await runner.advance(started.session, EngineerConnected(engineer_name="Bob", call_id="page-9"))
    assert connected.actions  # "Connecting you to Bob", then the bridge
    assert not started.session.waiting


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves = 0
        self.loads = 0

    async def save_call_session(self, call_id: str, data: dict[str, Any]) -> None:
        self.saves += 1
        await super().save_call_session(call_id, data)

    async def load_call_session(self, call_id: str) -> dict[str, Any] | None:
        self.loads += 1
        await asyncio.sleep(0)  # a real store answers later: let racing webhooks meet here
        return await super().load_call_session(call_id)


async def test_webhooks_racing_after_a_restart_share_one_session() -> None:
    store = CountingStore()
    before, _ = _runner(store)
    started = await before.start("page-8", outbound=True, flow=AlertCallFlow(message="m"))
    await before.advance(started.session, Answered())
    after, _ = _runner(store)
    first, second = await asyncio.gather(after.find("page-8"), after.find("page-8"))
    assert first is second and first is not None
    assert store.loads == 1


async def test_a_step_that_changes_nothing_is_not_written_again() -> None:
    store = CountingStore()
    runner, _ = _runner(store)
    started = await runner.start("page-9", outbound=True, flow=AlertCallFlow(message="m"))
    await runner.advance(started.session, Answered())
    saves = store.saves
    await runner.save(started.session)  # nothing changed since the last write
    assert store.saves == saves
    started.session.extra["sid"] = "CA9"
    await runner.save(started.session)
    assert store.saves == saves + 1
