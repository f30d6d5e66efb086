"""/api/v1/engineers/{engineer}/notification-rules: how an engineer is reached when a step pages them.

GET shows the rules in force and where they come from; PUT replaces them (a stored set replaces the YAML's);
DELETE goes back to the YAML's (or, without any, to each step's ``via``). A change takes effect for the next
step that pages the engineer, is kept in the store with the token's name and time (every change, as an
audit trail), and logged.

Role: responder, as for overrides. API tokens carry a role but no person, so "only your own rules" cannot
be told apart from "anyone's"; a responder may already change who is on call, which reaches people just as
much. Every change names the token that made it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from core.clock import iso
from gateway.config import Config, Engineer
from gateway.notification_rules import parse_rules
from gateway.rule_book import RuleBook
from gateway.web.auth import TOKEN_NAME, Auth, Role, auth
from gateway.web.errors import ApiError, invalid
from gateway.web.json_body import read_json
from gateway.web.keys import CLOCK, CONFIG, ROSTER

routes = web.RouteTableDef()

#: the rules in force (gateway.rule_book.RuleBook), set by the composition root
RULES = web.AppKey("notification_rules", RuleBook)


def _engineer(request: web.Request) -> str:
    """The engineer named in the path: configured, or a directory team's person (``corp:alice``)."""
    engineer = request.match_info["engineer"]
    if request.app[ROSTER].engineer(engineer) is None:
        raise ApiError(404, "not_found", f"no engineer {engineer!r}", {"engineer": engineer})
    return engineer


def rules_json(config: Config, book: RuleBook, engineer_id: str,
               engineer_by_id: Callable[[str], Engineer | None] | None = None) -> dict[str, Any]:
    engineer = (engineer_by_id or config.engineers.get)(engineer_id)
    if engineer is None:  # a directory person who has left their groups since: their stored rules stay on record
        engineer = Engineer(id=engineer_id, name=engineer_id, phones=())
    stored = book.stored(engineer_id)
    source = "api" if stored is not None else "config" if engineer.notification_rules else "steps"
    return {
        "engineer": {"id": engineer_id, "name": engineer.name},
        "source": source,
        "rules": [rule.as_json() for rule in book.rules_for(engineer_id)],
        "config_rules": [rule.as_json() for rule in engineer.notification_rules],
        "changed_by": stored.changed_by if stored is not None else None,
        "changed_at": iso(stored.changed_at) if stored is not None else None,
    }


@routes.get("/api/v1/engineers/{engineer}/notification-rules")
@auth(Auth.TOKEN, role=Role.VIEWER)
async def get_rules(request: web.Request) -> web.Response:
    engineer = _engineer(request)
    book, engineer_by_id = request.app[RULES], request.app[ROSTER].engineer
    return web.json_response(rules_json(request.app[CONFIG], book, engineer, engineer_by_id))


@routes.put("/api/v1/engineers/{engineer}/notification-rules")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def put_rules(request: web.Request) -> web.Response:
    engineer = _engineer(request)
    body = await read_json(request)
    if not isinstance(body, dict) or "rules" not in body:
        raise ApiError(422, "invalid_body", 'the body must be a JSON object like {"rules": [{"via": "sms", '
                       '"after": "0s"}, {"via": "call", "after": "1m"}]}')
    unknown = sorted(str(key) for key in body if key != "rules")
    if unknown:
        raise invalid(unknown[0], "unknown field (expected only rules)")
    rules, problems = parse_rules(body["rules"])
    if problems:
        where, message = problems[0]
        raise invalid(f"rules{where}", message, problems=[{"field": f"rules{w}", "message": m} for w, m in problems])
    book = request.app[RULES]
    await book.change(engineer, rules, by=request.get(TOKEN_NAME, "api"), now=request.app[CLOCK].now())
    return web.json_response(rules_json(request.app[CONFIG], book, engineer, request.app[ROSTER].engineer))


@routes.delete("/api/v1/engineers/{engineer}/notification-rules")
@auth(Auth.TOKEN, role=Role.RESPONDER)
async def delete_rules(request: web.Request) -> web.Response:
    engineer = _engineer(request)
    book = request.app[RULES]
    if book.stored(engineer) is None:
        raise ApiError(404, "not_found", f"{engineer} has no notification rules set at run time",
                       {"engineer": engineer})
    await book.change(engineer, None, by=request.get(TOKEN_NAME, "api"), now=request.app[CLOCK].now())
    return web.json_response(rules_json(request.app[CONFIG], book, engineer, request.app[ROSTER].engineer))
