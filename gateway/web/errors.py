"""Errors are values at the edge: every failure answers JSON {"error", "message", "details"}."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from core.errors import DomainError
from gateway.web.keys import CONFIG
from gateway.web.log_paths import loggable

log = logging.getLogger(__name__)


class ApiError(DomainError):
    """An error the web layer itself finds (a malformed request), with its status and id given here."""

    def __init__(self, status: int, error: str, message: str, details: dict[str, Any] | None = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, details)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        response = error_response(self.status, self.error, self.message, self.details)
        response.headers.update(self.headers)
        return response


def error_response(status: int, error: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": error, "message": message, "details": details or {}}, status=status)


def invalid(field: str, message: str, **details: Any) -> ApiError:
    """422 naming the field at fault."""
    return ApiError(422, "invalid_field", f"{field}: {message}", {"field": field, **details})


def pagerduty_error(status: int, message: str, errors: list[str], error: str = "invalid_event") -> web.Response:
    """PagerDuty's error shape (``status``/``message``/``errors``) plus our ``error``/``details``."""
    return web.json_response(
        {"status": "invalid event" if status == 400 else "unauthorized", "message": message, "errors": errors,
         "error": error, "details": {"errors": errors}},
        status=status,
    )


_HTTP_ERRORS = {
    404: ("not_found", "no such resource"),
    405: ("method_not_allowed", "method not allowed on this resource"),
    413: ("body_too_large", "request body is too large"),
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except DomainError as exc:  # raised by a service: it carries its own status, id and details
        return error_response(exc.status, exc.error, exc.message, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error, message = _HTTP_ERRORS.get(exc.status, ("http_error", exc.reason))
        if exc.status == 413:
            message = f"request body is larger than the limit of {request.app[CONFIG].max_body_bytes} bytes"
        response = error_response(exc.status, error, message)
        if "Allow" in exc.headers:  # a 405 says which methods the resource has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error in %s %s", request.method, loggable(request.path))
        return error_response(500, "internal_error", "internal error; see the gateway log")
