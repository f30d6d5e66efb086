"""The console's Maintenance page (/console/maintenance): windows and heartbeats, adding and ending a window.

A window is added and ended through the API's own code (``gateway.web.maintenance.check_new`` and the
``Maintenance`` service), so the rules, the limit and the record (``created_by``: the signed-in token's name)
are the same. Bad input shows the API's message above the form, with what was typed kept, and stores nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.console import sessions
from gateway.console.render import page
from gateway.heartbeats import dedup_key
from gateway.maintenance import ACTIONS, SUPPRESS, WindowState
from gateway.web.auth import Auth, Role, auth
from gateway.web.errors import ApiError
from gateway.web.keys import CLOCK, CONFIG
from gateway.web.maintenance import HEARTBEATS, MAINTENANCE, check_new

routes = web.RouteTableDef()
PATH = "/console/maintenance"
RECENT_S = 7 * 24 * 3600.0  # ended windows shown this long after their end
MAX_ENDED = 20  # and at most this many of them (the newest)
MAX_HELD_SHOWN = 50  # held alerts linked per window; the rest counted
MAX_SUMMARIES = 20  # held alerts shown with their summary (one read each), the page's first; the others by number

#: What the "End now" redirect may show (``?message=<code>``): fixed texts only.
MESSAGES = {
    "window_gone": "There is no such maintenance window added at run time (the YAML's cannot be ended here).",
    "window_over": "That maintenance window is over already: nothing changed.",
}
_ORDER = {"active": 0, "upcoming": 1, "ended": 2}


def _shown(windows: list[WindowState], now: float) -> list[WindowState]:
    """Active and upcoming windows, then those ended in the last ``RECENT_S`` (newest first, at most MAX_ENDED)."""
    on = [w for w in windows if w.state != "ended"]
    on.sort(key=lambda w: (_ORDER[w.state], w.start if w.start is not None else now))
    ended = [w for w in windows if w.state == "ended" and w.end is not None and w.end >= now - RECENT_S]
    ended.sort(key=lambda w: w.end or 0.0, reverse=True)
    return on + ended[:MAX_ENDED]


def duration(seconds: float) -> str:
    """A heartbeat's interval or grace, short enough for a phone's table: ``26h 5m``, ``30m``, ``45s``, ``0``."""
    left = max(0, int(seconds))
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts) or "0"


async def _context(request: web.Request) -> dict[str, Any]:
    service = request.app[MAINTENANCE]
    now = request.app[CLOCK].now()
    held = await service.held_alerts()
    windows = _shown(service.windows(now), now)
    first = list(dict.fromkeys(i for w in windows for i in held.get(w.key, [])[:MAX_HELD_SHOWN]))[:MAX_SUMMARIES]
    summaries = {i: alert.summary for i in first if (alert := await service.store.get_alert(i)) is not None}
    during = {w.name: [t.name for t in w.during] for w in request.app[CONFIG].maintenance}
    heartbeats = request.app[HEARTBEATS]
    beats = []
    for state in await heartbeats.states():  # a few, from the config: one look-up each for an open late alert
        late = await heartbeats.store.find_open_alert(dedup_key(state.heartbeat.name))
        beats.append(dict(state=state, late=late, every=duration(state.heartbeat.interval_s),
                          grace=duration(state.heartbeat.grace_s)))
    return dict(windows=windows, held=held, summaries=summaries, during=during, heartbeats=beats,
                max_held=MAX_HELD_SHOWN, actions=ACTIONS, message=MESSAGES.get(request.query.get("message", ""), ""),
                error="", typed=dict(matchers="", start="", end="", action=SUPPRESS, comment=""))


@routes.get(PATH)
@auth(Auth.SESSION)
async def maintenance_page(request: web.Request) -> web.Response:
    partial = request.headers.get("X-Console-Partial") == "1"
    return page(request, "maintenance_live.html" if partial else "maintenance.html", **await _context(request))


def _body(form: Any) -> dict[str, Any]:
    """The form as the API's JSON body: matchers one per line, times in UTC unless they carry an offset."""
    body: dict[str, Any] = {
        "matchers": [line.strip() for line in str(form.get("matchers", "")).splitlines() if line.strip()],
        "end": str(form.get("end", "")).strip(), "action": str(form.get("action", SUPPRESS)),
        "comment": str(form.get("comment", "")).strip(), "time_zone": "UTC"}
    if start := str(form.get("start", "")).strip():
        body["start"] = start
    return body


@routes.post(PATH)
@auth(Auth.SESSION, role=Role.RESPONDER)
async def add_window(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    service = request.app[MAINTENANCE]
    now = request.app[CLOCK].now()
    live = sum(1 for window in service.windows(now) if window.source == "api" and window.state != "ended")
    try:
        new = check_new(_body(form), now=now, created_by=request[sessions.SESSION].token.name, live=live)
    except ApiError as exc:
        context = await _context(request)
        context.update(error=exc.message,
                       typed={k: str(form.get(k, "")) for k in ("matchers", "start", "end", "action", "comment")})
        return page(request, "maintenance.html", http_status=exc.status, **context)
    added = await service.add(new, now=now)  # its windows read again: "maintenance" is published (console.hub)
    raise web.HTTPSeeOther(f"{PATH}#window-{added.id}")


@routes.post(PATH + "/{window_id}/end")
@auth(Auth.SESSION, role=Role.RESPONDER)
async def end_window(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["window_id"]
    service = request.app[MAINTENANCE]
    known = service.stored(int(raw)) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None
    if known is None:
        raise web.HTTPSeeOther(f"{PATH}?message=window_gone")
    ended = await service.end(known.id, by=request[sessions.SESSION].token.name, now=request.app[CLOCK].now())
    if ended is None:
        raise web.HTTPSeeOther(f"{PATH}?message=window_over")
    raise web.HTTPSeeOther(f"{PATH}#window-{known.id}")
