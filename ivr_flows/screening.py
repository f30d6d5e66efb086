"""Screening: the engineer leg of a hotline call, "press 1 to accept the caller".

Accepting says a short line and keeps the call up: the gateway bridges the
caller in next. Any other key, or silence, passes the caller on at once, so
the next engineer is tried without delay.
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

ScreeningPhase = Literal["waiting", "menu", "done"]


@dataclass(frozen=True, kw_only=True)
class ScreeningState:
    """``machine`` is True when an answering machine picked up (outcome NO_ANSWER)."""

    phase: ScreeningPhase = "waiting"
    machine: bool = False
    outcome: FlowOutcome | None = None


@dataclass(frozen=True, kw_only=True)
class ScreeningFlow:
    """``caller`` is display text naming the caller: ``+1 555 777 0001``, ``unknown number``."""

    caller: str
    language: str = "en-US"
    gather_timeout_s: int = 6
    intro: str | None = None
    decline_hint_text: str = "Press any other key to pass it on."
    accepted_text: str = "Connecting you now."
    declined_text: str = "Passing it on. Goodbye."

    def __post_init__(self) -> None:
        if self.gather_timeout_s < 1:
            raise ValueError("gather_timeout_s must be at least 1")

    def start(self) -> Step[ScreeningState]:
        return Step(state=ScreeningState())

    def on_event(self, state: ScreeningState, event: Event) -> Step[ScreeningState]:
        if state.outcome is not None:
            return Step(state=state)
        match event:
            case HungUp():
                return _finish(state, FlowOutcome.HUNG_UP)
            case Answered(machine=True) if state.phase == "waiting":
                return _finish(replace(state, machine=True), FlowOutcome.NO_ANSWER, (Hangup(),))
            case Answered() if state.phase == "waiting":
                return Step(state=replace(state, phase="menu"), actions=(self._gather(),))
            case DigitsReceived(digits=digits) if state.phase == "menu" and digits[:1] == "1":
                return _finish(state, FlowOutcome.ACCEPTED, (self._say(self.accepted_text),))
            case DigitsReceived() | NoInput() if state.phase == "menu":
                return _finish(
                    state, FlowOutcome.DECLINED, (self._say(self.declined_text), Hangup())
                )
        return Step(state=state)

    def _gather(self) -> Gather:
        intro = self.intro or f"Hotline call from {self.caller}. Press 1 to accept."
        return Gather(
            prompts=(self._say(intro), self._say(self.decline_hint_text)),
            num_digits=1,
            timeout_s=self.gather_timeout_s,
        )

    def _say(self, text: str) -> Say:
        return Say(text=text, language=self.language)


def _finish(
    state: ScreeningState, outcome: FlowOutcome, actions: tuple[Action, ...] = ()
) -> Step[ScreeningState]:
    return Step(
        state=replace(state, phase="done", outcome=outcome), actions=actions, outcome=outcome
    )
