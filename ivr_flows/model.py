"""The vocabulary every flow speaks: actions out, events in, outcomes.

Flows are pure: ``flow.start()`` and ``flow.on_event(state, event)`` return a
:class:`Step` holding the new state, the actions a provider must render (TwiML,
AGI commands, simulated phones) and, once the call has reached a result, its
outcome. No I/O, no clock, no provider names.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from core.enums import Priority

# --------------------------------------------------------------------- actions


@dataclass(frozen=True, kw_only=True)
class Say:
    """Speak ``text`` (text-to-speech) in ``language`` (BCP 47, e.g. ``en-US``)."""

    text: str
    language: str = "en-US"


@dataclass(frozen=True, kw_only=True)
class Play:
    """Play a recorded prompt: a URL (Twilio) or a sound name (Asterisk)."""

    prompt: str


Prompt = Say | Play


@dataclass(frozen=True, kw_only=True)
class Gather:
    """Play ``prompts`` while listening for keys; a key press interrupts them.

    The provider answers with :class:`DigitsReceived` (``num_digits`` keys, or
    fewer ended by ``#``) or :class:`NoInput` after ``timeout_s`` of silence
    following the prompts.
    """

    prompts: tuple[Prompt, ...]
    num_digits: int = 1
    timeout_s: int = 5


@dataclass(frozen=True, kw_only=True)
class Hold:
    """Put the caller in the waiting queue of ``priority``, with music, until told otherwise.

    Rendering it is also how the gateway learns that a hotline caller is
    waiting and engineers should be tried.
    """

    priority: Priority = Priority.LOW
    music: str = "default"


@dataclass(frozen=True, kw_only=True)
class Bridge:
    """Connect this call to the call whose gateway id is ``call_id``."""

    call_id: str


@dataclass(frozen=True, kw_only=True)
class Record:
    """Record the caller (voicemail) after a beep; answered by :class:`RecordingFinished`."""

    max_seconds: int = 120
    beep: bool = True


@dataclass(frozen=True, kw_only=True)
class Hangup:
    """End the call."""


Action = Say | Play | Gather | Hold | Bridge | Record | Hangup

# ---------------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class Answered:
    """The far end picked up. ``machine`` is True when answering-machine detection says so."""

    machine: bool = False


@dataclass(frozen=True, kw_only=True)
class DigitsReceived:
    digits: str


@dataclass(frozen=True, kw_only=True)
class NoInput:
    """A :class:`Gather` ended with no key pressed."""


@dataclass(frozen=True, kw_only=True)
class HungUp:
    """The far end hung up (``cause`` is provider text, for the timeline only)."""

    cause: str = ""


@dataclass(frozen=True, kw_only=True)
class RecordingFinished:
    url: str
    duration_s: int = 0


@dataclass(frozen=True, kw_only=True)
class EngineerConnected:
    """Hotline: an engineer accepted on call ``call_id``; bridge the caller to it."""

    engineer_name: str
    call_id: str


@dataclass(frozen=True, kw_only=True)
class NobodyAccepted:
    """Hotline: the escalation policy ran out without anyone accepting."""


Event = (
    Answered
    | DigitsReceived
    | NoInput
    | HungUp
    | RecordingFinished
    | EngineerConnected
    | NobodyAccepted
)

# -------------------------------------------------------------------- outcomes


class FlowOutcome(StrEnum):
    """What a call achieved, as far as the flow can tell."""

    ACKNOWLEDGED = "acknowledged"  # alert call: the engineer pressed 1
    ACCEPTED = "accepted"  # screening: the engineer pressed 1 and takes the caller
    DECLINED = "declined"  # the engineer actively passed it on (2, another key)
    NO_ANSWER = "no_answer"  # answered but never gave a valid answer, or a machine
    HUNG_UP = "hung_up"  # hung up before giving an answer
    CONNECTED = "connected"  # hotline caller: bridged to an engineer
    VOICEMAIL = "voicemail"  # hotline caller: left a voicemail
    ABANDONED = "abandoned"  # hotline caller: hung up before anything was settled


S = TypeVar("S")


@dataclass(frozen=True, kw_only=True)
class Step(Generic[S]):
    """One transition: the new state, what to do now, and the outcome once known.

    ``outcome`` is set on the step that reaches it; a flow may still emit
    actions on that step (a goodbye, a hang-up). After an outcome the flow
    ignores further events except to return ``()`` actions.
    """

    state: S
    actions: tuple[Action, ...] = ()
    outcome: FlowOutcome | None = None


class Flow(Protocol[S]):
    """A call flow: immutable parameters, with the state kept by the caller."""

    def start(self) -> Step[S]: ...

    def on_event(self, state: S, event: Event) -> Step[S]: ...
