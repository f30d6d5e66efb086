"""Typed AMI events and responses, as Asterisk 22 sends them.

:class:`AmiEvent` is any event as received (name and headers). The few events
the provider acts upon have a parsed form: :class:`OriginateResult`,
:class:`DtmfEnd`, :class:`ChannelHangup`, :class:`BridgeChange` and
:class:`ChannelState`; :func:`parse_event` picks the right one.

Header names are matched case-insensitively, as Asterisk does. When a header
repeats inside one message, the first value is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

OriginateOutcome = Literal["answered", "no_answer", "busy", "congestion", "failed"]

# OriginateResponse ``Reason``: the last call-progress indication Asterisk saw on
# the dialled channel (``AST_CONTROL_*``), checked against Asterisk 22 captures.
REASON_FAILED = 0  # the channel could not be created or dialled
REASON_HANGUP = 1  # hung up before answer, or another failure
REASON_NO_ANSWER = 3  # ringing until the Originate's Timeout (Hangup cause 19)
REASON_ANSWERED = 4  # answered (``Response: Success``)
REASON_BUSY = 5  # busy (far leg cause 17)
REASON_CONGESTION = 8  # congestion (far leg cause 34)

_OUTCOMES: dict[int, OriginateOutcome] = {
    REASON_ANSWERED: "answered",
    REASON_NO_ANSWER: "no_answer",
    REASON_BUSY: "busy",
    REASON_CONGESTION: "congestion",
}


def originate_reason_outcome(reason: int) -> OriginateOutcome:
    """Map an OriginateResponse ``Reason`` to an outcome; unknown reasons are ``failed``."""
    return _OUTCOMES.get(reason, "failed")


def _to_int(value: str, default: int) -> int:
    try:
        return int(value.strip())
    except ValueError:
        return default


def _first_values(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in headers:
        if key.lower() not in seen:
            seen.add(key.lower())
            result[key] = value
    return result


@dataclass(frozen=True, kw_only=True)
class AmiEvent:
    """One AMI event: its name and all its headers (``Event`` included)."""

    name: str
    headers: Mapping[str, str]
    _lower: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower", {k.lower(): v for k, v in self.headers.items()})

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> AmiEvent:
        pairs = headers.items() if isinstance(headers, Mapping) else headers
        values = _first_values(pairs)
        name = next((v for k, v in values.items() if k.lower() == "event"), "")
        return cls(name=name, headers=values)

    def get(self, key: str, default: str = "") -> str:
        """The header's value, whatever its case, or ``default``."""
        return self._lower.get(key.lower(), default)

    @property
    def uniqueid(self) -> str:
        return self.get("Uniqueid")

    @property
    def linkedid(self) -> str:
        return self.get("Linkedid")

    @property
    def channel(self) -> str:
        return self.get("Channel")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")


@dataclass(frozen=True, kw_only=True)
class AmiResponse:
    """The reply to one action; ``events`` holds the items of a list reply."""

    headers: Mapping[str, str]
    events: tuple[AmiEvent, ...] = ()

    def get(self, key: str, default: str = "") -> str:
        lowered = key.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), default)

    @property
    def response(self) -> str:
        return self.get("Response")

    @property
    def message(self) -> str:
        return self.get("Message")

    @property
    def action_id(self) -> str:
        return self.get("ActionID")

    @property
    def success(self) -> bool:
        return self.response in ("Success", "Follows", "Goodbye")


@dataclass(frozen=True, kw_only=True)
class OriginateResult:
    """An ``OriginateResponse`` event.

    ``uniqueid`` is the Originate's ``ChannelId`` on success and on failure.
    On failure ``channel`` is the dial string, not a channel name.
    """

    response: str  # "Success" or "Failure"
    reason: int
    uniqueid: str
    channel: str
    action_id: str

    @classmethod
    def from_event(cls, event: AmiEvent) -> OriginateResult:
        _expect(event, "OriginateResponse")
        return cls(
            response=event.get("Response"),
            reason=_to_int(event.get("Reason"), REASON_FAILED),
            uniqueid=event.uniqueid,
            channel=event.channel,
            action_id=event.action_id,
        )

    @property
    def outcome(self) -> OriginateOutcome:
        return originate_reason_outcome(self.reason)

    @property
    def answered(self) -> bool:
        return self.response == "Success" and self.reason == REASON_ANSWERED


