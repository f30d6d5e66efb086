"""The one call-session runner: drives a flow during a call and owns every exactly-once rule.

A provider only translates: its wire events (a webhook, an AGI reply, a button on a simulated phone)
become flow events it hands to :meth:`CallSessions.advance`, and the actions that come back are
rendered in its own language (TwiML, AGI commands, a simulated phone). Everything in between is here:

- the flow's state and outcome, and the outcome mapped to a :class:`CallOutcome` (machine included);
- an outbound call's result is reported once: when the flow reaches an outcome (the line may stay up,
  as for an accepted screening call), or when the call ends without one;
- a hotline caller is reported waiting once per hold, and finished once, when the call is over;
- the recording URL of a voicemail;
- nothing raises into the provider: a failing report is logged;
- each session is saved to a :class:`SessionStore` after every change, so a gateway that restarts
  (or another gateway on the same database) carries on a call in progress.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ivr_flows import codec
from ivr_flows.model import Action, Event, Flow, FlowOutcome, Hangup, Hold, RecordingFinished, Step
from providers.base import CallerFinished, CallerWaiting, CallOutcome, CallResult, ProviderEvents, call_outcome

log = logging.getLogger(__name__)

Report = CallResult | CallerWaiting | CallerFinished
#: renders a step's actions in the provider's language before its reports go out (so an engineer hears
#: "connecting you" before the gateway bridges the call)
Render = Callable[[tuple[Action, ...]], Awaitable[None]]


class SessionStore(Protocol):
    """Where live call sessions are kept (the gateway's store); the data is JSON-able."""

    async def save_call_session(self, call_id: str, data: dict[str, Any]) -> None: ...

    async def load_call_session(self, call_id: str) -> dict[str, Any] | None: ...

    async def delete_call_session(self, call_id: str) -> None: ...


@dataclass(kw_only=True)
class CallSession:
    """One call with its flow. ``extra`` is the provider's own data about the call (a SID, a channel)."""

    call_id: str
    outbound: bool
    flow: Flow[Any]
    state: Any
    flow_outcome: FlowOutcome | None = None
    outcome: CallOutcome | None = None  # outbound: the result reported, once known
    recording_url: str | None = None
    reported: bool = False  # the result (outbound) or the end (inbound) went to the gateway
    waiting: bool = False  # a hotline caller is on hold now (reported waiting)
    ended: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "outbound": self.outbound, "flow": codec.dump(self.flow, self.state),
            "flow_outcome": self.flow_outcome.value if self.flow_outcome else None,
            "outcome": self.outcome.value if self.outcome else None, "recording_url": self.recording_url,
            "reported": self.reported, "waiting": self.waiting, "extra": dict(self.extra),
        }

    def take_from(self, newer: CallSession) -> None:
        """Become ``newer`` (the same call as stored by another gateway), keeping this object."""
        for name in ("flow", "state", "flow_outcome", "outcome", "recording_url", "reported", "waiting", "extra"):
            setattr(self, name, getattr(newer, name))

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CallSession:
        flow, state = codec.load(data["flow"])
        return cls(
            call_id=str(data["call_id"]), outbound=bool(data["outbound"]), flow=flow, state=state,
            flow_outcome=FlowOutcome(data["flow_outcome"]) if data.get("flow_outcome") else None,
            outcome=CallOutcome(data["outcome"]) if data.get("outcome") else None,
            recording_url=data.get("recording_url"), reported=bool(data.get("reported")),
            waiting=bool(data.get("waiting")), extra={str(k): str(v) for k, v in (data.get("extra") or {}).items()},
        )


@dataclass(frozen=True, kw_only=True)
class Advance:
    """What one step means for the provider: the actions to render, and the session after it."""

    actions: tuple[Action, ...]
    session: CallSession


