"""Domain errors: each carries its HTTP status, an error id and details, mapped once by the web middleware.

Services raise them; handlers stay thin. Every error answers JSON ``{"error", "message", "details"}``.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import DomainError


class AlertNotFound(DomainError):
    status, error = 404, "not_found"

    def __init__(self, alert_id: int) -> None:
        super().__init__(f"no alert {alert_id}", {"alert_id": alert_id})


class UnknownTeam(DomainError):
    status, error = 422, "invalid_field"

    def __init__(self, team: str) -> None:
        super().__init__(f"team: unknown team {team!r}", {"field": "team", "team": team})
        self.team = team


class NoRoute(DomainError):
    status, error = 422, "no_route"

    def __init__(self, index: int, labels: Mapping[str, str]) -> None:
        super().__init__(f"no route matches alert {index} and there is no default route", {"labels": dict(labels)})


class Conflict(DomainError):
    status, error = 409, "conflict"
