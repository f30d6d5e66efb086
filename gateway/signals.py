"""What every intake format is normalized to before the gateway acts on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class AlertSignal:
    """One instruction about one alert, from any source.

    ``action`` is "trigger", "acknowledge" or "resolve". ``dedup_key`` ties the
    three together; for a trigger without one the gateway makes one up.
    ``priority`` is "high", "low" or None (the route decides).
    """

    action: str
    source: str  # "api" | "alertmanager" | "grafana" | "pagerduty"
    dedup_key: str | None
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    priority: str | None = None
    team: str | None = None  # explicit team asked for by the sender (generic API)
    routing_key: str | None = None  # PagerDuty routing_key (a secret: never logged)
    receiver: str = ""  # Alertmanager's (or Grafana's) receiver: the notification route that sent it


class IntakeError(Exception):
    """The body is not a valid payload of its format. ``field`` is the JSON path at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
