"""The Asterisk provider alone, against FakePbx (AMI + FastAGI replaying the Asterisk 22 captures).

Everything runs over real TCP on 127.0.0.1; the gateway is a recording fake
of ProviderEvents. Ringing and answering take the captures' times multiplied
by a small ``time_scale``; business timeouts run on a FakeClock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from core.phone import caller_number as normalize_number
from ivr_flows.alert_call import AlertCallFlow
from ivr_flows.hotline import HotlineCallerFlow
from ivr_flows.model import EngineerConnected, Flow, FlowOutcome, NobodyAccepted
from ivr_flows.screening import ScreeningFlow
from providers.asterisk import AsteriskProvider, AsteriskTiming, channel_id_for
from providers.asterisk_settings import AsteriskSettings
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    CallRequest,
    CallResult,
    InboundCall,
    InboundSms,
    ProviderError,
    Reply,
    SmsStatusChanged,
)
from tests.peers.ami_server import FakePbx, encode_message, load_capture
from tests.providers.test_call_session import MemoryStore

SECRET = "s3cret-ami-password"
GATEWAY_ID = "+15559990000"
HOTLINE = "+15557770000"
HOTLINES = {"ops": HOTLINE}  # name -> number, as the gateway hands them over from its config
CALLER = "+15557770001"
TIMING = AsteriskTiming(
    connect_wait_s=0.3,
    outcome_grace_s=30,
    hangup_settle_s=0.05,
    verdict_wait_s=1.0,
    hold_chunk_s=10,
    ami_action_timeout_s=0.5,
    ami_ping_interval_s=5,
    ami_backoff=(0.02, 0.1),
)
SAFETY_S = 5.0  # only guards against a hung test; nothing is timed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_config(ami_port: int, agi_port: int, *, secret: str = SECRET, tmp: Path) -> AsteriskSettings:
    return AsteriskSettings(
        host="127.0.0.1",
        port=ami_port,
        username="gateway",
        secret=secret,
        dial_string="Local/{number}@sim-phones",
        caller_id=GATEWAY_ID,
        agi_listen_host="127.0.0.1",
        agi_listen_port=agi_port,
        agi_url=f"agi://127.0.0.1:{agi_port}",
        max_channels=4,
        sounds_dir=tmp / "sounds",
        record_dir=tmp / "recordings",
    )


@dataclass
class Recorder:
    """The gateway side: records every event, answers inbound calls with ``hotline_flow``."""

    hotline_flow: Flow[Any] | None = None
    results: list[CallResult] = field(default_factory=list)
    inbound: list[InboundCall] = field(default_factory=list)
    waiting: list[CallerWaiting] = field(default_factory=list)
    finished: list[CallerFinished] = field(default_factory=list)
    on_result: Callable[[CallResult], Awaitable[None]] | None = None
    on_finished: Callable[[CallerFinished], Awaitable[None]] | None = None

    async def call_ended(self, event: CallResult) -> None:
        self.results.append(event)
        if self.on_result is not None:
            await self.on_result(event)

    async def inbound_call(self, call: InboundCall) -> Flow[Any] | None:
        self.inbound.append(call)
        return self.hotline_flow

    async def caller_waiting(self, event: CallerWaiting) -> None:
        self.waiting.append(event)

    async def caller_finished(self, event: CallerFinished) -> None:
        self.finished.append(event)
        if self.on_finished is not None:
            await self.on_finished(event)

    async def sms_status(self, event: SmsStatusChanged) -> None:
        raise AssertionError("no SMS over Asterisk")

    async def sms_received(self, sms: InboundSms) -> Reply:
        raise AssertionError("no SMS over Asterisk")


async def until(condition: Callable[[], Any], timeout: float = SAFETY_S) -> Any:
    async def poll() -> Any:
        while not (result := condition()):
            await asyncio.sleep(0.005)
        return result

    return await asyncio.wait_for(poll(), timeout)


@dataclass
class Rig:
    pbx: FakePbx
    provider: AsteriskProvider
    events: Recorder
    clock: FakeClock
    agi_url: str

    async def call(self, call_id: str, to: str, flow: Flow[Any] | None = None, ring_s: int = 20) -> None:
        await self.provider.place_call(CallRequest(
            call_id=call_id, to=to, caller_id=None, flow=flow or AlertCallFlow(message="Disk full on db 3"),
            ring_timeout_s=ring_s))

    async def result(self, call_id: str) -> CallResult:
        return await until(lambda: next((r for r in self.events.results if r.call_id == call_id), None))

    async def hotline_caller(self, press: str = "", **how: str):  # type: ignore[no-untyped-def]
        return await self.pbx.call_hotline(caller=CALLER, dialled=HOTLINE, agi_url=self.agi_url, press=press, **how)


@pytest.fixture
async def pbx() -> AsyncIterator[FakePbx]:
    async with FakePbx(secret=SECRET, time_scale=0.01) as fake:
        yield fake


async def _rig(pbx: FakePbx, tmp_path: Path, timing: AsteriskTiming = TIMING, store: MemoryStore | None = None,
               **config: Any) -> AsyncIterator[Rig]:
    agi_port = free_port()
    clock = FakeClock()
    events = Recorder()
    provider = AsteriskProvider(make_config(pbx.port, agi_port, tmp=tmp_path, **config), clock=clock,
                                default_region="US", timing=timing, hotlines=HOTLINES, session_store=store)
    await provider.open(events)
    try:
        yield Rig(pbx=pbx, provider=provider, events=events, clock=clock, agi_url=f"agi://127.0.0.1:{agi_port}")
    finally:
        await provider.close()


@pytest.fixture
async def rig(pbx: FakePbx, tmp_path: Path) -> AsyncIterator[Rig]:
    async for value in _rig(pbx, tmp_path):
        await until(lambda: value.provider.readiness() == {"voice:asterisk": "ok"})
        yield value


# ------------------------------------------------------------------ alert calls


async def test_answered_and_1_pressed_is_acknowledged(rig: Rig) -> None:
    await rig.call("page-1", "+15550000001")
    result = await rig.result("page-1")
    assert result.outcome == CallOutcome.ACKNOWLEDGED

    originate = await rig.pbx.wait_for_action("Originate")
    assert originate["Channel"] == "Local/+15550000001@sim-phones"
    assert originate["Application"] == "AGI" and originate["Data"] == f"{rig.agi_url}/call"
    assert originate["ChannelId"] == "gw-page-1" and originate["OtherChannelId"] == "gw-page-1-b"
    assert originate["Timeout"] == "20000" and originate["Async"] == "true"
    assert originate["CallerID"] == GATEWAY_ID

    peer = rig.pbx.peers["gw-page-1"]
    assert peer.environment.decode().count("agi_uniqueid: gw-page-1\n") == 1
    assert peer.commands[0] == "ANSWER"
    assert peer.commands[1].startswith("STREAM FILE ") and peer.commands[1].endswith('"0123456789*#"')
    # The flow says goodbye and hangs up: AGI HANGUP, the socket closed, the channel gone on AMI.
    await until(lambda: peer.closed_by_server and not rig.pbx.live("gw-page-1"))
    assert peer.commands[-1] == "HANGUP"
    assert [r.call_id for r in rig.events.results] == ["page-1"]


@pytest.mark.parametrize(
    ("number", "outcome"),
    [
        ("+15550000002", CallOutcome.DECLINED),  # presses 2
        ("+15550000003", CallOutcome.NO_ANSWER),  # rings out: OriginateResponse Reason 3
        ("+15550000004", CallOutcome.BUSY),  # Reason 5
        ("+15550000000", CallOutcome.FAILED),  # congestion, Reason 8
        ("+15550000005", CallOutcome.NO_ANSWER),  # answers, never presses a key
        ("+15550000006", CallOutcome.DECLINED),  # answers and hangs up
        ("+15550000007", CallOutcome.NO_ANSWER),  # presses 9, then nothing
        ("+15550000008", CallOutcome.ACKNOWLEDGED),  # presses 1 after the prompts
    ],
)
async def test_every_phone_behaviour_has_its_outcome(rig: Rig, number: str, outcome: CallOutcome) -> None:
    await rig.call("page-7", number)
    assert (await rig.result("page-7")).outcome == outcome
    await until(lambda: not rig.pbx.channels)  # every channel ends
    await asyncio.sleep(0.05)
    assert len(rig.events.results) == 1  # reported once


async def test_failed_originates_are_reported_at_once_without_agi(rig: Rig) -> None:
    await rig.call("page-2", "+15550000004")
    result = await rig.result("page-2")
    assert (result.outcome, result.detail) == (CallOutcome.BUSY, "line busy")
    assert "gw-page-2" not in rig.pbx.peers


async def test_answering_machine_outcome_is_machine(rig: Rig) -> None:
    @dataclass(frozen=True, kw_only=True)
    class MachineDetected(AlertCallFlow):
        """The alert flow, told by answering-machine detection that a machine picked up."""

        def on_event(self, state: Any, event: Any) -> Any:
            from ivr_flows.model import Answered

            return super().on_event(state, Answered(machine=True) if isinstance(event, Answered) else event)

    await rig.call("page-3", "+15550000001", MachineDetected(message="m"))
    assert (await rig.result("page-3")).outcome == CallOutcome.MACHINE


async def test_cancel_hangs_up_a_ringing_call_by_its_channel_id(rig: Rig) -> None:
    await rig.call("page-4", "+15550000003", ring_s=60)
    await until(lambda: rig.pbx.live("gw-page-4"))
    await rig.provider.cancel_call("page-4")
    hangup = await rig.pbx.wait_for_action("Hangup")
    assert hangup["Channel"] == "gw-page-4"
    await until(lambda: not rig.pbx.channels)
    await asyncio.sleep(0.05)
    assert rig.events.results == []  # canceled calls are not reported, as in the sandbox
    await rig.provider.cancel_call("page-4")
    await rig.provider.cancel_call("no-such-call")


async def test_cancel_hangs_up_a_call_in_its_flow(rig: Rig) -> None:
    await rig.call("page-5", "+15550000001", ScreeningFlow(caller="+1 555 777 0001"))
    assert (await rig.result("page-5")).outcome == CallOutcome.ACCEPTED
    peer = rig.pbx.peers["gw-page-5"]
    assert rig.pbx.live("gw-page-5") and not peer.closed_by_server  # accepted: the line stays up
    await rig.provider.cancel_call("page-5")
    await until(lambda: peer.closed_by_server and not rig.pbx.live("gw-page-5"))
    assert (await rig.pbx.wait_for_action("Hangup"))["Channel"] == "gw-page-5"


def replayed(capture: str, *events: str, channel_id: str) -> bytes:
    """The captured AMI ``events`` of one Originate, as Asterisk would send them for ``channel_id``."""
    received = load_capture(capture).received
    captured_id = next(m.get("Uniqueid") for m in received if m.get("Event") == "OriginateResponse")
    assert captured_id
    return b"".join(
        encode_message((key, value.replace(captured_id, channel_id)) for key, value in message.headers)
        for message in received
        if message.get("Event") in events and message.get("Uniqueid") == captured_id
    )


async def test_replayed_ami_events_of_a_settled_call_report_nothing_more(rig: Rig) -> None:
    await rig.call("page-30", "+15550000004")  # busy
    assert (await rig.result("page-30")).outcome == CallOutcome.BUSY
    await until(lambda: not rig.pbx.channels)
    again = replayed("originate-busy", "OriginateResponse", "Hangup", channel_id="gw-page-30")
    assert again.count(b"Event: ") == 2
    rig.pbx.send_raw(again + again)
    await rig.call("page-31", "+15550000001")  # AMI events are handled in order: these come after the replay
    assert (await rig.result("page-31")).outcome == CallOutcome.ACKNOWLEDGED
    await rig.clock.advance(20 + 30)  # past the watchdog of both calls
    await until(lambda: not rig.pbx.channels)
    assert [(r.call_id, r.outcome) for r in rig.events.results] == [
        ("page-30", CallOutcome.BUSY), ("page-31", CallOutcome.ACKNOWLEDGED)]


async def test_late_ami_failures_of_an_accepted_call_report_nothing_more(rig: Rig) -> None:
    await rig.call("page-32", "+15550000001", ScreeningFlow(caller="+1 555 777 0001"))
    assert (await rig.result("page-32")).outcome == CallOutcome.ACCEPTED
    assert rig.pbx.live("gw-page-32")  # on the line, waiting to be bridged
    rig.pbx.send_raw(replayed("originate-busy", "OriginateResponse", "Hangup", channel_id="gw-page-32"))
    await rig.call("page-33", "+15550000001")
    await rig.result("page-33")
    await rig.provider.cancel_call("page-32")
    await until(lambda: not rig.pbx.channels)
    assert [(r.call_id, r.outcome) for r in rig.events.results] == [
        ("page-32", CallOutcome.ACCEPTED), ("page-33", CallOutcome.ACKNOWLEDGED)]


async def test_a_call_session_is_stored_while_its_call_lasts(pbx: FakePbx, tmp_path: Path) -> None:
    store = MemoryStore()
    async for rig in _rig(pbx, tmp_path, store=store):
        await until(lambda: rig.provider.readiness() == {"voice:asterisk": "ok"})
        await rig.call("page-40", "+15550000003", ring_s=600)  # rings
        await until(lambda: rig.pbx.live("gw-page-40"))
        ringing = store.sessions["page-40"]
        assert ringing["outbound"] is True and ringing["extra"] == {"channel_id": "gw-page-40"}

        rig.events.hotline_flow = hotline_flow()
        caller = await rig.hotline_caller()
        call_id = f"ast-{caller.uniqueid}"
        await until(lambda: rig.events.waiting)
        assert store.sessions[call_id]["outbound"] is False and store.sessions[call_id]["waiting"] is True

        await rig.provider.cancel_call("page-40")
        assert "page-40" not in store.sessions
        await rig.pbx.hang_up_caller(caller)
        await until(lambda: rig.events.finished)
        assert call_id not in store.sessions

        await rig.call("page-41", "+15550000001")
        await rig.result("page-41")  # reported when the engineer pressed 1; the session ends with the call
        await until(lambda: not rig.pbx.channels)
        await until(lambda: store.sessions == {})  # the provider hears the hang-up after the PBX drops the channel


async def test_shutdown_hands_callers_back_to_the_dialplan_and_keeps_no_session(
    pbx: FakePbx, tmp_path: Path
) -> None:
    # A call cannot outlive its FastAGI socket: on shutdown the caller's session is closed without AGI
    # HANGUP (Asterisk ends the AGI and runs the dialplan's fallback after it), and nothing is stored.
    store = MemoryStore()
    async for rig in _rig(pbx, tmp_path, store=store):
        await until(lambda: rig.provider.readiness() == {"voice:asterisk": "ok"})
        rig.events.hotline_flow = hotline_flow()
        caller = await rig.hotline_caller()
        await asyncio.wait_for(caller.peer.wait_blocking(), SAFETY_S)  # on hold
        await rig.call("page-50", "+15550000003", ring_s=600)
        await until(lambda: rig.pbx.live("gw-page-50") and len(store.sessions) == 2)

        await rig.provider.close()
        await until(lambda: caller.peer.closed_by_server)
        assert "HANGUP" not in caller.peer.commands
        assert store.sessions == {}
        assert rig.events.results == []  # cut short by the shutdown, not an outcome


# ------------------------------------------------------------------ hotline


def hotline_flow(**overrides: Any) -> HotlineCallerFlow:
    return HotlineCallerFlow(greeting="You have reached the on-call hotline.", **overrides)


async def test_hotline_caller_is_held_then_bridged_from_the_engineers_agi(rig: Rig) -> None:
    rig.events.hotline_flow = hotline_flow(priority_menu=True)
    caller = await rig.hotline_caller(press="1")
    call_id = f"ast-{caller.uniqueid}"
    waiting = await until(lambda: rig.events.waiting)
    assert waiting == [CallerWaiting(call_id=call_id, priority="high")]
    assert rig.events.inbound == [InboundCall(call_id=call_id, caller=CALLER, dialled=HOTLINE)]
    await caller.peer.wait_blocking()  # music on hold

    async def accepted(result: CallResult) -> None:
        if result.outcome == CallOutcome.ACCEPTED:
            await rig.provider.notify(call_id, EngineerConnected(engineer_name="Bob", call_id=result.call_id))

    rig.events.on_result = accepted
    await rig.call("page-9", "+15550000001", ScreeningFlow(caller="+1 555 777 0001"))
    engineer = await rig.pbx.wait_peer("gw-page-9")
    await until(lambda: engineer.bridged_with)
    assert f'EXEC Bridge "{caller.channel},x"' in engineer.commands
    assert caller.peer.agi_dead and caller.peer.channel_alive  # pulled into the bridge, not hung up
    await until(lambda: caller.peer.closed_by_server)  # its AGI is over; the channel lives on
    assert rig.pbx.live(caller.uniqueid) and rig.events.finished == []

    await rig.pbx.hang_up_caller(caller)
    finished = await until(lambda: rig.events.finished)
    assert finished == [CallerFinished(call_id=call_id, outcome=FlowOutcome.CONNECTED)]
    # The engineer's leg is hung up and its FastAGI socket closed together.
    await until(lambda: engineer.closed_by_server and not rig.pbx.live("gw-page-9"))
    assert engineer.commands[-2:] == ["GET VARIABLE BRIDGERESULT", "HANGUP"]
    assert [(r.call_id, r.outcome) for r in rig.events.results] == [("page-9", CallOutcome.ACCEPTED)]


async def test_caller_hanging_up_on_hold_is_abandoned(rig: Rig) -> None:
    rig.events.hotline_flow = hotline_flow()
    caller = await rig.hotline_caller()
    await until(lambda: rig.events.waiting)
    await caller.peer.wait_blocking()
    await rig.pbx.hang_up_caller(caller)
    finished = await until(lambda: rig.events.finished)
    assert finished == [CallerFinished(call_id=f"ast-{caller.uniqueid}", outcome=FlowOutcome.ABANDONED)]
    await asyncio.sleep(0.05)
    assert len(rig.events.finished) == 1


async def test_caller_hanging_up_while_engineers_ring_ends_their_calls_at_once(pbx: FakePbx, tmp_path: Path) -> None:
    # Asterisk publishes the caller's Hangup only after its FastAGI session is closed (FakePbx does too).
    # Nobody accepted, so there is nothing to wait for; a verdict wait that long would never end here.
    async for rig in _rig(pbx, tmp_path, timing=replace(TIMING, verdict_wait_s=3600)):
        await until(lambda: rig.provider.readiness() == {"voice:asterisk": "ok"})
        rig.events.hotline_flow = hotline_flow()

        async def as_the_gateway_does(event: CallerFinished) -> None:
            await rig.provider.cancel_call("page-20")  # the hotline's alert is resolved: its pages end

        rig.events.on_finished = as_the_gateway_does
        caller = await rig.hotline_caller()
        await asyncio.wait_for(caller.peer.wait_blocking(), SAFETY_S)  # on hold
        await rig.call("page-20", "+15550000003", ScreeningFlow(caller="+1 555 777 0001"), ring_s=600)
        await until(lambda: rig.pbx.live("gw-page-20"))  # the engineer's phone rings

        await rig.pbx.hang_up_caller(caller)
        await rig.pbx.wait_for_action("Hangup", timeout=SAFETY_S, Channel="gw-page-20")
        call_id = f"ast-{caller.uniqueid}"
        assert rig.events.finished == [CallerFinished(call_id=call_id, outcome=FlowOutcome.ABANDONED)]
        await until(lambda: f"event Hangup {caller.uniqueid}" in rig.pbx.timeline)
        timeline = rig.pbx.timeline
        # The engineer's call ended first; the caller's session was closed; only then did AMI report
        # the caller's Hangup.
        assert (timeline.index("action Hangup gw-page-20") < timeline.index(f"agi closed {caller.uniqueid}")
                < timeline.index(f"event Hangup {caller.uniqueid}"))
        await until(lambda: not rig.pbx.channels)


async def test_caller_hanging_up_while_the_bridge_is_being_made_is_not_waited_for(
    pbx: FakePbx, tmp_path: Path
) -> None:
    # Here AMI must say whether the caller left AGI for the bridge or hung up; the gateway closes the
    # caller's session first, since Asterisk reports a hang-up only after that.
    async for rig in _rig(pbx, tmp_path, timing=replace(TIMING, verdict_wait_s=3600)):
        await until(lambda: rig.provider.readiness() == {"voice:asterisk": "ok"})
        rig.events.hotline_flow = hotline_flow()
        caller = await rig.hotline_caller()
        call_id = f"ast-{caller.uniqueid}"
        await asyncio.wait_for(caller.peer.wait_blocking(), SAFETY_S)
        bridge_may_go_on = asyncio.Event()

        async def accepted(result: CallResult) -> None:
            if result.outcome == CallOutcome.ACCEPTED:
                engineer = rig.pbx.peers["gw-page-9"]
                bridge = engineer.on_bridge
                assert bridge is not None

                async def slow_bridge(data: str) -> str:  # the Bridge application is still starting
                    await bridge_may_go_on.wait()
                    return await bridge(data)

                engineer.on_bridge = slow_bridge
                await rig.provider.notify(call_id, EngineerConnected(engineer_name="Bob", call_id=result.call_id))

        rig.events.on_result = accepted
        await rig.call("page-9", "+15550000001", ScreeningFlow(caller="+1 555 777 0001"))
        engineer = await rig.pbx.wait_peer("gw-page-9")
        await until(lambda: any(c.startswith("EXEC Bridge") for c in engineer.commands))

        await rig.pbx.hang_up_caller(caller)
        finished = await until(lambda: rig.events.finished)
        assert finished == [CallerFinished(call_id=call_id, outcome=FlowOutcome.ABANDONED)]
        timeline = rig.pbx.timeline
        assert timeline.index(f"agi closed {caller.uniqueid}") < timeline.index(f"event Hangup {caller.uniqueid}")
        bridge_may_go_on.set()  # too late: the caller is gone, and the engineer's leg is hung up
        await until(lambda: engineer.closed_by_server and not rig.pbx.live("gw-page-9"))


async def test_nobody_accepted_the_caller_leaves_a_voicemail(rig: Rig, tmp_path: Path) -> None:
    rig.events.hotline_flow = hotline_flow()
    caller = await rig.hotline_caller()
    call_id = f"ast-{caller.uniqueid}"
    await until(lambda: rig.events.waiting)
    await rig.provider.notify(call_id, NobodyAccepted())  # taken between hold chunks
    finished = await until(lambda: rig.events.finished)
    assert finished[0].outcome == FlowOutcome.VOICEMAIL
    assert (finished[0].recording_url or "").startswith(str(tmp_path / "recordings" / caller.uniqueid))
    assert any(c.startswith("RECORD FILE ") for c in caller.peer.commands)
    await until(lambda: not rig.pbx.live(caller.uniqueid))


async def test_engineer_gone_before_the_bridge_offers_voicemail(rig: Rig) -> None:
    rig.events.hotline_flow = hotline_flow()
    caller = await rig.hotline_caller()
    call_id = f"ast-{caller.uniqueid}"
    await until(lambda: rig.events.waiting)
    await rig.provider.notify(call_id, EngineerConnected(engineer_name="Bob", call_id="page-404"))
    assert (await until(lambda: rig.events.finished))[0].outcome == FlowOutcome.VOICEMAIL


async def test_a_number_that_is_not_a_hotline_hears_not_in_service(rig: Rig) -> None:
    caller = await rig.hotline_caller()
    await until(lambda: caller.peer.closed_by_server)
    assert 'STREAM FILE ss-noservice ""' in caller.peer.commands
    assert rig.events.finished == [] and len(rig.events.inbound) == 1
    await until(lambda: not rig.pbx.live(caller.uniqueid))


FROM_S = {"extension": "s", "dnid": "unknown"}  # what Asterisk sends after a Goto into a shared IVR


@pytest.mark.parametrize(
    "request_",
    ["hotline/ops", "hotline,ops", f"hotline/{HOTLINE}", "hotline,(555) 777-0000"],
    ids=["path-name", "argument-name", "path-number", "argument-number"],
)
async def test_the_agi_request_names_the_hotline(rig: Rig, request_: str) -> None:
    rig.events.hotline_flow = hotline_flow()
    caller = await rig.hotline_caller(request=request_, **FROM_S)
    env = caller.peer.environment.decode()
    assert "agi_extension: s\n" in env and "agi_dnid: unknown\n" in env
    await asyncio.wait_for(caller.peer.wait_blocking(), SAFETY_S)  # held, with music
    call_id = f"ast-{caller.uniqueid}"
    assert rig.events.inbound == [InboundCall(call_id=call_id, caller=CALLER, dialled=HOTLINE)]
    assert rig.events.waiting == [CallerWaiting(call_id=call_id, priority="low")]


async def test_the_dialled_number_is_the_fallback(rig: Rig) -> None:
    rig.events.hotline_flow = hotline_flow()
    caller = await rig.hotline_caller(extension="s", dnid=HOTLINE)  # AGI(agi://gw/hotline) from s, DNID known
    await asyncio.wait_for(caller.peer.wait_blocking(), SAFETY_S)
    assert [c.dialled for c in rig.events.inbound] == [HOTLINE]


@pytest.mark.parametrize(
    ("request_", "shown"),
    [("hotline/sales", "'sales'"), ("hotline,+15550009999", "'+1555***9999'")],
    ids=["name", "number"],
)
async def test_a_hotline_the_request_names_but_is_not_configured_never_falls_back(
    rig: Rig, caplog: pytest.LogCaptureFixture, request_: str, shown: str
) -> None:
    rig.events.hotline_flow = hotline_flow()
    caplog.set_level(logging.INFO)
    caller = await rig.hotline_caller(request=request_)  # agi_extension is a hotline number
    await until(lambda: caller.peer.closed_by_server)
    assert 'STREAM FILE ss-noservice ""' in caller.peer.commands
    assert rig.events.inbound == []  # not the hotline of the dialled number instead
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(f"names hotline {shown}" in m and "not configured" in m for m in errors), errors
    assert HOTLINE not in caplog.text and CALLER not in caplog.text and "+15550009999" not in caplog.text


async def test_an_unresolvable_hotline_is_logged_with_what_was_tried(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.events.hotline_flow = hotline_flow()
    caplog.set_level(logging.INFO)
    caller = await rig.hotline_caller(**FROM_S)  # AGI(agi://gw/hotline) from an s extension
    await until(lambda: caller.peer.closed_by_server)
    assert 'STREAM FILE ss-noservice ""' in caller.peer.commands
    assert rig.events.inbound == []
    warning = next(r.getMessage() for r in caplog.records
                   if r.levelno == logging.WARNING and "no hotline named" in r.getMessage())
    assert ("agi_network_script='hotline' agi_arg_1='' agi_extension='s' agi_dnid='unknown'" in warning)
    assert CALLER not in caplog.text


async def test_a_number_that_is_not_a_hotline_is_logged_masked(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caller = await rig.hotline_caller(extension="s", dnid="+15550009999")
    await until(lambda: caller.peer.closed_by_server)
    assert [c.dialled for c in rig.events.inbound] == ["+15550009999"]  # the gateway said: not a hotline
    warning = next(r.getMessage() for r in caplog.records if "not a hotline number" in r.getMessage())
    assert r"agi_dnid='+1555***9999'" in warning and r"agi_extension='s'" in warning
    assert "+15550009999" not in caplog.text


def test_numbers_are_normalized() -> None:
    assert normalize_number("+15557770001", "US") == "+15557770001"
    assert normalize_number("(555) 777-0001", "US") == "+15557770001"
    assert normalize_number("0301234567", "DE") == "+49301234567"
    for withheld in ("", "unknown", "anonymous", "Anonymous", "s", "12"):
        assert normalize_number(withheld, "US") == ""
    assert channel_id_for("page-12") == "gw-page-12"
    assert channel_id_for("a b/c") == "gw-a-b-c"


# ------------------------------------------------------------------ faults


async def test_asterisk_down_at_start_then_up(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet
    provider = AsteriskProvider(make_config(port, free_port(), tmp=tmp_path), clock=FakeClock(),
                                default_region="US", timing=TIMING)
    events = Recorder()
    await provider.open(events)  # returns at once although Asterisk is down
    try:
        await until(lambda: "connection refused" in provider.readiness()["voice:asterisk"])
        assert provider.readiness() == {"voice:asterisk": "AMI not connected: connection refused"}
        with pytest.raises(ProviderError) as caught:
            await provider.place_call(CallRequest(call_id="page-1", to="+15550000001", caller_id=None,
                                                  flow=AlertCallFlow(message="m")))
        assert caught.value.permanent is False
        async with FakePbx(secret=SECRET, time_scale=0.01, port=port) as late:
            await until(lambda: provider.readiness() == {"voice:asterisk": "ok"})
            await provider.place_call(CallRequest(call_id="page-2", to="+15550000001", caller_id=None,
                                                  flow=AlertCallFlow(message="m")))
            assert (await until(lambda: events.results))[0].outcome == CallOutcome.ACKNOWLEDGED
            assert late.connections == 1
    finally:
        await provider.close()


async def test_wrong_secret_is_an_error_in_the_log_and_readiness(
    pbx: FakePbx, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async for rig in _rig(pbx, tmp_path, secret="wrong-secret"):
        await until(lambda: "authentication" in rig.provider.readiness()["voice:asterisk"])
        assert rig.provider.readiness() == {"voice:asterisk": "AMI authentication failed for user gateway"}
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and "authentication failed" in r.message]
        assert errors
    assert "wrong-secret" not in caplog.text and SECRET not in caplog.text


async def test_outcome_lost_with_the_ami_connection_is_settled_failed(rig: Rig) -> None:
    await rig.call("page-6", "+15550000003")  # rings until the Originate's Timeout (0.2 s here)
    await rig.pbx.wait_for_action("Originate")
    rig.pbx.secret = "changed"  # the reconnect fails until the call is over: its events are lost
    await rig.pbx.drop_connections()
    await until(lambda: not rig.pbx.channels)
    assert rig.events.results == []
    rig.pbx.secret = SECRET
    await until(lambda: rig.provider.readiness() == {"voice:asterisk": "ok"})
    await rig.clock.advance(20 + 29)
    assert rig.events.results == []
    await rig.clock.advance(1)
    result = await rig.result("page-6")
    assert (result.outcome, result.detail) == (CallOutcome.FAILED, "outcome lost: AMI connection dropped")
    # And the adapter works again.
    await rig.call("page-7", "+15550000001")
    assert (await rig.result("page-7")).outcome == CallOutcome.ACKNOWLEDGED


async def test_agi_keeps_working_while_ami_is_down(rig: Rig) -> None:
    await rig.call("page-8", "+15550000008")  # presses 1 late
    await rig.pbx.wait_peer("gw-page-8")
    await rig.pbx.drop_connections()
    assert (await rig.result("page-8")).outcome == CallOutcome.ACKNOWLEDGED


async def test_garbage_and_probes_harm_nothing(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rig.pbx.send_raw(b"this is not AMI\r\nno colon here\r\n\r\n\x00\xff\xfe\r\n\r\n")
    port = int(rig.agi_url.rsplit(":", 1)[1])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()  # a health probe: connects and closes at once
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\nHost: x\n\n")  # not AGI at all
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), SAFETY_S) == b""
    writer.close()
    stray = await rig.pbx.call_hotline(caller=CALLER, dialled=HOTLINE, agi_url=rig.agi_url)
    await until(lambda: stray.peer.closed_by_server)  # not a hotline here: told so and hung up
    await rig.call("page-1", "+15550000001")
    assert (await rig.result("page-1")).outcome == CallOutcome.ACKNOWLEDGED
    assert rig.provider.readiness() == {"voice:asterisk": "ok"}
    assert rig.pbx.connections == 1


async def test_logs_mask_numbers(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await rig.call("page-1", "+15550000001")
    await rig.result("page-1")
    assert "+1555***0001" in caplog.text
    assert "+15550000001" not in caplog.text and SECRET not in caplog.text


async def test_agi_garbage_in_a_session_fails_that_call_only(rig: Rig) -> None:
    await rig.call("page-11", "+15550000003", ring_s=60)  # still ringing while a bogus session comes
    await until(lambda: rig.pbx.live("gw-page-11"))
    port = int(rig.agi_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    env = "agi_network: yes\nagi_network_script: call\nagi_uniqueid: gw-page-11\nagi_channel: Local/x;1\n\n"
    writer.write(env.encode())
    assert (await asyncio.wait_for(reader.readline(), SAFETY_S)) == b"ANSWER\n"
    writer.write(b"this is no AGI reply\n")
    await writer.drain()
    result = await rig.result("page-11")
    assert result.outcome == CallOutcome.FAILED
    writer.close()
    await until(lambda: not rig.pbx.channels)
    await asyncio.sleep(0.05)
    assert len(rig.events.results) == 1
    await rig.call("page-12", "+15550000001")
    assert (await rig.result("page-12")).outcome == CallOutcome.ACKNOWLEDGED
