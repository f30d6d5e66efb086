"""/api/v1/teams/{team}/overrides: the team's overrides (YAML and run time); add and remove run-time ones.

An override added here takes effect at once (no restart): for /api/v1/oncall, the escalations' next steps,
the hotline, calls to a team, calendar feeds and ``gateway oncall``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from core.clock import iso
from gateway.config import Config, Engineer, Override
from gateway.console.hub import HUB
from gateway.overrides import Schedule
from gateway.store import NewOverride, StoredOverride
from gateway.web.auth import TOKEN_NAME, Auth, Role, auth
from gateway.web.errors import ApiError, invalid
from gateway.web.json_body import read_json
from gateway.web.keys import CLOCK, CONFIG, ROSTER
from gateway.web.params import path_id

EngineerById = Callable[[str], Engineer | None]
routes = web.RouteTableDef()

#: the teams with every override in force (gateway.overrides.Schedule), set by the composition root
SCHEDULE = web.AppKey("schedule", Schedule)

MAX_LENGTH = timedelta(days=90)
MAX_LIVE = 500  # overrides per team not ended yet: each one costs every on-call answer and calendar fetch a bit
_ROLES = ("primary", "secondary")
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _team(request: web.Request) -> str:
    team = request.match_info["team"]
    if team not in request.app[CONFIG].teams:
        raise ApiError(404, "not_found", f"no team {team!r}", {"team": team})
    return team


def _engineer(config: Config, engineer_id: str, engineer_by_id: EngineerById | None = None) -> dict[str, Any]:
    engineer = (engineer_by_id or config.engineers.get)(engineer_id)
    return {"id": engineer_id, "name": engineer.name if engineer else engineer_id}


def config_override_json(config: Config, item: Override) -> dict[str, Any]:
    return {"source": "config", "role": item.role, "engineer": _engineer(config, item.engineer),
            "start": iso(item.start.timestamp()), "end": iso(item.end.timestamp())}


def stored_override_json(config: Config, item: StoredOverride,
                         engineer_by_id: EngineerById | None = None) -> dict[str, Any]:
    """``engineer_by_id`` also knows directory people (gateway.directory.roster.Roster.engineer)."""
    return {"source": "api", "id": item.id, "role": item.role,
            "engineer": _engineer(config, item.engineer, engineer_by_id),
            "start": iso(item.start), "end": iso(item.end), "created_by": item.created_by,
            "created_at": iso(item.created_at)}


def moment(value: Any, field: str) -> datetime:
    """An ISO 8601 time with a UTC offset, or 422 naming ``field``."""
    example = "e.g. 2026-12-24T09:00:00+01:00"
    if not isinstance(value, str):
        raise invalid(field, f"must be an ISO 8601 time with a UTC offset, {example}")
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise invalid(field, f"must be an ISO 8601 time with a UTC offset, {example}") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise invalid(field, f"must carry a UTC offset, {example}")
    if not _EARLIEST <= at <= _LATEST:
        raise invalid(field, "must be between 1970 and 9000")
    return at


def check_new(config: Config, schedule: Schedule, team_id: str, *, role: object, engineer: object,
              start: datetime, end: datetime, now: float, created_by: str) -> NewOverride:
    """The override to add, or ApiError: the rules the API and the console share (422, 409 over the limit)."""
    if role not in _ROLES:
        raise invalid("role", "must be 'primary' or 'secondary'")
    team_members = (schedule.team(team_id) or config.teams[team_id]).members  # a directory team's, as fetched
    if not isinstance(engineer, str) or engineer not in team_members:
        members = ", ".join(team_members)
        raise invalid("engineer", f"must be a member of team {team_id} ({members})", engineer=engineer)
    for field, at in (("start", start), ("end", end)):
        if at.tzinfo is None or not _EARLIEST <= at <= _LATEST:
            raise invalid(field, "must be between 1970 and 9000")
    if end <= start:
        raise invalid("end", "must be after start")
    if end - start > MAX_LENGTH:
        raise invalid("end", f"an override lasts at most {MAX_LENGTH.days} days")
    if end.timestamp() <= now:
        raise invalid("end", "is in the past: the override would never apply")
    live = sum(1 for item in schedule.stored(team_id) if item.end > now)
    if live >= MAX_LIVE:
        raise ApiError(409, "too_many_overrides", f"team {team_id} has {live} overrides not ended yet, the most "
                       f"allowed: remove some first", {"team": team_id, "limit": MAX_LIVE})
    return NewOverride(team=team_id, role=str(role), engineer=engineer, start=start.timestamp(),
                       end=end.timestamp(), created_by=created_by)


def _announce(request: web.Request, team_id: str) -> None:
    """Tell the console's open pages (if the console runs) that the team's on-call changed."""
    hub = request.app.get(HUB)
    if hub is not None:
        hub.publish("oncall", team=team_id)


@routes.get("/api/v1/teams/{team}/overrides")
@auth(Auth.TOKEN, role=Role.VIEWER)
async def list_overrides(request: web.Request) -> web.Response:
    config, team_id = request.app[CONFIG], _team(request)
    schedule = request.app[SCHEDULE]
    items = [config_override_json(config, item) for item in config.teams[team_id].overrides]
    items += [stored_override_json(config, item, request.app[ROSTER].engineer) for item in schedule.stored(team_id)]
    return web.json_response({"team": team_id, "overrides": items})


@routes.post("/api/v1/teams/{team}/overrides")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def add_override(request: web.Request) -> web.Response:
    config, team_id = request.app[CONFIG], _team(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object with role, engineer, start and end")
    now = request.app[CLOCK].now()
    new = check_new(config, request.app[SCHEDULE], team_id, role=body.get("role", "primary"),
                    engineer=body.get("engineer"), start=moment(body.get("start"), "start"),
                    end=moment(body.get("end"), "end"), now=now, created_by=request.get(TOKEN_NAME, "api"))
    added = await request.app[SCHEDULE].add(new, now=now)
    _announce(request, team_id)
    return web.json_response(stored_override_json(config, added, request.app[ROSTER].engineer), status=201)


@routes.delete("/api/v1/teams/{team}/overrides/{override_id}")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def delete_override(request: web.Request) -> web.Response:
    team_id = _team(request)
    override_id = path_id(request, "override_id", "override")
    deleted = await request.app[SCHEDULE].delete(override_id, team=team_id, by=request.get(TOKEN_NAME, "api"),
                                                 now=request.app[CLOCK].now())
    if deleted is not None:
        _announce(request, team_id)
    if deleted is None:
        raise ApiError(404, "not_found", f"team {team_id} has no override {override_id} added at run time",
                       {"team": team_id, "id": override_id})
    return web.json_response({**stored_override_json(request.app[CONFIG], deleted, request.app[ROSTER].engineer),
                              "deleted_by": deleted.deleted_by,
                              "deleted_at": iso(deleted.deleted_at) if deleted.deleted_at else None})
