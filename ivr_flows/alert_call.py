"""Alert call: read the alert to the engineer and ask for 1 (acknowledge) or 2 (pass it on).

The whole message sits inside the :class:`Gather`, so a key pressed while the
message is still playing counts. ``*`` repeats the message for free; silence
and unknown keys use up one of ``max_attempts``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from ivr_flows.model import (
    Action,
    Answered,
    DigitsReceived,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    HungUp,
    NoInput,
    Say,
    Step,
)

AlertCallPhase = Literal["waiting", "menu", "done"]


@dataclass(frozen=True, kw_only=True)
class AlertCallState:
    """``machine`` is True when an answering machine picked up (outcome NO_ANSWER)."""

    phase: AlertCallPhase = "waiting"
    attempts: int = 0
    machine: bool = False
    outcome: FlowOutcome | None = None


@dataclass(frozen=True, kw_only=True)
class AlertCallFlow:
    message: str
    language: str = "en-US"
    max_attempts: int = 3
    gather_timeout_s: int = 5
    menu_text: str = "Press 1 to acknowledge, 2 to pass it on, or star to hear this again."
    acknowledged_text: str = "Acknowledged. Thank you."
    declined_text: str = "Passing it on. Goodbye."
    invalid_text: str = "Sorry, that is not an option."
    no_answer_text: str = "No answer received. Goodbye."

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.gather_timeout_s < 1:
            raise ValueError("gather_timeout_s must be at least 1")

    def start(self) -> Step[AlertCallState]:
        return Step(state=AlertCallState())

    def on_event(self, state: AlertCallState, event: Event) -> Step[AlertCallState]:
        if state.outcome is not None:
            return Step(state=state)
        match event:
            case HungUp():
                return _finish(state, FlowOutcome.HUNG_UP)
            case Answered(machine=True) if state.phase == "waiting":
                return _finish(replace(state, machine=True), FlowOutcome.NO_ANSWER, (Hangup(),))
            case Answered() if state.phase == "waiting":
                return Step(state=replace(state, phase="menu"), actions=(self._gather(),))
            case DigitsReceived(digits=digits) if state.phase == "menu" and digits:
                return self._on_key(state, digits[0])
            case DigitsReceived() | NoInput() if state.phase == "menu":
                return self._retry(state, ())
        return Step(state=state)

    def _on_key(self, state: AlertCallState, key: str) -> Step[AlertCallState]:
        if key == "1":
            return _finish(
                state,
                FlowOutcome.ACKNOWLEDGED,
                (self._say(self.acknowledged_text), Hangup()),
            )
        if key == "2":
            return _finish(
                state, FlowOutcome.DECLINED, (self._say(self.declined_text), Hangup())
            )
        if key == "*":
            return Step(state=state, actions=(self._gather(),))
        return self._retry(state, (self._say(self.invalid_text),))

    def _retry(self, state: AlertCallState, lead: tuple[Action, ...]) -> Step[AlertCallState]:
        """Use up one attempt: ask again, or give up once the attempts are spent."""
        state = replace(state, attempts=state.attempts + 1)
        if state.attempts >= self.max_attempts:
            return _finish(
                state,
                FlowOutcome.NO_ANSWER,
                (*lead, self._say(self.no_answer_text), Hangup()),
            )
        return Step(state=state, actions=(*lead, self._gather()))

    def _gather(self) -> Gather:
        return Gather(
            prompts=(self._say(self.message), self._say(self.menu_text)),
            num_digits=1,
            timeout_s=self.gather_timeout_s,
        )

    def _say(self, text: str) -> Say:
        return Say(text=text, language=self.language)


def _finish(
    state: AlertCallState, outcome: FlowOutcome, actions: tuple[Action, ...] = ()
) -> Step[AlertCallState]:
    return Step(
        state=replace(state, phase="done", outcome=outcome), actions=actions, outcome=outcome
    )
