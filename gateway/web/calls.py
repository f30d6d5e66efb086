"""/api/v1/calls and /api/v1/sms: a monitoring system pages a team's on-call engineer or a number."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from core.clock import to_datetime
from core.phone import InvalidNumber, normalize
from gateway.oncall import who_is_on_call
from gateway.web.auth import caller
from gateway.web.errors import ApiError, invalid
from gateway.web.json_body import read_json
from gateway.web.keys import ALERTS, CLOCK, CONFIG, ROSTER
from gateway.web.overrides import SCHEDULE
from gateway.web.serialize import alert_json, page_json

routes = web.RouteTableDef()

_MAX_TEXT = {"call": 1000, "sms": 1600}


async def _direct(request: web.Request, channel: str) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise invalid("$", "expected a JSON object")
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        raise invalid("message", "required: the text to speak or send")
    if len(message) > _MAX_TEXT[channel]:
        raise invalid("message", f"at most {_MAX_TEXT[channel]} characters")
    priority = body.get("priority", "high" if channel == "call" else "low")
    if priority not in ("high", "low"):
        raise invalid("priority", "must be 'high' or 'low'")
    to, team = body.get("to"), body.get("team")
    if (to is None) == (team is None):
        raise invalid("to", "give exactly one of 'to' (a phone number) or 'team'")
    alert, pages = await request.app[ALERTS].send_direct(
        message=message.strip(), channel=channel, priority=priority, team=team,
        targets=_targets(request, to, team), requested_by=caller(request),
    )
    return web.json_response({"alert": alert_json(alert), "pages": [page_json(p) for p in pages]}, status=202)

def _targets(request: web.Request, to: Any, team: Any) -> list[tuple[str | None, str]]:
    config = request.app[CONFIG]
    if to is not None:
        if not isinstance(to, str):
            raise invalid("to", "must be a phone number as a string")
        try:
            number = normalize(to, config.default_region)
        except InvalidNumber as exc:
            raise invalid("to", f"{exc.number!r} is not a phone number ({exc.reason})", number=exc.number,
                          reason=exc.reason) from None
        engineer = request.app[ROSTER].by_number(number)
        return [(engineer.id if engineer else None, number)]
    if not isinstance(team, str) or team not in config.teams:
        raise invalid("team", f"unknown team {team!r}", team=team)
    oncall = who_is_on_call(request.app[SCHEDULE].team(team) or config.teams[team],
                            to_datetime(request.app[CLOCK].now()))
    engineer = request.app[ROSTER].engineer(oncall.primary) if oncall.primary is not None else None
    if engineer is None:  # nobody, or (not expected: the schedule drops them) an engineer the config lacks
        raise ApiError(409, "nobody_on_call", f"nobody is on call for team {team}")
    return [(engineer.id, engineer.phones[0])]


@routes.post("/api/v1/calls")
async def post_call(request: web.Request) -> web.Response:
    return await _direct(request, "call")


@routes.post("/api/v1/sms")
async def post_sms(request: web.Request) -> web.Response:
    return await _direct(request, "sms")

