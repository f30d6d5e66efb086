"""Shared intake path: route, make durable, answer. Unknown teams and routes are 422."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.escalation import IngestResult, UnknownTeam
from gateway.signals import AlertSignal, IntakeError
from gateway.web.errors import ApiError, invalid
from gateway.web.keys import ENGINE

Parser = Callable[[object], list[AlertSignal]]


def parse_or_422(parse: Parser, body: object) -> list[AlertSignal]:
    """The body's signals, or a 422 naming the field at fault."""
    try:
        return parse(body)
    except IntakeError as exc:
        raise invalid(exc.field, exc.message) from None


async def ingest_all(request: web.Request, signals: list[AlertSignal]) -> list[IngestResult]:
    """Check that every signal can be routed before storing any, then store each durably."""
    engine = request.app[ENGINE]
    for index, signal in enumerate(signals):
        if signal.action != "trigger":
            continue
        try:
            engine.route_for(signal)
        except UnknownTeam as exc:
            raise invalid("team", f"unknown team {exc.team!r}", team=exc.team) from None
        except LookupError:
            raise ApiError(422, "no_route", f"no route matches alert {index} and there is no default route",
                           {"labels": signal.labels}) from None
    return [await engine.ingest(signal) for signal in signals]
