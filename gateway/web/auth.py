"""Bearer tokens on every endpoint but health."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.config import Config
from gateway.web.errors import ApiError


def token_name(config: Config, presented: str) -> str | None:
    """The name of the API token ``presented`` matches (constant-time), or None."""
    found = None
    for token in config.api_tokens:
        if hmac.compare_digest(token.token.encode(), presented.encode()):
            found = token.name
    return found


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def require_token(request: web.Request, config: Config, *, allow_query: bool = False) -> str:
    """Return the caller's token name or answer 401.

    ``allow_query`` also takes ``?token=`` for senders that cannot set headers (Splunk's webhook
    action); the access log writes paths without their query, so the token is not logged.
    """
    presented = bearer(request) or (request.query.get("token", "") if allow_query else "")
    if not presented:
        raise ApiError(401, "unauthorized", "missing API token: send 'Authorization: Bearer <token>'")
    name = token_name(config, presented)
    if name is None:
        raise ApiError(401, "unauthorized", "invalid API token")
    return name
