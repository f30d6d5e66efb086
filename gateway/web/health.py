"""/healthz (the process answers) and /readyz (store and phone providers are usable)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway.web.auth import Auth, auth, bearer, token_for
from gateway.web.keys import CLUSTER, CONFIG, PROVIDERS, ROSTER, SCHEDULER, STORE

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
    if details := roster.details():
        body["directories"] = details if _token_holder(request) else [_public(detail) for detail in details]
    return web.json_response(body, status=200 if ready else 503)


def _token_holder(request: web.Request) -> bool:
    presented = bearer(request)
    return bool(presented) and token_for(request.app[CONFIG], presented) is not None


def _public(detail: dict[str, Any]) -> dict[str, Any]:
    """/readyz answers anyone: who in the directory cannot be paged is for API token holders (and the log)."""
    return {key: value for key, value in detail.items() if key not in ("unpageable", "ignored_numbers")}