class CallSessions:
    """Every live call of one provider: its flow, its state, and what has been reported."""

    def __init__(self, *, provider: str, store: SessionStore | None = None, shared: bool = False) -> None:
        self.provider = provider
        # Shared: other gateways on the same store serve this provider's calls too (its webhooks reach any
        # of them), so a live session is read again from the store before each use.
        self.shared = shared and store is not None
        self.events: ProviderEvents | None = None
        self._store = store
        self._live: dict[str, CallSession] = {}
        self._saved: dict[str, dict[str, Any]] = {}  # what the store holds for each live call
        self._loading: dict[str, asyncio.Future[CallSession | None]] = {}
        self._ended: dict[str, None] = {}  # calls over in this process (bounded): never loaded back to life

    def __len__(self) -> int:
        return len(self._live)

    # ------------------------------------------------------------ lifecycle

    async def start(self, call_id: str, *, outbound: bool, flow: Flow[Any],
                    extra: dict[str, str] | None = None, render: Render | None = None,
                    stored: bool = True) -> Advance:
        """A new call: its flow starts. Its first actions are rendered with ``render``, or returned.

        ``stored=False``: the provider stores the session itself once it knows more (a call it is
        about to place is stored with the provider's id for it, after the request, off the dial's path).
        """
        step = flow.start()
        session = CallSession(call_id=call_id, outbound=outbound, flow=flow, state=step.state,
                              extra=dict(extra or {}))
        self._live[call_id] = session
        return await self._apply(session, step, render, store=stored)

    def get(self, call_id: str) -> CallSession | None:
        """The live session in this process (no store read)."""
        return self._live.get(call_id)

    async def find(self, call_id: str) -> CallSession | None:
        """The live session, from this process or, after a restart, from the store.

        Webhooks of one call that race after a restart share one load, so they share one session.
        """
        session = self._live.get(call_id)
        if session is not None and self.shared and call_id not in self._ended:
            return await self._refresh(session)
        if session is not None or self._store is None or call_id in self._ended:
            return session
        loading = self._loading.get(call_id)
        if loading is None:
            loading = self._loading[call_id] = asyncio.ensure_future(self._load(call_id))
            loading.add_done_callback(lambda _: self._loading.pop(call_id, None))
        return await asyncio.shield(loading)

    async def _load(self, call_id: str) -> CallSession | None:
        assert self._store is not None
        try:
            data = await self._store.load_call_session(call_id)
            if data is None:
                return None
            session = CallSession.from_data(data)
        except Exception:  # an unreadable record is a call we cannot carry on; never raise into a webhook
            log.exception("%s call %s: its stored session cannot be read", self.provider, call_id)
            return None
        if call_id in self._ended:
            return None  # it ended while its row was being read (its delete had not landed yet)
        log.info("%s call %s carried on from the store (placed before a restart)", self.provider, call_id)
        self._saved[call_id] = data
        return self._live.setdefault(call_id, session)

    def ended_elsewhere(self, call_id: str) -> None:
        """The call ended at another gateway: never serve it from memory again."""
        session = self._live.pop(call_id, None)
        if session is not None:
            session.ended = True
        self._saved.pop(call_id, None)
        self._ended[call_id] = None
        while len(self._ended) > 10_000:
            self._ended.pop(next(iter(self._ended)))

    async def _refresh(self, session: CallSession) -> CallSession | None:
        """The session as stored now: another gateway may have moved it on, or ended it."""
        assert self._store is not None
        try:
            data = await self._store.load_call_session(session.call_id)
            if data is None:  # ended elsewhere (its row is gone)
                self.ended_elsewhere(session.call_id)
                return None
            if data != self._saved.get(session.call_id):
                session.take_from(CallSession.from_data(data))
                self._saved[session.call_id] = data
        except Exception:  # never raise into a webhook: go on with what this process knows
            log.exception("%s call %s: its stored session cannot be read", self.provider, session.call_id)
        return session

    async def save(self, session: CallSession) -> None:
        """Store the session now (after the provider changed its ``extra``, say)."""
        if self._store is None or session.ended or session.call_id in self._ended:
            return
        data = session.to_data()
        if self._saved.get(session.call_id) == data:
            return  # nothing changed (a key that repeats the message): no write
        try:
            await self._store.save_call_session(session.call_id, data)
            self._saved[session.call_id] = data
        except Exception:
            log.exception("%s call %s: its session could not be stored", self.provider, session.call_id)

    # ----------------------------------------------------------------- steps

    async def advance(self, session: CallSession, event: Event, render: Render | None = None) -> Advance:
        """Feed ``event`` to the call's flow; render its actions (with ``render``, else return them);
        then report what the step settled."""
        if session.ended:
            return Advance(actions=(), session=session)
        if isinstance(event, RecordingFinished):
            session.recording_url = event.url
        return await self._apply(session, session.flow.on_event(session.state, event), render)

    async def _apply(self, session: CallSession, step: Step[Any], render: Render | None = None, *,
                     store: bool = True) -> Advance:
        session.state = step.state
        reports: list[Report] = []
        if step.outcome is not None and session.flow_outcome is None:
            session.flow_outcome = step.outcome
        hanging_up = any(isinstance(a, Hangup) for a in step.actions)
        if step.actions:
            session.waiting = False
        for action in step.actions:
            if isinstance(action, Hold) and not session.outbound:
                session.waiting = True
                reports.append(CallerWaiting(call_id=session.call_id, priority=action.priority))
        if session.outbound and not session.reported:
            if session.flow_outcome is not None:
                reports.append(self._result(session, call_outcome(session.flow_outcome, session.state), ""))
            elif hanging_up:
                reports.append(self._result(session, CallOutcome.NO_ANSWER, "flow hung up"))
        if not session.outbound and hanging_up and not session.reported:
            reports.append(self._caller_finished(session, ""))
        if store:
            await self.save(session)
        if render is not None:
            try:
                await render(step.actions)
            except Exception:  # a rendering fault must not swallow the result the step reached
                log.exception("%s call %s: rendering the flow's actions failed", self.provider, session.call_id)
        await self._emit(reports)
        return Advance(actions=step.actions, session=session)

    # ------------------------------------------------------------------- end

    async def end(self, session: CallSession, outcome: CallOutcome, detail: str = "", *,
                  report: bool = True) -> None:
        """The call is over. ``outcome`` is the result when the flow reached none (rang out, busy, ...).

        ``report=False``: nothing more goes to the gateway (it canceled the call, or never placed it).
        """
        if session.ended:
            return
        reports: list[Report] = []
        if report and session.outbound and not session.reported:
            reports.append(self._result(session, outcome, detail))
        elif report and not session.outbound and not session.reported:
            reports.append(self._caller_finished(session, detail))
        elif session.outbound and session.outcome is None:
            session.outcome = outcome  # what became of it, kept for the provider's own view; not reported
        session.ended = True
        self._live.pop(session.call_id, None)
        self._saved.pop(session.call_id, None)
        self._ended[session.call_id] = None
        while len(self._ended) > 10_000:
            self._ended.pop(next(iter(self._ended)))
        if self._store is not None:
            try:
                await self._store.delete_call_session(session.call_id)
            except Exception:
                log.exception("%s call %s: its stored session could not be removed", self.provider,
                              session.call_id)
        await self._emit(reports)

    def forget(self) -> None:
        """The provider closes: drop the sessions from memory (the store keeps them for a restart)."""
        self._live.clear()
        self._saved.clear()

    # --------------------------------------------------------------- reports

    def _result(self, session: CallSession, outcome: CallOutcome, detail: str) -> CallResult:
        session.reported, session.outcome = True, outcome
        log.info("%s call %s: %s%s", self.provider, session.call_id, outcome.value, f" ({detail})" if detail else "")
        return CallResult(call_id=session.call_id, outcome=outcome, detail=detail)

    def _caller_finished(self, session: CallSession, detail: str) -> CallerFinished:
        session.reported = True
        outcome = session.flow_outcome or FlowOutcome.ABANDONED
        log.info("%s call %s: caller finished, %s", self.provider, session.call_id, outcome.value)
        return CallerFinished(call_id=session.call_id, outcome=outcome, recording_url=session.recording_url,
                              detail=detail)

    async def _emit(self, reports: list[Report]) -> None:
        events = self.events
        if events is None:
            return
        for report in reports:
            try:
                if isinstance(report, CallResult):
                    await events.call_ended(report)
                elif isinstance(report, CallerWaiting):
                    await events.caller_waiting(report)
                else:
                    await events.caller_finished(report)
            except Exception:
                log.exception("%s call %s: reporting %s failed", self.provider, report.call_id,
                              type(report).__name__)
