"""/api/v1/maintenance (windows: list, add, end early) and /api/v1/heartbeats (list, check in).

Roles: listing needs viewer; adding or ending a window, and checking in, need responder (the role that may
trigger and acknowledge alerts: a window only holds pages back, and a held alert still pages when it ends).
A window is ended early with ``POST /api/v1/maintenance/{id}/end``: it is not deleted, its record (who
added it, who ended it, when) stays. Windows from the YAML are listed but cannot be ended here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from core.clock import iso
from gateway.config import unlabelled_problem
from gateway.heartbeats import Heartbeats, HeartbeatState
from gateway.maintenance import ACTIONS, SUPPRESS, Maintenance, WindowState
from gateway.routing import parse_matcher
from gateway.store import NewMaintenance
from gateway.web.auth import TOKEN_NAME, Auth, Role, auth
from gateway.web.errors import ApiError, invalid
from gateway.web.json_body import read_json
from gateway.web.keys import CLOCK
from gateway.web.params import path_id

routes = web.RouteTableDef()

MAINTENANCE = web.AppKey("maintenance", Maintenance)
HEARTBEATS = web.AppKey("heartbeats", Heartbeats)

MAX_LENGTH = timedelta(days=90)
MAX_MATCHERS = 20
MAX_TEXT = 1024
MAX_LIVE = 500  # run-time windows not ended yet: each one costs every arriving alert a little
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_EXAMPLE = "e.g. 2026-12-24T22:00:00+01:00"


def window_json(window: WindowState, held: list[int] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": window.stored.id if window.stored is not None else None, "name": window.name, "source": window.source,
        "matchers": list(window.matcher_texts), "action": window.action, "comment": window.comment,
        "state": window.state, "recurring": window.recurring, "start": iso(window.start), "end": iso(window.end),
        "held_alerts": held or [],
    }
    if window.stored is not None:
        found.update(created_by=window.stored.created_by, created_at=iso(window.stored.created_at),
                     ended_by=window.stored.ended_by, ended_at=iso(window.stored.ended_at))
    return found


def _moment(value: object, field: str, zone: ZoneInfo | None) -> datetime:
    """An ISO 8601 time: with a UTC offset, or read in ``time_zone`` when one is given; else 422."""
    if not isinstance(value, str):
        raise invalid(field, f"must be an ISO 8601 time, {_EXAMPLE}")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, f"must be an ISO 8601 time, {_EXAMPLE}") from None
    if at.tzinfo is None or at.utcoffset() is None:
        if zone is None:
            raise invalid(field, f"must carry a UTC offset (or give time_zone), {_EXAMPLE}")
        at = at.replace(tzinfo=zone)
    try:
        inside = _EARLIEST <= at <= _LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise invalid(field, "must be between 1970 and 9000")
    return at


def _zone(value: object) -> ZoneInfo | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 64:
        raise invalid("time_zone", "must be an IANA time zone name like Europe/Amsterdam")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise invalid("time_zone", f"unknown time zone {value!r} (an IANA name like Europe/Amsterdam)") from None


def _matchers(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise invalid("matchers", 'must be a non-empty list of matchers like "service=\\"db\\""')
    if len(value) > MAX_MATCHERS:
        raise invalid("matchers", f"at most {MAX_MATCHERS} matchers")
    parsed = []
    for index, text in enumerate(value):
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise invalid(f"matchers[{index}]", f"must be a matcher text of at most {MAX_TEXT} characters")
        try:
            parsed.append(parse_matcher(text))
        except ValueError as exc:
            raise invalid(f"matchers[{index}]", str(exc)) from None
    if problem := unlabelled_problem(tuple(parsed)):
        raise invalid("matchers", problem)
    return tuple(value)


def check_new(body: dict[str, Any], *, now: float, created_by: str, live: int) -> NewMaintenance:
    """The window to add, or ApiError (422 naming the field; 409 over the limit)."""
    matchers = _matchers(body.get("matchers"))
    zone = _zone(body.get("time_zone"))
    start = _moment(body["start"], "start", zone).timestamp() if body.get("start") is not None else now
    end = _moment(body.get("end"), "end", zone).timestamp()
    action = body.get("action", SUPPRESS)
    if action not in ACTIONS:
        raise invalid("action", f"must be one of {', '.join(ACTIONS)}")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_TEXT:
        raise invalid("comment", f"must be text of at most {MAX_TEXT} characters")
    if end <= start:
        raise invalid("end", "must be after start")
    if end - start > MAX_LENGTH.total_seconds():
        raise invalid("end", f"a maintenance window lasts at most {MAX_LENGTH.days} days")
    if end <= now:
        raise invalid("end", "is in the past: the window would never apply")
    if live >= MAX_LIVE:
        raise ApiError(409, "too_many_windows", f"{live} maintenance windows are not over yet, the most allowed: "
                       "end some first", {"limit": MAX_LIVE})
    return NewMaintenance(matchers=matchers, start=start, end=end, action=str(action), comment=comment,
                          created_by=created_by)


@routes.get("/api/v1/maintenance")
@auth(Auth.TOKEN, role=Role.VIEWER)
async def list_windows(request: web.Request) -> web.Response:
    service = request.app[MAINTENANCE]
    now = request.app[CLOCK].now()
    held = await service.held_alerts()
    windows = service.windows(now)
    return web.json_response({"windows": [window_json(window, held.get(window.key)) for window in windows]})


@routes.post("/api/v1/maintenance")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def add_window(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object with matchers, end and optionally "
                       "start, time_zone, action, comment")
    service = request.app[MAINTENANCE]
    now = request.app[CLOCK].now()
    live = sum(1 for window in service.windows(now) if window.source == "api" and window.state != "ended")
    new = check_new(body, now=now, created_by=request.get(TOKEN_NAME, "api"), live=live)
    added = await service.add(new, now=now)
    state = next(window for window in service.windows(now) if window.stored and window.stored.id == added.id)
    return web.json_response(window_json(state), status=201)


@routes.post("/api/v1/maintenance/{window_id}/end")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def end_window(request: web.Request) -> web.Response:
    window_id = path_id(request, "window_id", "maintenance window")
    service = request.app[MAINTENANCE]
    now = request.app[CLOCK].now()
    known = service.stored(window_id) or next(
        (item for item in await service.store.list_maintenance() if item.id == window_id), None)
    if known is None:
        raise ApiError(404, "not_found", f"no maintenance window {window_id} added at run time", {"id": window_id})
    ended = await service.end(window_id, by=request.get(TOKEN_NAME, "api"), now=now)
    if ended is None:
        raise ApiError(409, "conflict", f"maintenance window {window_id} is over already", {"id": window_id})
    state = next(window for window in service.windows(now) if window.stored and window.stored.id == window_id)
    return web.json_response(window_json(state))


def heartbeat_json(state: HeartbeatState) -> dict[str, Any]:
    heartbeat = state.heartbeat
    return {"name": heartbeat.name, "state": state.state, "last_check_in": iso(state.last_seen),
            "deadline": iso(state.deadline), "interval_s": heartbeat.interval_s, "grace_s": heartbeat.grace_s,
            "labels": heartbeat.labels, "team": heartbeat.team}


@routes.get("/api/v1/heartbeats")
@auth(Auth.TOKEN, role=Role.VIEWER)
async def list_heartbeats(request: web.Request) -> web.Response:
    states = await request.app[HEARTBEATS].states()
    return web.json_response({"heartbeats": [heartbeat_json(state) for state in states]})


@routes.post("/api/v1/heartbeats/{name}")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def check_in(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    service = request.app[HEARTBEATS]
    if name not in service.config.heartbeats:
        raise ApiError(404, "not_found", f"no heartbeat {name!r}", {"name": name})
    await service.check_in(name, by=request.get(TOKEN_NAME, "api"))
    state = next(item for item in await service.states() if item.heartbeat.name == name)
    return web.json_response(heartbeat_json(state))
