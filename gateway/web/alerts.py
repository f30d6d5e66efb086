"""/api/v1/alerts: trigger, list, inspect, acknowledge, resolve, escalate."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.alerts import IngestResult
from gateway.intake import parse_generic
from gateway.web.auth import caller
from gateway.web.errors import ApiError, invalid
from gateway.web.intake import ingest_all, parse_or_422
from gateway.web.json_body import read_json, read_optional_json
from gateway.web.keys import ALERTS, STORE
from gateway.web.params import int_query, path_id
from gateway.web.serialize import alert_json, escalation_json, page_json, timeline_json

routes = web.RouteTableDef()

_STATUSES = ("triggered", "acknowledged", "resolved")


def result_json(result: IngestResult) -> dict[str, Any]:
    body: dict[str, Any] = {"action": result.signal.action, "dedup_key": result.dedup_key}
    if result.alert is None:
        body.update(id=None, status=None, message="no open alert with this dedup key")
    else:
        body.update(id=result.alert.id, status=result.alert.status)
        if result.signal.action == "trigger" and not result.created:
            body["message"] = "an alert with this dedup key is already open; nobody is paged again"
    return body


@routes.post("/api/v1/alerts")
async def post_alert(request: web.Request) -> web.Response:
    signals = parse_or_422(parse_generic, await read_json(request))
    results = await ingest_all(request, signals)
    result = results[0]
    if result.signal.action != "trigger" and result.alert is None:
        raise ApiError(404, "not_found", f"no open alert with dedup_key {result.signal.dedup_key!r}")
    return web.json_response(result_json(result), status=202 if result.created else 200)


@routes.get("/api/v1/alerts")
async def list_alerts(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise invalid("status", f"must be one of {', '.join(_STATUSES)}")
    limit = int_query(request, "limit", 100, 1, 1000) or 100
    before = int_query(request, "before_id", None, 1, None)
    alerts = await request.app[STORE].list_alerts(status=status, limit=limit, before_id=before)
    return web.json_response({"alerts": [alert_json(a) for a in alerts]})


def _alert_id(request: web.Request) -> int:
    return path_id(request, "alert_id", "alert")


@routes.get(r"/api/v1/alerts/{alert_id}")
async def get_alert(request: web.Request) -> web.Response:
    store = request.app[STORE]
    alert_id = _alert_id(request)
    alert = await store.get_alert(alert_id)
    if alert is None:
        raise ApiError(404, "not_found", f"no alert {alert_id}")
    body = alert_json(alert)
    body["escalation"] = escalation_json(await store.get_escalation(alert_id))
    body["pages"] = [page_json(p) for p in await store.pages_for(alert_id)]
    body["timeline"] = [timeline_json(t) for t in await store.timeline(alert_id)]
    return web.json_response(body)


async def _change(request: web.Request, action: str) -> web.Response:
    alert_id = _alert_id(request)
    body = await read_optional_json(request)
    by = body.get("by", f"api token {caller(request)}")
    if not isinstance(by, str) or not by.strip() or len(by) > 200:
        raise invalid("by", "must be a non-empty string of at most 200 characters")
    priority = body.get("priority")
    if priority is not None and (action != "escalate" or priority not in ("high",)):
        raise invalid("priority", "only 'high', and only when escalating: priority can be raised, not lowered")
    alert, changed = await request.app[ALERTS].command(alert_id, action, by=by, raise_to_high=priority == "high")
    return web.json_response({**alert_json(alert), "changed": changed})


@routes.post(r"/api/v1/alerts/{alert_id}/acknowledge")
async def acknowledge(request: web.Request) -> web.Response:
    return await _change(request, "acknowledge")


@routes.post(r"/api/v1/alerts/{alert_id}/resolve")
async def resolve(request: web.Request) -> web.Response:
    return await _change(request, "resolve")


@routes.post(r"/api/v1/alerts/{alert_id}/escalate")
async def escalate(request: web.Request) -> web.Response:
    return await _change(request, "escalate")
