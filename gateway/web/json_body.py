"""The one way a request body becomes JSON: bounded, strict, and never a 5xx.

``json.loads`` on untrusted bytes has sharp edges: deep nesting raises RecursionError, ``bytes`` input is
sniffed as UTF-16/32, ``NaN``/``Infinity`` are accepted (and later written back as invalid JSON), a number
of more than 4300 digits raises ValueError, and ``"\\ud800"`` decodes to a string that cannot be stored.
Every one of those is a 400 (malformed JSON) or a 422 (the field at fault) here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from aiohttp import web

from gateway.intake import check_text
from gateway.signals import IntakeError
from gateway.web.errors import ApiError, invalid

MAX_DEPTH = 64  # arrays and objects nested deeper than this are refused; real payloads nest 4 or 5 deep

# A JSON escape of a UTF-16 surrogate: the only way one can reach a decoded string from strict UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass(frozen=True)
class _Parsed:
    value: Any


_PARSED = web.RequestKey("gateway_json_body", _Parsed)


class _BadNumber(ValueError):
    pass


def _malformed(message: str, reason: str, **details: Any) -> ApiError:
    return ApiError(400, "malformed_json", message, {"reason": reason, **details})


def _constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumber(f"number {text[:20]} is out of range")
    return value


# For the depth of a document already known to be valid JSON: its strings (every one terminated, so the
# scan is linear), then a running sum over its brackets, all in C: a 1 MiB body of 330,000 small arrays
# takes about 20 ms (a walk over the decoded value took 370 ms, and /v2/enqueue parses before its key check).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def _depth(valid_json: bytes) -> int:
    brackets = _STRING.sub(b"", valid_json).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def parse_json(raw: bytes) -> Any:
    """``raw`` as a JSON document, or an ApiError: 400 ``malformed_json`` (``details.reason`` says why)."""
    if not raw.strip():
        raise _malformed("request body is empty; expected a JSON document", "empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"request body is not UTF-8 text (byte {exc.start})", "not_utf8") from None
    try:
        value = json.loads(text, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise _malformed(f"request body nests deeper than {MAX_DEPTH} levels", "too_deep",
                         max_depth=MAX_DEPTH) from None
    except json.JSONDecodeError as exc:
        raise _malformed(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                         "syntax") from None
    except ValueError as exc:  # _BadNumber, or an integer too long to convert
        raise _malformed(f"request body is not valid JSON: {exc}", "number") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _depth(raw) > MAX_DEPTH:
        raise _malformed(f"request body nests deeper than {MAX_DEPTH} levels", "too_deep", max_depth=MAX_DEPTH)
    return value


def check_body_text(raw: bytes, value: Any) -> None:
    """422 naming the first field whose text is not valid Unicode (a lone surrogate)."""
    if not _SURROGATE_ESCAPE.search(raw):
        return  # strict UTF-8 cannot carry a surrogate: only a \\uD8xx escape can
    try:
        check_text(value)
    except IntakeError as exc:
        raise invalid(exc.field, exc.message) from None


async def body_bytes(request: web.Request) -> bytes:
    """The raw body (413 past the size limit); 400 when it cannot be read (e.g. a Content-Encoding lie)."""
    try:
        return await request.read()
    except web.RequestPayloadError as exc:
        raise _malformed(f"request body could not be read: {exc}", "unreadable") from None


async def parsed_body(request: web.Request) -> Any:
    """The body parsed by :func:`parse_json` once per request (an auth check may need it first)."""
    cached = request.get(_PARSED)
    if cached is None:
        cached = _Parsed(parse_json(await body_bytes(request)))
        request[_PARSED] = cached
    return cached.value


async def read_json(request: web.Request) -> Any:
    """The body as JSON: 400 when it is not JSON, 413 when too large, 422 for text that is not Unicode."""
    value = await parsed_body(request)
    check_body_text(await body_bytes(request), value)
    return value


async def read_optional_json(request: web.Request) -> dict[str, Any]:
    """For action endpoints whose body is optional: {} when empty, else a JSON object."""
    if not (await body_bytes(request)).strip():
        return {}
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid("$", "expected a JSON object")
    return body
