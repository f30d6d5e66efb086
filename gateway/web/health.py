"""/healthz (the process answers) and /readyz (store and phone providers are usable)."""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.web.auth import Auth, auth
from gateway.web.keys import CLUSTER, PROVIDERS, ROSTER, SCHEDULER, STORE

routes = web.RouteTableDef()
log = logging.getLogger(__name__)


@routes.get("/healthz")
@auth(Auth.NONE)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
@auth(Auth.NONE)
async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await request.app[STORE].ping()
        checks["store"] = "ok"
    except Exception as exc:
        log.warning("readiness: store not usable: %s", exc)
        checks["store"] = f"error: {exc}"
    checks["scheduler"] = "ok" if request.app[SCHEDULER].running else "stopped"
    problem = request.app[CLUSTER].problem
    checks["cluster"] = "ok" if problem is None else f"error: {problem}"
    checks.update(request.app[PROVIDERS].readiness())
    roster = request.app[ROSTER]
    checks.update(roster.checks())  # a directory group never fetched; a last-known copy in use is a detail
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": checks}
    if roster.details():
        body["directories"] = roster.details()
    return web.json_response(body, status=200 if ready else 503)
