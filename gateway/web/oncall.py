"""/api/v1/oncall: per team, who is primary and secondary, and until when (and, for a layered team, from which
layer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from core.clock import iso, to_datetime
from core.phone import mask
from gateway.config import Engineer
from gateway.directory.roster import Roster
from gateway.layers import active_layer
from gateway.oncall import who_is_on_call
from gateway.web.errors import invalid
from gateway.web.keys import CLOCK, CONFIG, ROSTER
from gateway.web.overrides import SCHEDULE

routes = web.RouteTableDef()

_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _person(roster: Roster, engineer_id: str | None) -> dict[str, Any] | None:
    if engineer_id is None:
        return None
    engineer: Engineer | None = roster.engineer(engineer_id)  # configured, or a directory team's person
    if engineer is None:  # not expected (the schedule drops overrides of former members): named, not a 500
        return {"id": engineer_id, "name": engineer_id, "phone": None}
    return {"id": engineer.id, "name": engineer.name, "phone": mask(engineer.phones[0])}


@routes.get("/api/v1/oncall")
async def get_oncall(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    at = to_datetime(request.app[CLOCK].now())
    if "at" in request.query:
        try:
            at = datetime.fromisoformat(request.query["at"].replace("Z", "+00:00"))
        except ValueError:
            raise invalid("at", "must be an ISO 8601 time, e.g. 2026-11-25T09:00:00Z") from None
        if at.tzinfo is None:
            raise invalid("at", "must carry a UTC offset, e.g. 2026-11-25T09:00:00Z")
        if not _EARLIEST <= at <= _LATEST:  # near year 1 or 9999 the rotation's arithmetic overflows
            raise invalid("at", "must be between 1970 and 9000")
    wanted = request.query.get("team")
    if wanted is not None and wanted not in config.teams:
        raise invalid("team", f"unknown team {wanted!r}", team=wanted)
    teams = []
    for team in request.app[SCHEDULE].teams():  # with the overrides added at run time
        if wanted is not None and team.id != wanted:
            continue
        oncall = who_is_on_call(team, at)
        teams.append({
            "team": team.id,
            "primary": _person(request.app[ROSTER], oncall.primary),
            "secondary": _person(request.app[ROSTER], oncall.secondary),
            "until": iso(oncall.until.timestamp()) if oncall.until else None,
            "layer": layer.name if (layer := active_layer(team, at)) is not None else None,
        })
    return web.json_response({"at": iso(at.timestamp()), "teams": teams})
