"""Simulated phones, in the process: the provider used when no Asterisk or Twilio is configured.

Every number is a phone that can ring, be answered, hear what the flow says,
take key presses, dial a hotline, wait on hold, be bridged, leave a voicemail
and keep an SMS inbox. People (or tests) drive the phones over HTTP; scripted
numbers answer, press, stay silent or are busy by themselves. Timers (ringing
out, waiting for keys, recording) run on the injected clock.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from core.clock import Clock
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    Event,
    Flow,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NoInput,
    Play,
    Record,
    RecordingFinished,
    Say,
)
from ivr_flows.not_in_service import NotInServiceFlow
from providers.base import (
    CallOutcome,
    CallRequest,
    Capabilities,
    InboundCall,
    InboundSms,
    ProviderEvents,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
)
from providers.call_session import CallSession, CallSessions

log = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class SandboxPhone:
    """How a phone behaves by itself."""

    number: str  # E.164
    behaviour: str  # "answer" (answer after `after_s`, press `digits`) | "never_answer" | "busy" | "reject"
    after_s: float = 2.0
    digits: str = ""


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    """The ``sandbox:`` section of the config file (read and checked by the gateway's config reader)."""

    enabled: bool = True
    caller_id: str = "+15559990000"
    lines: int = 10  # simulated calls in progress at once (the dispatcher's capacity)
    phones: tuple[SandboxPhone, ...] = ()


class PhoneError(Exception):
    """A sandbox phone cannot do what was asked (e.g. answer when nothing rings)."""


@dataclass(kw_only=True)
class SimCall:
    call_id: str
    number: str  # the simulated phone's own number
    other_party: str  # who it is talking to: the gateway's caller id, or the hotline dialled
    direction: str  # "outbound" (the gateway called the phone) | "inbound" (the phone dialled a hotline)
    session: CallSession  # the flow's side of the call, run by the call-session runner
    state: str = "ringing"  # ringing | in_progress | ended
    hearing: list[str] = field(default_factory=list)  # what the phone hears right now
    transcript: list[str] = field(default_factory=list)  # everything said on the call
    gathering: Gather | None = None
    recording: Record | None = None
    bridged_to: str | None = None  # the call id of the other leg
    bridged_with: str | None = None  # the other leg's phone number
    started_at: float = 0.0
    answered_at: float | None = None
    ended_at: float | None = None
    timers: list[asyncio.Task[None]] = field(default_factory=list)


@dataclass(kw_only=True)
class SimSms:
    direction: str  # "in" (received by the phone) | "out" (sent by the phone)
    peer: str
    text: str
    at: float


@dataclass(kw_only=True)
class SimPhone:
    number: str
    calls: list[SimCall] = field(default_factory=list)
    messages: list[SimSms] = field(default_factory=list)

    @property
    def current(self) -> SimCall | None:
        live = [c for c in self.calls if c.state != "ended"]
        return live[-1] if live else None


class SandboxProvider:
    """Voice and SMS on simulated phones; implements VoiceProvider and SmsProvider."""

    name = "sandbox"

    def __init__(
        self,
        *,
        clock: Clock,
        caller_id: str,
        scripts: dict[str, SandboxPhone] | None = None,
        max_concurrent_calls: int = 10,
    ) -> None:
        self.capabilities = Capabilities(
            voice=True, sms=True, inbound_voice=True, inbound_sms=True, max_concurrent_calls=max_concurrent_calls,
            calls_per_second=100.0,
        )
        self.clock = clock
        self.caller_id = caller_id
        self.scripts = dict(scripts or {})
        self.phones: dict[str, SimPhone] = {}
        self.events: ProviderEvents | None = None
        #: told the number of a phone whose state changed (the gateway's console listens); must not raise
        self.on_change: Callable[[str], None] | None = None
        # Not stored: the simulated phones live in this process, so their calls end with it.
        self.sessions = CallSessions(provider="sandbox")
        self._calls: dict[str, SimCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._inbound_ids = itertools.count(1)

    async def open(self, events: ProviderEvents) -> None:
        self.events = self.sessions.events = events

    def readiness(self) -> dict[str, str]:
        return {"voice:sandbox": "ok"}

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def phone(self, number: str) -> SimPhone:
        return self.phones.setdefault(number, SimPhone(number=number))

    # ---------------------------------------------------------- provider API

    async def place_call(self, request: CallRequest) -> None:
        call = await self._new_call(request.call_id, request.to, request.caller_id or self.caller_id, "outbound",
                                    request.flow)
        script = self.scripts.get(request.to)
        if script is not None and script.behaviour == "busy":
            self._spawn(self._end(call, CallOutcome.BUSY, "line busy"))
            return
        self._timer(call, call.started_at + request.ring_timeout_s, lambda: self._ring_out(call))
        if script is not None and script.behaviour in ("answer", "reject"):
            self._timer(call, call.started_at + script.after_s, lambda: self._scripted(call, script))

    async def cancel_call(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is not None and call.state != "ended":
            self._hear(call, "[the gateway hung up]")
            await self._end(call, CallOutcome.CANCELED, "canceled by the gateway", report=False)

    async def notify(self, call_id: str, event: Event) -> None:
        call = self._calls.get(call_id)
        if call is not None and call.state == "in_progress":
            await self._feed(call, event)

    async def send_sms(self, request: SmsRequest) -> None:
        sender = request.sender or self.caller_id
        self.phone(request.to).messages.append(
            SimSms(direction="in", peer=sender, text=request.body, at=self.clock.now())
        )
        self._changed(request.to)
        if self.events is not None:
            self._spawn(self.events.sms_status(SmsStatusChanged(sms_id=request.sms_id, status=SmsStatus.DELIVERED)))

    # ------------------------------------------------------- phone controls

    def _current(self, number: str) -> SimCall | None:
        """The phone's call now, without introducing a phone nobody has seen (a refused action changes nothing)."""
        phone = self.phones.get(number)
        return phone.current if phone is not None else None

    def _ringing(self, number: str) -> SimCall:
        call = self._current(number)
        if call is None or call.state != "ringing":
            raise PhoneError(f"no call is ringing on {number}")
        return call

    def _live(self, number: str) -> SimCall:
        call = self._current(number)
        if call is None or call.state != "in_progress":
            raise PhoneError(f"no call is in progress on {number}")
        return call

    async def dial(self, number: str, to: str) -> SimCall:
        """The phone ``number`` calls ``to`` (a hotline): the gateway answers with its flow."""
        if self.phone(number).current is not None:
            raise PhoneError(f"{number} is already on a call")
        if self.events is None:
            raise PhoneError("the sandbox is not connected to the gateway")
        call_id = f"sandbox-in-{next(self._inbound_ids)}"
        flow = await self.events.inbound_call(InboundCall(call_id=call_id, caller=number, dialled=to))
        call = await self._new_call(call_id, number, to, "inbound", flow or NotInServiceFlow())
        if call.state != "ended":
            await self._feed(call, Answered())
        return call

    async def answer(self, number: str) -> SimCall:
        call = self._ringing(number)
        call.state = "in_progress"
        call.answered_at = self.clock.now()
        self._changed(number)
        self._cancel_timers(call)
        await self._feed(call, Answered())
        return call

    async def press(self, number: str, digits: str) -> SimCall:
        call = self._live(number)
        if call.gathering is None:
            call.transcript.append(f"(pressed {digits}; nobody was listening for keys)")
            return call
        gather = call.gathering
        call.gathering = None
        self._cancel_timers(call)
        await self._feed(call, DigitsReceived(digits=digits[: gather.num_digits]))
        return call

    async def reject(self, number: str) -> SimCall:
        call = self._ringing(number)
        await self._end(call, CallOutcome.DECLINED, "rejected on the phone")
        return call

    async def hangup(self, number: str) -> SimCall:
        call = self._current(number)
        if call is None:
            raise PhoneError(f"no call on {number}")
        if call.state == "ringing":
            await self._end(call, CallOutcome.DECLINED, "rejected on the phone")
            return call
        if call.recording is not None:
            await self._finish_recording(call)  # hanging up ends a voicemail; it is kept
        if call.state != "ended":
            await self._feed(call, HungUp(cause="hung up on the phone"))
            await self._end(call, CallOutcome.NO_ANSWER, "hung up on the phone")
        return call

    async def reply(self, number: str, text: str) -> str:
        """The phone sends an SMS to the gateway; returns the gateway's answer (may be empty)."""
        phone = self.phone(number)
        phone.messages.append(SimSms(direction="out", peer=self.caller_id, text=text, at=self.clock.now()))
        if self.events is None:
            return ""
        answer = await self.events.sms_received(InboundSms(sender=number, to=self.caller_id, text=text))
        if answer.text:
            phone.messages.append(SimSms(direction="in", peer=self.caller_id, text=answer.text, at=self.clock.now()))
        self._changed(number)
        return answer.text

    # ---------------------------------------------------------- flow runner

    async def _new_call(self, call_id: str, number: str, other: str, direction: str, flow: Flow[Any]) -> SimCall:
        outbound = direction == "outbound"
        started = await self.sessions.start(call_id, outbound=outbound, flow=flow)
        now = self.clock.now()
        call = SimCall(call_id=call_id, number=number, other_party=other, direction=direction,
                       session=started.session, started_at=now, state="ringing" if outbound else "in_progress",
                       answered_at=None if outbound else now)  # the gateway answers a caller at once
        self.phone(number).calls.append(call)
        self._calls[call_id] = call
        self._changed(number)
        await self._render(call, started.actions)
        return call

    async def _feed(self, call: SimCall, event: Event) -> None:
        await self.sessions.advance(call.session, event, render=lambda actions: self._render(call, actions))

    async def _render(self, call: SimCall, actions: tuple[Action, ...]) -> None:
        if actions:
            call.hearing = []
        for action in actions:
            if isinstance(action, Say):
                self._hear(call, action.text)
            elif isinstance(action, Play):
                self._hear(call, f"[{action.prompt}]")
            elif isinstance(action, Gather):
                for prompt in action.prompts:
                    self._hear(call, prompt.text if isinstance(prompt, Say) else f"[{prompt.prompt}]")
                call.gathering = action
                self._timer(call, self.clock.now() + action.timeout_s, lambda: self._no_input(call))
                script = self.scripts.get(call.number)
                if call.direction == "outbound" and script is not None and script.behaviour == "answer" \
                        and script.digits:
                    self._spawn(self._scripted_press(call, script.digits))
            elif isinstance(action, Hold):
                self._hear(call, "[music on hold]")
            elif isinstance(action, Bridge):
                self._bridge(call, action.call_id)
            elif isinstance(action, Record):
                self._hear(call, "[beep: recording]" if action.beep else "[recording]")
                call.recording = action
                self._timer(call, self.clock.now() + action.max_seconds, lambda: self._finish_recording(call))
            elif isinstance(action, Hangup):
                await self._end(call, CallOutcome.NO_ANSWER, "flow hung up")
                return

    def _bridge(self, call: SimCall, other_id: str) -> None:
        other = self._calls.get(other_id)
        if other is None or other.state != "in_progress":
            log.warning("sandbox: cannot bridge %s to %s: that call is not up", call.call_id, other_id)
            self._hear(call, "[bridge failed: the other party is gone]")
            return
        call.bridged_to, other.bridged_to = other.call_id, call.call_id
        call.bridged_with, other.bridged_with = other.number, call.number
        other.gathering = None
        self._hear(call, f"[connected to {other.number}]")
        self._hear(other, f"[connected to {call.number}]")

    async def _finish_recording(self, call: SimCall) -> None:
        if call.recording is None or call.state == "ended":
            return
        call.recording = None
        duration = int(self.clock.now() - (call.answered_at or call.started_at))
        await self._feed(call, RecordingFinished(url=f"sandbox://recordings/{call.call_id}.wav", duration_s=duration))

    def _hear(self, call: SimCall, text: str) -> None:
        call.hearing.append(text)
        call.transcript.append(text)
        self._changed(call.number)

    def _changed(self, number: str) -> None:
        if self.on_change is not None:
            self.on_change(number)

    async def _end(self, call: SimCall, outcome: CallOutcome, detail: str, *, report: bool = True) -> None:
        """The call is over: ``outcome`` is its result when the flow reached none (rang out, rejected).

        ``report=False`` for a call the gateway canceled: it already knows.
        """
        if call.state == "ended":
            return
        self._cancel_timers(call)
        call.state = "ended"
        call.gathering = None
        call.recording = None
        call.ended_at = self.clock.now()
        self._changed(call.number)
        await self.sessions.end(call.session, outcome, detail, report=report)
        log.info("sandbox call %s ended: %s", call.call_id, _result(call) or outcome.value)
        other = self._calls.get(call.bridged_to or "")
        if other is not None and other.state != "ended":
            self._hear(other, "[the other party hung up]")
            await self._end(other, CallOutcome.NO_ANSWER, "the other party hung up")

    # --------------------------------------------------------------- timers

    def _timer(self, call: SimCall, at: float, then: Callable[[], Awaitable[None]]) -> None:
        async def wait_then() -> None:
            await self.clock.sleep_until(at)
            await then()

        call.timers.append(self._spawn(wait_then()))

    def _cancel_timers(self, call: SimCall) -> None:
        current = asyncio.current_task()
        for task in call.timers:
            if task is not current:
                task.cancel()
        call.timers.clear()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ring_out(self, call: SimCall) -> None:
        if call.state == "ringing":
            await self._end(call, CallOutcome.NO_ANSWER, "rang out")

    async def _no_input(self, call: SimCall) -> None:
        if call.state == "in_progress" and call.gathering is not None:
            call.gathering = None
            await self._feed(call, NoInput())

    async def _scripted(self, call: SimCall, script: SandboxPhone) -> None:
        if call.state != "ringing":
            return
        if script.behaviour == "reject":
            await self._end(call, CallOutcome.DECLINED, "rejected on the phone")
        else:
            await self.answer(call.number)

    async def _scripted_press(self, call: SimCall, digits: str) -> None:
        await asyncio.sleep(0)
        if call.state == "in_progress" and call.gathering is not None:
            await self.press(call.number, digits)


def describe(phone: SimPhone) -> dict[str, Any]:
    """The phone as the sandbox HTTP API shows it."""
    current = phone.current or (phone.calls[-1] if phone.calls else None)
    return {
        "number": phone.number,
        "call": None if current is None else {
            "id": current.call_id,
            "direction": current.direction,
            "state": current.state,
            "from" if current.direction == "outbound" else "to": current.other_party,
            "hearing": " ".join(current.hearing),
            "listening_for_keys": current.gathering is not None,
            "recording": current.recording is not None,
            "bridged_with": current.bridged_with,
            "transcript": current.transcript,
            "outcome": _result(current),
        },
        "calls": len(phone.calls),
        "sms": [{"direction": m.direction, "peer": m.peer, "text": m.text, "at": m.at} for m in phone.messages],
    }


def _result(call: SimCall) -> str | None:
    """What the call came to: a caller's flow outcome, or an engineer call's result."""
    session = call.session
    if call.direction == "inbound":
        return session.flow_outcome.value if session.flow_outcome else None
    return session.outcome.value if session.outcome else None
