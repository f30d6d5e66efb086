"""Intake endpoints for monitoring systems: Alertmanager, Grafana, Splunk, New Relic, PagerDuty Events API v2."""

from __future__ import annotations

from aiohttp import web

from gateway.intake import parse_alertmanager, parse_grafana, parse_pagerduty, parse_splunk
from gateway.intake_newrelic import parse_newrelic
from gateway.signals import IntakeError
from gateway.web.alerts import result_json
from gateway.web.auth import Auth, auth
from gateway.web.errors import ApiError, pagerduty_error
from gateway.web.intake import Parser, ingest_all, parse_or_422
from gateway.web.json_body import read_json

routes = web.RouteTableDef()


async def _webhook(request: web.Request, parse: Parser) -> web.Response:
    results = await ingest_all(request, parse_or_422(parse, await read_json(request)))
    created = any(r.created for r in results)
    return web.json_response({"alerts": [result_json(r) for r in results]}, status=202 if created else 200)


@routes.post("/api/v1/integrations/alertmanager")
async def alertmanager(request: web.Request) -> web.Response:
    return await _webhook(request, parse_alertmanager)


@routes.post("/api/v1/integrations/grafana")
async def grafana(request: web.Request) -> web.Response:
    return await _webhook(request, parse_grafana)


@routes.post("/api/v1/integrations/splunk")
@auth(Auth.TOKEN_OR_QUERY)
async def splunk(request: web.Request) -> web.Response:
    """Splunk's webhook alert action can set only a URL: the token may come as ``?token=``."""
    return await _webhook(request, parse_splunk)


@routes.post("/v2/enqueue")
@auth(Auth.TOKEN_OR_ROUTING_KEY)
async def pagerduty_enqueue(request: web.Request) -> web.Response:
    """Compatible with PagerDuty's Events API v2: 202 on success, 400 for an invalid event.

    Authorized (by the auth middleware, before this runs) by a bearer token, or by a routing_key that is
    an API token or a route's routing key (PagerDuty clients can only send the routing key).
    """
    try:
        signals = parse_pagerduty(await read_json(request))
    except ApiError as exc:
        return pagerduty_error(400, "Event object is invalid", [exc.message])
    except IntakeError as exc:
        return pagerduty_error(400, "Event object is invalid", [f"{exc.field}: {exc.message}"])
    try:
        results = await ingest_all(request, signals)
    except ApiError as exc:
        return pagerduty_error(400, "Event object is invalid", [exc.message])
    result = results[0]
    return web.json_response({"status": "success", "message": "Event processed", "dedup_key": result.dedup_key,
                              "id": result.alert.id if result.alert else None}, status=202)


@routes.post("/api/v1/integrations/newrelic")
async def newrelic(request: web.Request) -> web.Response:
    """A New Relic workflow's webhook: the issue id is the dedup key (see gateway/intake_newrelic.py)."""
    return await _webhook(request, parse_newrelic)
