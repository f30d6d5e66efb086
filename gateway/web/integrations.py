"""Intake endpoints for monitoring systems: Alertmanager, Grafana, PagerDuty Events API v2."""

from __future__ import annotations

from aiohttp import web

from gateway.intake import parse_alertmanager, parse_grafana, parse_pagerduty, parse_splunk
from gateway.signals import IntakeError
from gateway.web.alerts import result_json
from gateway.web.auth import bearer, require_token, token_name
from gateway.web.errors import ApiError, read_json
from gateway.web.intake import Parser, ingest_all, parse_or_422
from gateway.web.keys import CONFIG

routes = web.RouteTableDef()


async def _webhook(request: web.Request, parse: Parser, *, allow_query_token: bool = False) -> web.Response:
    require_token(request, request.app[CONFIG], allow_query=allow_query_token)
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
async def splunk(request: web.Request) -> web.Response:
    """Splunk's webhook alert action can set only a URL: the token may come as ``?token=``."""
    return await _webhook(request, parse_splunk, allow_query_token=True)


def _pd_error(status: int, message: str, errors: list[str], error: str = "invalid_event") -> web.Response:
    """PagerDuty's error shape (``status``/``message``/``errors``) plus our ``error``/``details``."""
    return web.json_response(
        {"status": "invalid event" if status == 400 else "unauthorized", "message": message, "errors": errors,
         "error": error, "details": {"errors": errors}},
        status=status,
    )


@routes.post("/v2/enqueue")
async def pagerduty_enqueue(request: web.Request) -> web.Response:
    """Compatible with PagerDuty's Events API v2: 202 on success, 400 for an invalid event.

    Authorized by a bearer token, or by a routing_key that is an API token or a
    route's routing key (PagerDuty clients can only send the routing key).
    """
    config = request.app[CONFIG]
    try:
        body = await read_json(request)
    except ApiError as exc:
        return _pd_error(400, "Event object is invalid", [exc.message])
    routing_key = body.get("routing_key") if isinstance(body, dict) else None
    authorized = bool(token_name(config, bearer(request))) if bearer(request) else False
    if not authorized and isinstance(routing_key, str) and routing_key:
        authorized = token_name(config, routing_key) is not None or any(
            r.routing_key is not None and r.routing_key == routing_key for r in config.routes
        )
    if not authorized:
        return _pd_error(401, "missing or unknown routing_key or API token",
                         ["routing_key is not known to this gateway"], error="unauthorized")
    try:
        signals = parse_pagerduty(body)
    except IntakeError as exc:
        return _pd_error(400, "Event object is invalid", [f"{exc.field}: {exc.message}"])
    try:
        results = await ingest_all(request, signals)
    except ApiError as exc:
        return _pd_error(400, "Event object is invalid", [exc.message])
    result = results[0]
    return web.json_response({"status": "success", "message": "Event processed", "dedup_key": result.dedup_key,
                              "id": result.alert.id if result.alert else None}, status=202)

