"""HTML from the console's jinja2 templates (autoescaped), with what every page shows."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from functools import cache
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from core.clock import iso
from gateway.console.sessions import SESSION
from gateway.web.keys import CLOCK, SANDBOX


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.filters["hue"] = hue
    env.globals["iso"] = iso
    return env


def when(ts: float | None) -> str:
    """A time as operators read it: ``Wed 7 Jan 12:00 UTC``."""
    if ts is None:
        return "—"
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return f"{moment:%a} {moment.day} {moment:%b %H:%M} UTC"


def ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def hue(name: str) -> int:
    """A stable colour per engineer in the on-call picture."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 360


def page(request: web.Request, name: str, *, http_status: int = 200, **context: Any) -> web.Response:
    session = request.get(SESSION)
    text = environment().get_template(name).render(
        session=session,
        role=session.token.role if session is not None else None,
        may_act=session is not None and session.token.role in ("responder", "admin"),
        sandbox=SANDBOX in request.app,
        now=request.app[CLOCK].now(),
        path=request.path,
        **context,
    )
    return web.Response(text=text, status=http_status, content_type="text/html", charset="utf-8",
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                                            "frame-ancestors 'none'"})


def refusal(request: web.Request, status: int, message: str) -> web.Response:
    return page(request, "refused.html", http_status=status, message=message)


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField] | web.Response:
    """The POSTed form, or a 400 page when its body cannot be decoded (an unknown charset, invalid UTF-8)."""
    try:
        return await request.post()
    except (UnicodeDecodeError, LookupError, ValueError):
        return refusal(request, 400, "This form's body could not be read (its character set or encoding).")
