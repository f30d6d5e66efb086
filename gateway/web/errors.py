"""Errors are values at the edge: every failure answers JSON {"error", "message", "details"}."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.web.keys import CONFIG

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, error: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.details = details or {}

    def response(self) -> web.Response:
        return error_response(self.status, self.error, self.message, self.details)


def error_response(status: int, error: str, message: str, details: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": error, "message": message, "details": details or {}}, status=status)


def invalid(field: str, message: str, **details: Any) -> ApiError:
    """422 naming the field at fault."""
    return ApiError(422, "invalid_field", f"{field}: {message}", {"field": field, **details})


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
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error, message = _HTTP_ERRORS.get(exc.status, ("http_error", exc.reason))
        if exc.status == 413:
            message = f"request body is larger than the limit of {request.app[CONFIG].max_body_bytes} bytes"
        return error_response(exc.status, error, message)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the gateway log")


async def read_json(request: web.Request) -> Any:
    """The body as JSON, or a 400 naming what is wrong with it (413 when too large)."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "malformed_json", "request body is empty; expected a JSON document")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "malformed_json", f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None


async def read_optional_json(request: web.Request) -> dict[str, Any]:
    """For action endpoints whose body is optional: {} when empty, else a JSON object."""
    if not (await request.read()).strip():
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid("$", "expected a JSON object")
    return body
