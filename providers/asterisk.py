"""Asterisk: alert calls and the hotline on the operator's own PBX, over AMI and FastAGI.

Outbound calls (alert and screening calls) are AMI ``Originate`` actions
(``Async``, ``Application: AGI``, ``Data: <agi_url>/call``) whose legs carry our
ids (``ChannelId`` = ``gw-<call id>``). A failed ``OriginateResponse`` settles
the call at once (no answer, busy, congestion); an answered one connects to our
FastAGI server, where the request's flow runs with :func:`asterisk.fastagi.run_flow`.

The hotline arrives the other way: the operator's dialplan runs
``AGI(agi://<gateway>:4573/hotline/<name>)`` or ``AGI(agi://<gateway>:4573/hotline,<name>)``,
naming the hotline (its ``name`` or number in the config) in the request itself,
since a real dialplan often runs the AGI from an ``s`` extension or after a
``Goto``, where the dialled number is gone. A bare ``.../hotline`` falls back to
the dialled number (``agi_extension``, then ``agi_dnid``). The caller's flow runs
on that session and a rendered ``Hold`` tells the gateway to try engineers. The caller
is bridged from the accepting engineer's own AGI session with ``EXEC Bridge
"<caller channel>,x"``. To the caller's AGI that looks exactly like a hang-up;
AMI tells the two apart (``BridgeEnter`` vs ``Hangup`` with the caller's
Uniqueid), so AMI decides whether the caller is connected or gone. Asterisk
sends a hung-up caller's ``Hangup`` only after its FastAGI socket is closed:
with no bridge asked for, a caller who left AGI is gone at once (the engineers'
calls end now); otherwise the caller's session is closed before AMI is heard.

Every call, placed or received, is driven through the one call-session runner
(:mod:`providers.call_session`): it holds the flow's state, maps outcomes and
reports each result, wait and end exactly once. This module translates: AMI
events and AGI replies in, AGI commands and AMI actions out, with the Asterisk
mechanics (Originate, ChannelId, ``EXEC Bridge``, AMI Hangup, the caller-gone
verdict, TTS). Calls whose outcome was lost with the AMI connection are settled
as FAILED after the ring timeout plus a grace period (on the injected clock), so
escalation carries on. A call cannot outlive the gateway's process (its FastAGI
socket dies with it), so no session is carried on after a restart: on shutdown
the sessions are ended and callers are handed back to the dialplan, whose lines
after ``AGI()`` run (see the README).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asterisk import agi_commands as agi
from asterisk.ami import AmiClient, AmiError, AmiNotConnected, AmiTimeout
from asterisk.ami_events import AmiEvent, ChannelHangup, OriginateResult, parse_event
from asterisk.fastagi import (
    AgiError,
    AgiProtocolError,
    AgiSession,
    ChannelLeftAgi,
    FastAgiServer,
    FlowRunOptions,
    route_by_script,
    run_flow,
    run_steps,
)
from asterisk.tts import TtsRenderer
from core.clock import Clock
from core.phone import caller_number, mask, mask_numbers_in
from ivr_flows.model import (
    Action,
    EngineerConnected,
    Event,
    FlowOutcome,
    Hangup,
    HungUp,
    NobodyAccepted,
    Play,
    Step,
)
from providers.asterisk_settings import AsteriskSettings
from providers.base import (
    CallOutcome,
    CallRequest,
    Capabilities,
    InboundCall,
    ProviderError,
    ProviderEvents,
)
from providers.call_session import CallSession, CallSessions, SessionStore

log = logging.getLogger(__name__)

ROUTE_CALL = "call"  # outbound calls: agi://<gateway>/call, started by our Originate
ROUTE_HOTLINE = "hotline"  # callers: the operator's dialplan runs AGI(agi://<gateway>/hotline)
NOT_IN_SERVICE_PROMPT = "ss-noservice"  # stock Asterisk sound: "the number you have dialed is not in service"

_ORIGINATE_OUTCOMES = {
    "no_answer": (CallOutcome.NO_ANSWER, "rang out"),
    "busy": (CallOutcome.BUSY, "line busy"),
    "congestion": (CallOutcome.FAILED, "congestion: the trunk or the network could not take the call"),
}
# Q.850 cause of the leg's Hangup when no OriginateResponse came to say more.
_HANGUP_CAUSES = {
    16: (CallOutcome.DECLINED, "rejected on the phone"),
    17: (CallOutcome.BUSY, "line busy"),
    18: (CallOutcome.NO_ANSWER, "no answer"),
    19: (CallOutcome.NO_ANSWER, "rang out"),
    21: (CallOutcome.DECLINED, "rejected on the phone"),
}
_PHONE_TEXT = re.compile(r"[\d\s()+.-]+")  # a value that is only a phone number, maybe formatted
_HANGUP_REPLY_S = 2.0  # how long AGI HANGUP may take before the socket is closed anyway


@dataclass(frozen=True, kw_only=True)
class AsteriskTiming:
    """Bounds of the adapter. Those marked *clock* run on the injected clock, the rest in real time."""

    connect_wait_s: float = 3.0  # place_call waits this long for AMI before giving up (retryable)
    outcome_grace_s: float = 30.0  # clock: ring timeout + this without any word -> FAILED ("outcome lost")
    accept_wait_s: float = 120.0  # clock: an accepted engineer with no bridge to make is hung up after this
    hangup_settle_s: float = 1.0  # after a leg's Hangup, how long an OriginateResponse may still come
    # A caller's AGI ended during a bridge: after closing it, how long AMI may take to say why.
    verdict_wait_s: float = 3.0
    hold_chunk_s: int = 10  # one MusicOnHold chunk; gateway events are picked up between chunks
    ami_action_timeout_s: float = 5.0
    ami_ping_interval_s: float = 10.0
    ami_backoff: tuple[float, float] = (0.25, 15.0)


@dataclass(eq=False, kw_only=True)
class _Outbound:
    """One call we originated, from the Originate to the end of its channel."""

    request: CallRequest
    run: CallSession  # the call's flow and what was reported, in the runner's hands
    first: tuple[Action, ...]  # the flow's first actions, rendered once the phone answers
    channel_id: str
    started_at: float
    bridge_to: asyncio.Future[_Caller]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    answered: bool = False  # OriginateResponse Reason 4
    agi: AgiSession | None = None
    canceled: bool = False
    ami_dropped: bool = False  # the AMI connection dropped while the call was in progress
    unsubscribe: Callable[[], None] | None = None
    watchdog: asyncio.Task[None] | None = None


@dataclass(eq=False, kw_only=True)
class _Caller:
    """One hotline caller, from its FastAGI session to the real end of its channel."""

    call_id: str
    uniqueid: str
    channel: str
    agi: AgiSession
    verdict: asyncio.Future[str]  # set by AMI after the caller left AGI: "bridged" or "gone"
    run: CallSession | None = None  # once the gateway gave the caller a hotline's flow
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # AMI Hangup of the caller's channel
    bridge_over: asyncio.Event = field(default_factory=asyncio.Event)  # the engineer's EXEC Bridge returned
    engineer: _Outbound | None = None
    connected: EngineerConnected | None = None
    bridged: bool = False
    unsubscribe: Callable[[], None] | None = None


@dataclass(eq=False)
class _SessionSteps:
    """The steps :func:`run_steps` renders, from the call's session: each event goes through the runner."""

    sessions: CallSessions
    run: CallSession
    first: tuple[Action, ...]

    async def start(self) -> Step[Any]:
        return self._step(self.first)

    async def on_event(self, event: Event) -> Step[Any]:
        return self._step((await self.sessions.advance(self.run, event)).actions)

    def _step(self, actions: tuple[Action, ...]) -> Step[Any]:
        return Step(state=self.run.state, actions=actions, outcome=self.run.flow_outcome)


