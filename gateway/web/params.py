"""Whole numbers from paths and query strings: ASCII digits within SQLite's integer range, nothing else.

``str.isdigit()`` and ``int()`` accept far more than ``0-9``: ``"²".isdigit()`` is true yet ``int("²")``
fails, and ``int("١")`` (Arabic-Indic one) is 1, so ``/alerts/١/acknowledge`` acknowledged alert 1. SQLite
integers stop at 2**63-1; a larger Python int raises OverflowError when bound.
"""

from __future__ import annotations

import re

from aiohttp import web

from gateway.web.errors import ApiError, invalid

MAX_ID = 2**63 - 1  # SQLite's largest INTEGER
_DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)


def whole_number(text: str) -> int | None:
    """``text`` as an int when it is 1 to 19 ASCII digits no larger than MAX_ID, else None."""
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def path_id(request: web.Request, name: str, what: str) -> int:
    """The id in the path (``{name}``), or 404: an id that cannot exist names no resource."""
    raw = request.match_info[name]
    value = whole_number(raw)
    if value is None:
        raise ApiError(404, "not_found", f"no {what} {raw!r}")
    return value


def int_query(request: web.Request, name: str, default: int | None, low: int, high: int | None) -> int | None:
    """The query parameter ``name`` as a whole number in [low, high], its default when absent, else 422."""
    raw = request.query.get(name)
    if raw is None:
        return default
    value = whole_number(raw)
    top = MAX_ID if high is None else high
    if value is None or not low <= value <= top:
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(name, f"must be a whole number {bounds}, in ASCII digits")
    return value
