"""Hotline caller: greet, optionally ask for the priority, hold, then bridge or take a voicemail.

The caller's flow only reacts; the gateway decides who to ring. Rendering
:class:`Hold` is the signal that engineers should be tried, and the gateway
answers with :class:`EngineerConnected` or :class:`NobodyAccepted`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from core.enums import Priority
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    EngineerConnected,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NobodyAccepted,
    NoInput,
    Record,
    RecordingFinished,
    Say,
    Step,
)

HotlinePhase = Literal["waiting", "menu", "holding", "connected", "voicemail", "done"]

PRIORITIES = (Priority.HIGH, Priority.LOW)


@dataclass(frozen=True, kw_only=True)
class HotlineState:
    """``priority`` is set once the caller holds; ``call_id`` is the engineer call bridged to."""

    phase: HotlinePhase = "waiting"
    attempts: int = 0
    priority: str | None = None
    engineer_name: str | None = None
    call_id: str | None = None
    recording_url: str | None = None
    outcome: FlowOutcome | None = None


@dataclass(frozen=True, kw_only=True)
class HotlineCallerFlow:
    greeting: str
    language: str = "en-US"
    priority_menu: bool = False
    default_priority: str = "low"
    voicemail: bool = True
    max_attempts: int = 3
    max_voicemail_s: int = 120
    menu_text: str = "If this is an emergency, press 1. Otherwise, press 2."
    gather_timeout_s: int = 5
    hold_text: str = "Please hold while we reach the on-call engineer."
    invalid_text: str = "Sorry, that is not an option."
    connecting_text: str = "Connecting you to {engineer_name}."
    voicemail_text: str = (
        "Sorry, nobody is available right now. "
        "Please leave a message after the beep, then hang up."
    )
    nobody_text: str = "Sorry, nobody is available right now. Goodbye."
    voicemail_saved_text: str = "Thank you. Your message has been passed on to the team. Goodbye."

    def __post_init__(self) -> None:
        if self.default_priority not in PRIORITIES:
            raise ValueError(f"default_priority must be one of {PRIORITIES}")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_voicemail_s < 1:
            raise ValueError("max_voicemail_s must be at least 1")
        if self.gather_timeout_s < 1:
            raise ValueError("gather_timeout_s must be at least 1")

    def start(self) -> Step[HotlineState]:
        return Step(state=HotlineState())

    def on_event(self, state: HotlineState, event: Event) -> Step[HotlineState]:
        if state.outcome is not None:
            return Step(state=state)
        match (state.phase, event):
            case (_, HungUp()):
                # Connected or voicemail-recorded calls already have their outcome.
                return _finish(state, FlowOutcome.ABANDONED)
            case ("waiting", Answered()):
                return self._answered(state)
            case ("menu", DigitsReceived(digits=digits)) if digits:
                return self._on_key(state, digits[0])
            case ("menu", DigitsReceived() | NoInput()):
                return self._retry(state, ())
            case ("holding", EngineerConnected(engineer_name=name, call_id=call_id)):
                text = self.connecting_text.format(engineer_name=name)
                return _finish(
                    replace(state, engineer_name=name, call_id=call_id),
                    FlowOutcome.CONNECTED,
                    (self._say(text), Bridge(call_id=call_id)),
                    phase="connected",
                )
            case ("holding", NobodyAccepted()):
                return self._nobody(state)
            case ("voicemail", RecordingFinished(url=url)):
                return _finish(
                    replace(state, recording_url=url),
                    FlowOutcome.VOICEMAIL,
                    (self._say(self.voicemail_saved_text), Hangup()),
                )
        return Step(state=state)

    def _answered(self, state: HotlineState) -> Step[HotlineState]:
        if self.priority_menu:
            return Step(state=replace(state, phase="menu"), actions=(self._menu(),))
        return self._hold(state, self.default_priority, (self._say(self.greeting),))

    def _on_key(self, state: HotlineState, key: str) -> Step[HotlineState]:
        if key == "1":
            return self._hold(state, Priority.HIGH, ())
        if key == "2":
            return self._hold(state, Priority.LOW, ())
        return self._retry(state, (self._say(self.invalid_text),))

    def _retry(self, state: HotlineState, lead: tuple[Action, ...]) -> Step[HotlineState]:
        """Use up one attempt: ask again, or hold at the default priority once they are spent."""
        state = replace(state, attempts=state.attempts + 1)
        if state.attempts >= self.max_attempts:
            return self._hold(state, self.default_priority, lead)
        return Step(state=state, actions=(*lead, self._menu()))

    def _hold(
        self, state: HotlineState, priority: str, lead: tuple[Action, ...]
    ) -> Step[HotlineState]:
        return Step(
            state=replace(state, phase="holding", priority=priority),
            actions=(*lead, self._say(self.hold_text), Hold(priority=Priority(priority))),
        )

    def _nobody(self, state: HotlineState) -> Step[HotlineState]:
        if self.voicemail:
            return Step(
                state=replace(state, phase="voicemail"),
                actions=(
                    self._say(self.voicemail_text),
                    Record(max_seconds=self.max_voicemail_s, beep=True),
                ),
            )
        return _finish(state, FlowOutcome.NO_ANSWER, (self._say(self.nobody_text), Hangup()))

    def _menu(self) -> Gather:
        return Gather(
            prompts=(self._say(self.greeting), self._say(self.menu_text)),
            num_digits=1,
            timeout_s=self.gather_timeout_s,
        )

    def _say(self, text: str) -> Say:
        return Say(text=text, language=self.language)


def _finish(
    state: HotlineState,
    outcome: FlowOutcome,
    actions: tuple[Action, ...] = (),
    *,
    phase: HotlinePhase = "done",
) -> Step[HotlineState]:
    return Step(
        state=replace(state, phase=phase, outcome=outcome), actions=actions, outcome=outcome
    )
