"""What the gateway asks of a phone provider, and what a provider reports back.

The gateway's domain code talks to providers only through these types.
A provider turns a :class:`CallRequest` into a real (or simulated) call, runs
the request's flow on it, and reports one :class:`CallOutcome` per call through
the :class:`ProviderEvents` it was given. Inbound SMS are reported the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from core.enums import Priority
from ivr_flows.model import Event, Flow, FlowOutcome


class CallOutcome(StrEnum):
    """The normalized end result of one outbound call."""

    ACKNOWLEDGED = "acknowledged"  # alert call: pressed 1
    ACCEPTED = "accepted"  # screening call: pressed 1, takes the hotline caller
    DECLINED = "declined"  # pressed another key, or rejected the call
    NO_ANSWER = "no_answer"  # rang out, or answered without a valid answer
    MACHINE = "machine"  # voicemail / answering machine picked up
    BUSY = "busy"
    FAILED = "failed"  # network or provider error, invalid number, congestion
    CANCELED = "canceled"  # we hung it up (alert acknowledged elsewhere, caller gone)


_FROM_FLOW = {
    FlowOutcome.ACKNOWLEDGED: CallOutcome.ACKNOWLEDGED,
    FlowOutcome.ACCEPTED: CallOutcome.ACCEPTED,
    FlowOutcome.DECLINED: CallOutcome.DECLINED,
    FlowOutcome.NO_ANSWER: CallOutcome.NO_ANSWER,
    FlowOutcome.HUNG_UP: CallOutcome.DECLINED,  # hanging up on the call passes it on
}


def call_outcome(flow_outcome: FlowOutcome, flow_state: object) -> CallOutcome:
    """What an outbound call's flow outcome means for escalation (the same for every provider).

    A flow that ended with NO_ANSWER because a machine answered (``state.machine``)
    is MACHINE: a voicemail pickup never acknowledges.
    """
    if flow_outcome == FlowOutcome.NO_ANSWER and getattr(flow_state, "machine", False):
        return CallOutcome.MACHINE
    return _FROM_FLOW.get(flow_outcome, CallOutcome.NO_ANSWER)


class SmsStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a provider declares it can carry; the provider manager picks providers by it."""

    voice: bool = True  # places calls
    sms: bool = False  # sends SMS
    inbound_voice: bool = False  # takes calls (hotlines)
    inbound_sms: bool = False  # takes SMS (two-way replies)
    max_concurrent_calls: int = 10  # lines
    calls_per_second: float = 10.0  # the rate calls may start at
    # A call goes on when the gateway that placed it dies (its state is in the store and the provider reaches
    # any gateway: Twilio). False: the call ends with its gateway (a FastAGI socket, a sandbox phone).
    calls_outlive_gateway: bool = False


@dataclass(frozen=True, kw_only=True)
class CallRequest:
    """One outbound call. ``call_id`` is the gateway's id (a page id) and comes back in events."""

    call_id: str
    to: str  # E.164
    caller_id: str | None  # E.164 to present, or None for the provider default
    flow: Flow[Any]
    ring_timeout_s: int = 30
    priority: Priority = Priority.LOW


@dataclass(frozen=True, kw_only=True)
class SmsRequest:
    sms_id: str
    to: str  # E.164
    body: str
    sender: str | None = None


@dataclass(frozen=True, kw_only=True)
class CallResult:
    """An outbound call reached its result; reported once per call.

    The line may still be up: an ACCEPTED screening call stays connected until
    the gateway bridges it. ``detail`` is human text for the timeline.
    """

    call_id: str
    outcome: CallOutcome
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class SmsStatusChanged:
    sms_id: str
    status: SmsStatus
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class InboundSms:
    sender: str  # E.164
    to: str
    text: str


@dataclass(frozen=True, kw_only=True)
class InboundCall:
    """A caller reached a hotline number; ``call_id`` is assigned by the provider, unique per call."""

    call_id: str
    caller: str  # E.164, or "" when withheld
    dialled: str  # E.164 of the hotline number


@dataclass(frozen=True, kw_only=True)
class CallerWaiting:
    """A hotline caller's flow rendered ``Hold``: the caller now waits for an engineer."""

    call_id: str
    priority: Priority


@dataclass(frozen=True, kw_only=True)
class CallerFinished:
    """A hotline caller's call is over (reported once, when the caller's leg ends).

    ``outcome`` is the caller flow's outcome (CONNECTED, VOICEMAIL, ABANDONED,
    NO_ANSWER), or ABANDONED when the flow never reached one.
    """

    call_id: str
    outcome: FlowOutcome
    recording_url: str | None = None
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class Reply:
    """Text to send back to an inbound SMS (empty: send nothing)."""

    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ProviderEvents(Protocol):
    """Implemented by the gateway; providers call it. Must not raise for bad events."""

    async def call_ended(self, event: CallResult) -> None: ...

    async def inbound_call(self, call: InboundCall) -> Flow[Any] | None:
        """The flow to run for a caller (the hotline), or None: not a hotline number, end the call."""
        ...

    async def caller_waiting(self, event: CallerWaiting) -> None: ...

    async def caller_finished(self, event: CallerFinished) -> None: ...

    async def sms_status(self, event: SmsStatusChanged) -> None: ...

    async def sms_received(self, sms: InboundSms) -> Reply: ...


class ProviderError(Exception):
    """A request the provider could not carry out. ``permanent`` means retrying will not help."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


class VoiceProvider(Protocol):
    name: str
    capabilities: Capabilities

    async def place_call(self, request: CallRequest) -> None:
        """Start the call; return once it is on its way. Raises ProviderError."""
        ...

    async def cancel_call(self, call_id: str) -> None:
        """Hang up a call that is ringing or in progress; no-op for an unknown id."""
        ...

    async def notify(self, call_id: str, event: Event) -> None:
        """Feed a gateway event (EngineerConnected, NobodyAccepted) to a live call's flow.

        The provider renders the resulting actions; a ``Bridge(call_id=X)`` joins
        this call with its own call X (an engineer leg it placed). No-op for an
        unknown or ended call.
        """
        ...


class SmsProvider(Protocol):
    name: str
    capabilities: Capabilities

    async def send_sms(self, request: SmsRequest) -> None:
        """Send one SMS. Raises ProviderError."""
        ...
