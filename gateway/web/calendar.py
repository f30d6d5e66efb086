"""Calendar feeds: admins create, list and revoke secret URLs; calendar apps fetch ``/calendar/<secret>.ics``.

The secret is shown once, when the feed is created; the store keeps only its SHA-256. A fetch is
authenticated by the secret alone (``Auth.CALENDAR_FEED``: calendar apps send no headers), and an unknown
or revoked secret is 404.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from core.clock import iso, to_datetime
from gateway.calendar_feed import feed_stretches, ics
from gateway.store import CalendarFeed
from gateway.web.auth import FEED, TOKEN_NAME, Auth, Role, auth, secret_sha256
from gateway.web.errors import ApiError, invalid
from gateway.web.json_body import read_json
from gateway.web.keys import CLOCK, CONFIG, ROSTER, STORE
from gateway.web.overrides import SCHEDULE
from gateway.web.params import path_id

routes = web.RouteTableDef()


def feed_json(feed: CalendarFeed) -> dict[str, Any]:
    return {"id": feed.id, "team": feed.team, "engineer": feed.engineer, "created_by": feed.created_by,
            "created_at": iso(feed.created_at),
            "revoked_at": iso(feed.revoked_at) if feed.revoked_at is not None else None}


@routes.get("/api/v1/calendar-feeds")
@auth(Auth.TOKEN, role=Role.ADMIN)
async def list_feeds(request: web.Request) -> web.Response:
    feeds = await request.app[STORE].list_calendar_feeds()
    return web.json_response({"feeds": [feed_json(feed) for feed in feeds]})


@routes.post("/api/v1/calendar-feeds")
@auth(Auth.TOKEN, role=Role.ADMIN)
async def create_feed(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    body = await read_json(request)
    if not isinstance(body, dict) or ("team" in body) == ("engineer" in body):
        raise ApiError(422, "invalid_body", 'the body must be {"team": "<team>"} or {"engineer": "<engineer>"}')
    team, engineer = body.get("team"), body.get("engineer")
    if "team" in body and (not isinstance(team, str) or team not in config.teams):
        raise invalid("team", f"unknown team {team!r}", team=team)
    if "engineer" in body and (not isinstance(engineer, str) or engineer not in config.engineers):
        raise invalid("engineer", f"unknown engineer {engineer!r}", engineer=engineer)
    secret = secrets.token_urlsafe(32)
    feed = await request.app[STORE].add_calendar_feed(
        team=team, engineer=engineer, secret_sha256=secret_sha256(secret),
        created_by=request.get(TOKEN_NAME, "api"), now=request.app[CLOCK].now())
    url = f"{config.public_url.rstrip('/')}/calendar/{secret}.ics"
    return web.json_response({**feed_json(feed), "url": url,
                              "message": "the URL is shown only now: keep it; revoke the feed to stop it"},
                             status=201)


@routes.delete("/api/v1/calendar-feeds/{feed_id}")
@auth(Auth.TOKEN, role=Role.ADMIN)
async def revoke_feed(request: web.Request) -> web.Response:
    feed_id = path_id(request, "feed_id", "calendar feed")
    feed = await request.app[STORE].revoke_calendar_feed(feed_id, by=request.get(TOKEN_NAME, "api"),
                                                         now=request.app[CLOCK].now())
    if feed is None:
        raise ApiError(404, "not_found", f"no calendar feed {feed_id} (or it is revoked already)")
    return web.json_response({**feed_json(feed), "revoked_by": feed.revoked_by})


@routes.get(r"/calendar/{secret:[A-Za-z0-9_-]{1,100}}.ics")
@auth(Auth.CALENDAR_FEED)
async def calendar(request: web.Request) -> web.Response:
    config, feed = request.app[CONFIG], request[FEED]
    schedule = request.app[SCHEDULE]
    now = to_datetime(request.app[CLOCK].now())
    if feed.team is not None:
        team = schedule.team(feed.team)
        teams = [team] if team is not None else []
        name = f"On call: {feed.team}"
    else:
        teams = schedule.teams()
        engineer = config.engineers.get(feed.engineer or "")
        name = f"On call: {engineer.name if engineer else feed.engineer}"
    domain = urlsplit(config.public_url).hostname or "oncall-gateway"
    engineer_by_id = request.app[ROSTER].engineer  # a directory team's people too (their map is swapped, not changed)

    def build() -> bytes:  # pure, on frozen data: safe in a thread
        return ics(config, feed_stretches(teams, now, engineer=feed.engineer), name=name, now=now, domain=domain,
                   engineer_by_id=engineer_by_id)

    # Off the event loop: hundreds of events take a tenth of a second or more to build; paging goes on meanwhile.
    body = await asyncio.to_thread(build)
    return web.Response(body=body, content_type="text/calendar", charset="utf-8",
                        headers={"Cache-Control": "private, max-age=300"})