class _NotInService:
    """The flow of a call to a number that is not a hotline: a stock message, then hang up."""

    def start(self) -> Step[None]:
        return Step(state=None, actions=(Play(prompt=NOT_IN_SERVICE_PROMPT), Hangup()))

    def on_event(self, state: None, event: Event) -> Step[None]:
        return Step(state=None)


def channel_id_for(call_id: str) -> str:
    """The Uniqueid our Originate gives the ``;1`` leg of call ``call_id``."""
    return "gw-" + re.sub(r"[^A-Za-z0-9._-]", "-", call_id)


class AsteriskProvider:
    """Voice on the operator's Asterisk; implements VoiceProvider and the provider lifecycle."""

    name = "asterisk"

    def __init__(
        self,
        config: AsteriskSettings,
        *,
        clock: Clock,
        default_region: str,
        timing: AsteriskTiming | None = None,
        hotlines: Mapping[str, str] | None = None,
        session_store: SessionStore | None = None,
    ) -> None:
        """``hotlines`` maps each hotline's name to its E.164 number, for AGI requests that name one.

        ``session_store`` keeps each live call's session (the gateway's store) while the call lasts.
        """
        self.config = config
        self.capabilities = Capabilities(
            voice=True, sms=False, inbound_voice=True, max_concurrent_calls=config.max_channels, calls_per_second=10
        )
        self._clock = clock
        self._region = default_region
        self._timing = timing or AsteriskTiming()
        self._hotlines = dict(hotlines or {})
        self._events: ProviderEvents | None = None
        self._sessions = CallSessions(provider="asterisk", store=session_store)
        self._ami = AmiClient(
            config.host,
            config.port,
            config.username,
            config.secret,
            action_timeout_s=self._timing.ami_action_timeout_s,
            ping_interval_s=self._timing.ami_ping_interval_s,
            reconnect_backoff=self._timing.ami_backoff,
            on_state_change=self._ami_state_changed,
        )
        self._agi = FastAgiServer(
            config.agi_listen_host,
            config.agi_listen_port,
            route_by_script({ROUTE_CALL: self._call_route, ROUTE_HOTLINE: self._hotline_route}),
        )
        self._agi_error: str | None = None
        self._closing = False
        self._tts = (
            TtsRenderer(config.tts_command, config.sounds_dir, resample=config.tts_resample or None)
            if config.tts_command
            else None
        )
        self._options = FlowRunOptions(record_dir=str(config.record_dir), hold_chunk_s=self._timing.hold_chunk_s)
        self._calls: dict[str, _Outbound] = {}  # by the gateway's call id
        self._by_channel: dict[str, _Outbound] = {}  # by ChannelId (= agi_uniqueid)
        self._callers: dict[str, _Caller] = {}  # by our hotline call id
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ lifecycle

    async def open(self, events: ProviderEvents) -> None:
        """Start FastAGI and AMI; returns at once even when Asterisk is down (AMI keeps retrying)."""
        self._events = self._sessions.events = events
        self._agi.allowed_peers = await self._allowed_agi_peers()
        try:
            await self._agi.start()
            self._agi_error = None
        except OSError as exc:
            self._agi_error = exc.strerror or str(exc)
            log.error("asterisk: FastAGI server cannot listen on %s:%d: %s",
                      self.config.agi_listen_host, self.config.agi_listen_port, self._agi_error)
        await self._ami.start()
        log.info("asterisk: AMI %s:%d as user %r, FastAGI at %s, %d channel(s), TTS %s",
                 self.config.host, self.config.port, self.config.username, self.config.agi_url,
                 self.config.max_channels, "on" if self._tts else "off (stock prompts)")

    async def _allowed_agi_peers(self) -> set[str]:
        """Loopback, the AMI host and ``agi_allowed_hosts``: where Asterisk's FastAGI connections come from."""
        allowed = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
        loop = asyncio.get_running_loop()
        for host in (self.config.host, *self.config.agi_allowed_hosts):
            try:
                for info in await loop.getaddrinfo(host, None):
                    allowed.add(str(info[4][0]))
            except OSError as exc:
                log.error("asterisk: cannot resolve %r for FastAGI's allowed hosts: %s", host, exc)
        return allowed

    async def close(self) -> None:
        # FastAGI sessions first (their routes end and clean up; callers go back to the dialplan), then
        # what is left. Calls cut short by the shutdown are not reported as outcomes (after a restart,
        # escalation goes on from the gateway's store), and no session is kept: nothing can carry on a
        # call whose FastAGI socket is gone.
        self._closing = True
        await self._agi.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for call in list(self._calls.values()):
            await self._sessions.end(call.run, CallOutcome.FAILED, "the gateway shut down", report=False)
            self._retire(call)
        self._sessions.forget()
        await self._ami.stop()

    def readiness(self) -> dict[str, str]:
        problems = []
        state = self._ami.state
        if state == "auth_failed":
            problems.append(f"AMI authentication failed for user {self.config.username}")
        elif state != "connected":
            problems.append(f"AMI not connected: {self._ami.last_error or state}")
        if self._agi_error is not None:
            problems.append(f"FastAGI server not listening on port {self.config.agi_listen_port}: {self._agi_error}")
        return {"voice:asterisk": "; ".join(problems) or "ok"}

    @property
    def agi_port(self) -> int:
        """The port the FastAGI server listens on."""
        return self._agi.port

    # ---------------------------------------------------------- provider API

    async def place_call(self, request: CallRequest) -> None:
        if self._events is None:
            raise ProviderError("the Asterisk provider is not open", permanent=False)
        if request.call_id in self._calls:
            raise ProviderError(f"call {request.call_id} is already in progress")
        if self._ami.state != "connected":
            try:
                await self._ami.wait_connected(self._timing.connect_wait_s)
            except AmiNotConnected as exc:
                raise ProviderError(f"Asterisk is not reachable: {exc}", permanent=False) from None
        channel_id = channel_id_for(request.call_id)
        started = await self._sessions.start(request.call_id, outbound=True, flow=request.flow,
                                             extra={"channel_id": channel_id})
        loop = asyncio.get_running_loop()
        call = _Outbound(request=request, run=started.session, first=started.actions, channel_id=channel_id,
                         started_at=self._clock.now(), bridge_to=loop.create_future())
        self._calls[request.call_id] = call
        self._by_channel[channel_id] = call
        call.unsubscribe = self._ami.subscribe(channel_id, lambda event: self._call_event(call, event))
        dial = self.config.dial_string.replace("{number}", request.to).replace("{digits}", request.to.lstrip("+"))
        try:
            await self._ami.originate(
                channel=dial,
                channel_id=channel_id,
                other_channel_id=f"{channel_id}-b",
                timeout_ms=request.ring_timeout_s * 1000,
                caller_id=request.caller_id or self.config.caller_id,
                application="AGI",
                data=f"{self.config.agi_url}/{ROUTE_CALL}",
            )
        except (AmiNotConnected, AmiTimeout) as exc:
            await self._unplaced(call)
            if isinstance(exc, AmiTimeout):
                self._spawn(self._hang_up_quietly(channel_id))  # it may have been queued after all
            raise ProviderError(f"Asterisk did not take the call: {exc.message}", permanent=False) from None
        except AmiError as exc:
            await self._unplaced(call)
            raise ProviderError(f"Asterisk refused the call: {exc.message}") from None
        log.info("asterisk call %s to %s: dialling as %s", request.call_id, mask(request.to), channel_id)
        if self._calls.get(request.call_id) is call:  # not settled already by a quick OriginateResponse
            call.watchdog = self._spawn(self._watch(call))

    async def _unplaced(self, call: _Outbound) -> None:
        """The Originate failed: the gateway hears it from place_call's error, not as a result."""
        self._retire(call)
        await self._sessions.end(call.run, CallOutcome.FAILED, "not placed", report=False)

    async def cancel_call(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None:
            caller = self._callers.get(call_id)
            if caller is not None:
                await self._hang_up_caller(caller)
            return
        if call.canceled:
            return
        call.canceled = True
        call.stop.set()
        log.info("asterisk call %s to %s: canceled by the gateway; hanging up",
                 call_id, mask(call.request.to))
        await self._sessions.end(call.run, CallOutcome.CANCELED, "canceled by the gateway", report=False)
        hung_up = await self._hang_up_quietly(call.channel_id)
        if call.agi is not None:
            if not hung_up:
                await call.agi.close()  # closing the FastAGI socket ends the channel too
        elif hung_up:
            self._retire(call)  # gone, or never there; should it answer anyway, the route hangs it up
        else:
            log.warning("asterisk call %s: could not hang up while ringing (AMI down); "
                        "it will be hung up if answered", call_id)

    async def notify(self, call_id: str, event: Event) -> None:
        caller = self._callers.get(call_id)
        if caller is None or caller.run is None or caller.run.ended:
            log.debug("asterisk: event %s for call %s ignored: no such live caller", type(event).__name__, call_id)
            return
        if isinstance(event, EngineerConnected):
            engineer = self._calls.get(event.call_id)
            if engineer is not None and self._can_bridge(engineer):
                caller.engineer, caller.connected = engineer, event
                engineer.bridge_to.set_result(caller)
                log.info("hotline call %s: connecting the caller to call %s", call_id, event.call_id)
                return
            log.warning("hotline call %s: engineer call %s is no longer up; offering voicemail instead",
                        call_id, event.call_id)
            caller.queue.put_nowait(NobodyAccepted())
            return
        caller.queue.put_nowait(event)

    # ------------------------------------------------------- outbound calls

    def _call_event(self, call: _Outbound, event: AmiEvent) -> None:
        """AMI events of one outbound call (both legs); runs in the AMI event task: keep it short."""
        typed = parse_event(event)
        if isinstance(typed, OriginateResult):
            if typed.answered:
                call.answered = True
                return
            outcome, detail = _ORIGINATE_OUTCOMES.get(
                typed.outcome, (CallOutcome.FAILED, f"the call could not be placed (reason {typed.reason})"))
            self._spawn(self._end_call(call, outcome, detail))
            if call.agi is None:
                self._retire(call)
        elif isinstance(typed, ChannelHangup) and typed.uniqueid == call.channel_id and call.agi is None:
            if call.run.ended:
                self._retire(call)
            else:
                self._spawn(self._settle_after_hangup(call, typed))

    async def _settle_after_hangup(self, call: _Outbound, hangup: ChannelHangup) -> None:
        """A leg ended with no result yet: the OriginateResponse may still be on its way, wait a little."""
        await asyncio.sleep(self._timing.hangup_settle_s)
        if self._calls.get(call.request.call_id) is not call or call.agi is not None:
            return  # settled meanwhile, or answered after all
        if call.answered:
            outcome, detail = CallOutcome.DECLINED, "hung up on answering"
        else:
            outcome, detail = _HANGUP_CAUSES.get(
                hangup.cause, (CallOutcome.FAILED, f"ended: {hangup.cause_txt or hangup.cause}"))
        self._retire(call)
        await self._end_call(call, outcome, detail)

    async def _watch(self, call: _Outbound) -> None:
        """Settle a call nobody told us about (events lost with the AMI connection) as FAILED."""
        await self._clock.sleep_until(call.started_at + call.request.ring_timeout_s + self._timing.outcome_grace_s)
        if call.agi is not None:
            return
        self._retire(call)
        if not call.run.ended:
            why = "AMI connection dropped" if call.ami_dropped else "no word from Asterisk"
            log.warning("asterisk call %s to %s: outcome lost (%s); settling it as failed",
                        call.request.call_id, mask(call.request.to), why)
            self._spawn(self._hang_up_quietly(call.channel_id))
            await self._end_call(call, CallOutcome.FAILED, f"outcome lost: {why}")

    async def _call_route(self, session: AgiSession) -> None:
        """FastAGI ``call``: the answered leg of one of our Originates runs the request's flow."""
        call = self._by_channel.get(session.uniqueid)
        if call is None or call.run.ended or call.canceled:
            log.warning("fastagi %s: no call is waiting for this channel; hanging up", session.label)
            return
        call.agi = session
        if call.watchdog is not None:
            call.watchdog.cancel()
        log.info("asterisk call %s to %s: answered", call.request.call_id, mask(call.request.to))
        steps = _SessionSteps(self._sessions, call.run, call.first)
        try:
            result = await run_steps(session, steps, tts=self._tts, options=self._options)
            if result == FlowOutcome.ACCEPTED and not call.canceled and not session.closed:
                await self._hold_for_bridge(call, session)
        except (AgiError, AgiProtocolError) as exc:
            log.warning("asterisk call %s: FastAGI session failed: %s", call.request.call_id, exc)
            await self._end_call(call, CallOutcome.FAILED, "the call's FastAGI session failed")
        finally:
            await self._end_call(call, CallOutcome.NO_ANSWER, "the call ended without an answer")
            self._retire(call)
            await self._end_session(session)

    async def _hold_for_bridge(self, call: _Outbound, session: AgiSession) -> None:
        """An accepted engineer waits on the line until the gateway says whom to bridge with."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(call.stop.wait()),
            asyncio.ensure_future(session.wait_hangup()),
            asyncio.ensure_future(self._clock.sleep_until(self._clock.now() + self._timing.accept_wait_s)),
        ]
        try:
            await asyncio.wait([call.bridge_to, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        if not call.bridge_to.done():
            if not call.canceled and not session.hung_up:
                log.warning("asterisk call %s: accepted, but nobody asked for a bridge; hanging up",
                            call.request.call_id)
            return
        caller = call.bridge_to.result()
        if call.canceled or session.hung_up:
            caller.bridge_over.set()
            caller.queue.put_nowait(NobodyAccepted())
            return
        await self._bridge(call, session, caller)

    async def _bridge(self, call: _Outbound, session: AgiSession, caller: _Caller) -> None:
        """``EXEC Bridge "<caller channel>,x"`` from the engineer's own AGI; returns when the bridge ends."""
        log.info("hotline call %s: bridging with call %s", caller.call_id, call.request.call_id)
        result = "ERROR"
        try:
            reply = await session.command(agi.exec_app("Bridge", caller.channel, "x"))
            result = "HANGUP"
            if reply.ok and not reply.failed:
                variable = await session.command(agi.get_variable("BRIDGERESULT"))
                result = (variable.value if variable.ok and variable.result == "1" else None) or "UNKNOWN"
        except Exception as exc:  # the caller must not be left on hold whatever went wrong
            log.warning("hotline call %s: bridging failed: %s", caller.call_id, exc)
        finally:
            caller.bridge_over.set()
            log.info("hotline call %s: bridge with call %s over (%s)", caller.call_id, call.request.call_id,
                     result)
            if result != "SUCCESS" and not caller.bridged:
                # Never bridged (the engineer's line dropped, or the bridge failed): the caller, still on
                # hold, is offered voicemail instead of waiting for ever.
                log.warning("hotline call %s: the bridge did not happen (%s); offering voicemail",
                            caller.call_id, result)
                caller.queue.put_nowait(NobodyAccepted())

    def _can_bridge(self, engineer: _Outbound) -> bool:
        session = engineer.agi
        return (
            session is not None
            and not session.closed
            and not session.hung_up
            and not engineer.canceled
            and not engineer.bridge_to.done()
        )

    async def _end_call(self, call: _Outbound, outcome: CallOutcome, detail: str) -> None:
        """The call is over: its result goes to the gateway unless the flow gave one (or it was canceled).

        A call cut short by the gateway's shutdown is not reported: escalation goes on from the store.
        """
        await self._sessions.end(call.run, outcome, detail, report=not self._closing)

    def _retire(self, call: _Outbound) -> None:
        """Forget a call: its result is known and its channel is gone or in the AGI route's hands."""
        if self._calls.get(call.request.call_id) is call:
            del self._calls[call.request.call_id]
        if self._by_channel.get(call.channel_id) is call:
            del self._by_channel[call.channel_id]
        if call.unsubscribe is not None:
            call.unsubscribe()
            call.unsubscribe = None
        if call.watchdog is not None and call.watchdog is not asyncio.current_task():
            call.watchdog.cancel()

    # -------------------------------------------------------------- hotline

    async def _hotline_route(self, session: AgiSession) -> None:
        """FastAGI ``hotline``: a caller reached a hotline (named in the request, or by the number dialled)."""
        uniqueid = session.uniqueid
        call_id = f"ast-{uniqueid}"
        number = caller_number(session.env.get("agi_callerid", ""), self._region)
        if self._events is None or not uniqueid:
            return
        dialled = self._hotline_number(session, call_id)
        loop = asyncio.get_running_loop()
        caller = _Caller(call_id=call_id, uniqueid=uniqueid, channel=session.channel, agi=session,
                         verdict=loop.create_future())
        caller.unsubscribe = self._ami.subscribe(uniqueid, lambda event: self._caller_event(caller, event))
        try:
            flow = None
            if dialled:
                flow = await self._events.inbound_call(InboundCall(call_id=call_id, caller=number,
                                                                   dialled=dialled))
                if flow is None:
                    log.warning("call %s from %s to %s: not a hotline number; tried %s", call_id,
                                mask(number) or "a withheld number", mask(dialled),
                                self._tried(session))
            if flow is None:
                await run_flow(session, _NotInService(), tts=None, options=self._options)
                return
            log.info("hotline call %s from %s to %s", call_id, mask(number) or "a withheld number",
                     mask(dialled))
            started = await self._sessions.start(call_id, outbound=False, flow=flow,
                                                 extra={"channel": session.channel})
            caller.run = started.session
            self._callers[call_id] = caller
            await self._run_caller(caller, started.session, started.actions)
        finally:
            if caller.unsubscribe is not None:
                caller.unsubscribe()
            await self._end_session(session)
            if self._callers.get(call_id) is caller:
                del self._callers[call_id]

    def _hotline_number(self, session: AgiSession, call_id: str) -> str:
        """The number of the hotline this caller reached; "" (logged) when it cannot be told.

        The AGI request names it first (``hotline/<name>``, else ``agi_arg_1``);
        only a request that names nothing falls back to the dialled number.
        """
        named = session.script_rest or session.argument(1)
        if named:
            found = self._hotlines.get(named)
            if found is None:
                as_number = caller_number(named, self._region)
                found = as_number if as_number in self._hotlines.values() else None
            if found is None:
                log.error("hotline call %s: the AGI request names hotline %r, which is not configured "
                          "(hotlines: %s); tried %s; the caller hears 'not in service'", call_id,
                          self._shown(named), ", ".join(sorted(self._hotlines)) or "none", self._tried(session))
                return ""
            return found
        for variable in ("agi_extension", "agi_dnid"):
            dialled = caller_number(session.env.get(variable, ""), self._region)
            if dialled:
                return dialled
        log.warning("hotline call %s: no hotline named in the AGI request and no dialled number; tried %s; "
                    "name it in the dialplan: AGI(agi://<gateway>:%d/hotline/<name>); "
                    "the caller hears 'not in service'", call_id, self._tried(session), self.config.agi_listen_port)
        return ""

    def _tried(self, session: AgiSession) -> str:
        """The AGI variables a hotline is looked up from, for the log (numbers masked)."""
        names = ("agi_network_script", "agi_arg_1", "agi_extension", "agi_dnid")
        return " ".join(f"{name}={self._shown(session.env.get(name, ''))!r}" for name in names)

    def _shown(self, value: str) -> str:
        """``value`` for a log line: a phone number masked, digits inside other text masked too."""
        number = caller_number(value, self._region) if _PHONE_TEXT.fullmatch(value) else ""
        return mask(number) if number else mask_numbers_in(value)

    async def _run_caller(self, caller: _Caller, run: CallSession, first: tuple[Action, ...]) -> None:
        steps = _SessionSteps(self._sessions, run, first)
        try:
            result = await run_steps(caller.agi, steps, tts=self._tts, events=caller.queue, options=self._options)
            if isinstance(result, ChannelLeftAgi) or result == FlowOutcome.CONNECTED:
                await self._after_agi(caller, run)
        except (AgiError, AgiProtocolError) as exc:
            log.warning("hotline call %s: FastAGI session failed: %s", caller.call_id, exc)
        finally:
            await self._sessions.end(run, CallOutcome.NO_ANSWER)  # for a caller, only the flow's outcome counts

    def _caller_event(self, caller: _Caller, event: AmiEvent) -> None:
        """AMI says what AGI cannot: the caller entered a bridge, or really hung up."""
        if event.uniqueid != caller.uniqueid:
            return
        if event.name == "BridgeEnter":
            caller.bridged = True
            if not caller.verdict.done():
                caller.verdict.set_result("bridged")
        elif event.name == "Hangup":
            caller.gone.set()
            if not caller.verdict.done():
                caller.verdict.set_result("gone")

    async def _after_agi(self, caller: _Caller, run: CallSession) -> None:
        """The caller's AGI ended on hold (or while a bridge was being made): bridged or gone?"""
        verdict = await self._verdict(caller)
        if run.flow_outcome not in (None, FlowOutcome.CONNECTED):
            return  # the flow already ended otherwise (a voicemail, nobody available): keep that
        if verdict == "gone":
            if run.flow_outcome is None:
                await self._sessions.advance(run, HungUp(cause="hung up while waiting"))
            return
        caller.bridged = True
        if run.flow_outcome is None:
            # Bridged without our engineer (AMI saw the caller enter a bridge): connected all the same.
            await self._sessions.advance(run, caller.connected or EngineerConnected(engineer_name="", call_id=""))
        log.info("hotline call %s: caller connected", caller.call_id)
        await caller.agi.close()  # its AGI is over; the channel lives on in the bridge
        gone = asyncio.ensure_future(caller.gone.wait())
        over = asyncio.ensure_future(caller.bridge_over.wait())
        try:
            await asyncio.wait({gone, over}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (gone, over):
                waiter.cancel()

    async def _verdict(self, caller: _Caller) -> str:
        """``"bridged"`` or ``"gone"``, without waiting on anything that needs the session closed first.

        Asterisk publishes a hung-up caller's ``Hangup`` only when the channel is
        destroyed, after the FastAGI socket is closed. With no engineer asked to
        bridge, nothing can have taken the caller: gone, at once (the engineers'
        calls end now, not after a wait). Otherwise the session is closed first (a
        channel in a bridge lives on; a hung-up one is destroyed and AMI says so)
        and AMI's ``BridgeEnter`` or ``Hangup`` decides.
        """
        if caller.verdict.done():
            return caller.verdict.result()
        if caller.engineer is None and not caller.bridged:
            return "gone"
        await caller.agi.close()
        try:
            return await asyncio.wait_for(asyncio.shield(caller.verdict), self._timing.verdict_wait_s)
        except TimeoutError:
            verdict = "bridged" if not caller.bridge_over.is_set() else "gone"
            log.warning("hotline call %s: no word from AMI on why the caller left AGI; assuming %s",
                        caller.call_id, verdict)
            return verdict

    async def _hang_up_caller(self, caller: _Caller) -> None:
        if not await self._hang_up_quietly(caller.uniqueid):
            await caller.agi.close()

    # ----------------------------------------------------------------- misc

    async def _hang_up_quietly(self, channel_or_id: str) -> bool:
        """AMI Hangup; False when it could not be sent. A channel that is already gone counts as done."""
        if self._ami.state != "connected":
            return False
        try:
            await self._ami.hangup(channel_or_id)
        except (AmiNotConnected, AmiTimeout) as exc:
            log.warning("asterisk: could not hang up %s: %s", channel_or_id, exc.message)
            return False
        except AmiError as exc:
            log.debug("asterisk: hang-up of %s: %s", channel_or_id, exc.message)
        return True

    def _ami_state_changed(self, state: str) -> None:
        if state == "connected":
            return
        for call in self._calls.values():
            if call.agi is None and not call.run.ended:
                call.ami_dropped = True

    async def _end_session(self, session: AgiSession) -> None:
        """A route is over: hang up its channel, unless the gateway is shutting down.

        On shutdown the session is only closed, so a caller goes back to the
        dialplan (its fallback after ``AGI()``), and an engineer's call ends
        (an Originate's AGI has no dialplan after it) or stays in its bridge.
        """
        await _end_session(session, hang_up=not self._closing)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task


async def _end_session(session: AgiSession, *, hang_up: bool) -> None:
    """Hang up the channel of a session and close it (AGI ``HANGUP`` alone only soft-hangs).

    Without ``hang_up`` the socket is only closed: Asterisk ends the AGI and the
    channel goes on in its dialplan, after the ``AGI()`` line.
    """
    if session.closed:
        return
    if hang_up and not session.hung_up:
        with contextlib.suppress(AgiError, AgiProtocolError, TimeoutError):
            await asyncio.wait_for(session.command(agi.hangup()), _HANGUP_REPLY_S)
    await session.close()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("asterisk: background task failed", exc_info=task.exception())


__all__ = ["AsteriskProvider", "AsteriskSettings", "AsteriskTiming", "channel_id_for"]
