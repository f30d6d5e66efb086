"""The error every layer raises for something a client can cause: an HTTP status, an id, details.

The web middleware maps it to ``{"error", "message", "details"}`` once, so handlers stay thin,
whether they belong to the gateway or to a provider (the sandbox's phone API, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    status = 400
    error = "bad_request"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = dict(details or {})


class InvalidField(DomainError):
    """422 naming the field at fault."""

    status, error = 422, "invalid_field"

    def __init__(self, field: str, message: str, **details: Any) -> None:
        super().__init__(f"{field}: {message}", {"field": field, **details})
