"""The kind of a page decides its call flow, its channels and what a positive answer means.

An alert call asks the engineer to press 1 to acknowledge; a hotline screening call asks them to press
1 to take the caller. The services look the kind up by the alert's source, so no service branches on
``source == "hotline"``: the hotline registers its own kind.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from core.enums import Channel
from gateway.config import PolicyStep
from gateway.store import Alert, Page
from gateway.templates import Templates
from ivr_flows.alert_call import AlertCallFlow
from ivr_flows.model import Flow
from providers.base import CallOutcome


class PageKind(Protocol):
    def flow(self, alert: Alert, page: Page, language: str) -> Flow[Any]:
        """The flow a call of this kind runs."""
        ...

    def channels(self, step: PolicyStep) -> tuple[Channel, ...]:
        """How a step pages: by call, SMS, email, chat, or several."""
        ...

    async def answered(self, alert: Alert, page: Page, outcome: CallOutcome, who: str) -> None:
        """The person said yes (pressed 1): acknowledge, or connect a caller."""
        ...

    async def exhausted(self, alert: Alert) -> None:
        """The policy ran out without a yes."""
        ...


class AlertCallKind:
    """Read the alert, press 1 to acknowledge; a step pages by call, SMS, email or chat as it says."""

    follows_personal_rules = True  # an engineer's notification rules replace the step's via (gateway.later_pages)

    def __init__(self, templates: Templates, acknowledge: Callable[[int, str, str], Awaitable[object]]) -> None:
        self._templates = templates
        self._acknowledge = acknowledge

    def flow(self, alert: Alert, page: Page, language: str) -> Flow[Any]:
        return AlertCallFlow(message=self._templates.render("alert_call", alert=alert), language=language)

    def channels(self, step: PolicyStep) -> tuple[Channel, ...]:
        return tuple(Channel(channel) for channel in step.channels)

    async def answered(self, alert: Alert, page: Page, outcome: CallOutcome, who: str) -> None:
        if outcome == CallOutcome.ACKNOWLEDGED:
            how = f"acknowledged by {who} (pressed 1 on the call)"
            await self._acknowledge(alert.id, page.engineer or page.number, how)

    async def exhausted(self, alert: Alert) -> None:
        pass


class PageKinds:
    """The kind of each alert's pages, by the alert's source; alert calls unless a source registered one."""

    def __init__(self, default: PageKind) -> None:
        self._default = default
        self._by_source: dict[str, PageKind] = {}

    def register(self, source: str, kind: PageKind) -> None:
        self._by_source[source] = kind

    def of(self, alert: Alert) -> PageKind:
        return self.of_source(alert.source)

    def of_source(self, source: str) -> PageKind:
        return self._by_source.get(source, self._default)
