"""A call to a number that is not a hotline: say so, then hang up."""

from __future__ import annotations

from dataclasses import dataclass

from ivr_flows.model import Event, Hangup, Play, Say, Step

NOT_IN_SERVICE_TEXT = "The number you have dialled is not in service."


@dataclass(frozen=True, kw_only=True)
class NotInServiceState:
    pass


@dataclass(frozen=True, kw_only=True)
class NotInServiceFlow:
    """``prompt``: a recorded prompt to play instead of speaking ``text`` (a stock sound, say)."""

    text: str = NOT_IN_SERVICE_TEXT
    language: str = "en-US"
    prompt: str | None = None

    def start(self) -> Step[NotInServiceState]:
        message = Play(prompt=self.prompt) if self.prompt else Say(text=self.text, language=self.language)
        return Step(state=NotInServiceState(), actions=(message, Hangup()))

    def on_event(self, state: NotInServiceState, event: Event) -> Step[NotInServiceState]:
        return Step(state=state)