@dataclass(frozen=True, kw_only=True)
class DtmfEnd:
    """A ``DTMFEnd`` event: a key was pressed (seen on the ``;1`` leg of a Local pair)."""

    digit: str
    direction: str  # "Received" or "Sent"
    duration_ms: int
    uniqueid: str
    channel: str

    @classmethod
    def from_event(cls, event: AmiEvent) -> DtmfEnd:
        _expect(event, "DTMFEnd")
        return cls(
            digit=event.get("Digit"),
            direction=event.get("Direction"),
            duration_ms=_to_int(event.get("DurationMs"), 0),
            uniqueid=event.uniqueid,
            channel=event.channel,
        )


@dataclass(frozen=True, kw_only=True)
class ChannelHangup:
    """A ``Hangup`` event: the channel is gone. ``cause`` is the Q.850 cause."""

    cause: int
    cause_txt: str
    uniqueid: str
    channel: str

    @classmethod
    def from_event(cls, event: AmiEvent) -> ChannelHangup:
        _expect(event, "Hangup")
        return cls(
            cause=_to_int(event.get("Cause"), 0),
            cause_txt=event.get("Cause-txt"),
            uniqueid=event.uniqueid,
            channel=event.channel,
        )


@dataclass(frozen=True, kw_only=True)
class BridgeChange:
    """A ``BridgeEnter`` (``entered``) or ``BridgeLeave`` event of one channel."""

    entered: bool
    bridge_uniqueid: str
    num_channels: int
    uniqueid: str
    channel: str

    @classmethod
    def from_event(cls, event: AmiEvent) -> BridgeChange:
        if event.name not in ("BridgeEnter", "BridgeLeave"):
            raise ValueError(f"expected BridgeEnter or BridgeLeave, got {event.name!r}")
        return cls(
            entered=event.name == "BridgeEnter",
            bridge_uniqueid=event.get("BridgeUniqueid"),
            num_channels=_to_int(event.get("BridgeNumChannels"), 0),
            uniqueid=event.uniqueid,
            channel=event.channel,
        )


@dataclass(frozen=True, kw_only=True)
class ChannelState:
    """A ``Newstate`` event: ``state`` 4 Ring, 5 Ringing, 6 Up, 7 Busy."""

    state: int
    state_desc: str
    uniqueid: str
    channel: str

    @classmethod
    def from_event(cls, event: AmiEvent) -> ChannelState:
        _expect(event, "Newstate")
        return cls(
            state=_to_int(event.get("ChannelState"), -1),
            state_desc=event.get("ChannelStateDesc"),
            uniqueid=event.uniqueid,
            channel=event.channel,
        )

    @property
    def up(self) -> bool:
        return self.state == 6


TypedEvent = OriginateResult | DtmfEnd | ChannelHangup | BridgeChange | ChannelState

_PARSERS: dict[str, Callable[[AmiEvent], TypedEvent]] = {
    "OriginateResponse": OriginateResult.from_event,
    "DTMFEnd": DtmfEnd.from_event,
    "Hangup": ChannelHangup.from_event,
    "BridgeEnter": BridgeChange.from_event,
    "BridgeLeave": BridgeChange.from_event,
    "Newstate": ChannelState.from_event,
}


def parse_event(event: AmiEvent) -> TypedEvent | None:
    """The typed form of ``event``, or None for events the provider does not use."""
    parser = _PARSERS.get(event.name)
    return parser(event) if parser is not None else None


def _expect(event: AmiEvent, name: str) -> None:
    if event.name != name:
        raise ValueError(f"expected {name}, got {event.name!r}")
