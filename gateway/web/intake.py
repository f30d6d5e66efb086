"""Shared intake path: route, make durable, answer. Unknown teams and routes are 422."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.alerts import IngestResult
from gateway.signals import AlertSignal, IntakeError
from gateway.web.errors import invalid
from gateway.web.keys import ALERTS

Parser = Callable[[object], list[AlertSignal]]


def parse_or_422(parse: Parser, body: object) -> list[AlertSignal]:
    """The body's signals, or a 422 naming the field at fault."""
    try:
        return parse(body)
    except IntakeError as exc:
        raise invalid(exc.field, exc.message) from None


async def ingest_all(request: web.Request, signals: list[AlertSignal]) -> list[IngestResult]:
    """Route every signal before storing any (an unroutable one is a 422), then store each durably."""
    return await request.app[ALERTS].ingest_all(signals)
