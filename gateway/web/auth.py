"""Authentication, once for every route, before any handler runs or any body is parsed.

Each route declares how it is authenticated with :func:`auth` (the default is an API token as
``Authorization: Bearer``); :func:`auth_middleware` checks that before the handler is called, so no
handler can forget it and no unauthenticated request reaches a body parser (the one exception is
PagerDuty's ``/v2/enqueue``, whose routing key lives inside the JSON body: there the body is read under
the size limit and parsed by the one bounded parser, and the key is checked before anything else).
Secrets are compared in constant time, over every candidate, without an early exit.

Each API token carries a role (viewer < responder < admin). A route needs the role it declares with
``@auth(kind, role=Role.ADMIN)``; a route that declares none needs ``viewer`` to read (GET, HEAD) and
``responder`` for anything else (acknowledge, trigger, call, ingest from monitoring). A token whose role is
too low gets 403 ``{"error": "forbidden"}`` naming the role needed. A PagerDuty routing key (not a token)
counts as ``responder``: it can only send events.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from gateway.config import ApiToken, Config
from gateway.store import CalendarFeed
from gateway.web.errors import ApiError, pagerduty_error
from gateway.web.json_body import parsed_body
from gateway.web.keys import CONFIG, STORE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])


class Auth(enum.Enum):
    """How a route is authenticated."""

    TOKEN = "bearer token"
    CALENDAR_FEED = "calendar feed secret"  # GET /calendar/{secret}.ics: the URL's secret alone (revocable)
    TOKEN_OR_QUERY = "bearer token or ?token="  # Splunk's webhook action can set only a URL
    TOKEN_OR_ROUTING_KEY = "bearer token or routing_key"  # PagerDuty Events API v2
    PROVIDER = "provider signature"  # e.g. X-Twilio-Signature, checked by the provider's own routes
    NONE = "none"  # health, readiness, the API description
    SESSION = "console session cookie"  # the console's pages (gateway/console/gate.py)
    ACTION_LINK = "signed action link"  # /a/{token}: the token's signature, checked by its handler first


class Role(enum.Enum):
    """What a token may do; each role may do everything the roles below it may."""

    VIEWER = "viewer"  # read
    RESPONDER = "responder"  # acknowledge, resolve, escalate, trigger alerts and calls, overrides, sandbox phones
    ADMIN = "admin"  # calendar feeds and anything administrative

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.RESPONDER: 1, Role.ADMIN: 2}
_DECLARED = "__gateway_auth__"
_DECLARED_ROLE = "__gateway_role__"
_READING = frozenset({"GET", "HEAD", "OPTIONS"})

#: the name of the API token that authenticated the request (absent for routing-key and public routes)
TOKEN_NAME = web.RequestKey("gateway_token_name", str)
#: the role the request was authenticated with (absent for public and provider routes)
ROLE = web.RequestKey("gateway_role", Role)
#: the calendar feed whose secret URL authenticated the request (Auth.CALENDAR_FEED routes)
FEED = web.RequestKey("gateway_calendar_feed", CalendarFeed)


def auth(kind: Auth, *, role: Role | None = None) -> Callable[[H], H]:
    """Declare how the decorated handler is authenticated and, optionally, the role it needs
    (put it below ``@routes.get(...)``)."""

    def declare(handler: H) -> H:
        setattr(handler, _DECLARED, kind)
        if role is not None:
            setattr(handler, _DECLARED_ROLE, role)
        return handler

    return declare


def needs(role: Role) -> Callable[[H], H]:
    """Declare only the role the decorated handler needs (authenticated by an API token)."""

    def declare(handler: H) -> H:
        setattr(handler, _DECLARED_ROLE, role)
        return handler

    return declare


def declared_role(handler: Callable[..., Any], method: str) -> Role:
    """The role a route needs: its declared one, else viewer to read and responder to change anything."""
    role = getattr(handler, _DECLARED_ROLE, None)
    if isinstance(role, Role):
        return role
    return Role.VIEWER if method.upper() in _READING else Role.RESPONDER


def declared(handler: Callable[..., Any]) -> Auth:
    """The handler's declared kind; a route that declares nothing needs an API token."""
    kind = getattr(handler, _DECLARED, Auth.TOKEN)
    return kind if isinstance(kind, Auth) else Auth.TOKEN


def checked_by_provider(route: web.RouteDef) -> web.RouteDef:
    """A provider's webhook route: its handler checks the provider's own signature."""
    inner = route.handler

    @functools.wraps(inner)
    async def handler(request: web.Request) -> web.StreamResponse:
        return await inner(request)

    return web.RouteDef(route.method, route.path, auth(Auth.PROVIDER)(handler), route.kwargs)


def caller(request: web.Request) -> str:
    """The name of the API token the request was authenticated with."""
    return request[TOKEN_NAME]


def role_of(request: web.Request) -> Role | None:
    """The role the request was authenticated with (None on public and provider routes)."""
    return request.get(ROLE)


def _digest(secret: str) -> bytes:
    # Any str (a header decoded with surrogateescape, JSON with a lone surrogate) encodes with surrogatepass;
    # hashing first makes every comparison the same length, so not even the length leaks.
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def token_for(config: Config, presented: str) -> ApiToken | None:
    """The API token ``presented`` matches (constant-time, every token compared), or None."""
    digest = _digest(presented)
    found = None
    for token in config.api_tokens:
        if hmac.compare_digest(_digest(token.token), digest) and found is None:
            found = token
    return found


def token_name(config: Config, presented: str) -> str | None:
    """The name of the API token ``presented`` matches (constant-time, every token compared), or None."""
    token = token_for(config, presented)
    return token.name if token is not None else None


def token_role(token: ApiToken) -> Role:
    return Role(token.role)


def forbidden(needed: Role, held: Role) -> ApiError:
    """403 naming the role the route needs."""
    return ApiError(403, "forbidden", f"this needs the {needed.value!r} role; the token has {held.value!r}",
                    {"role_needed": needed.value, "role": held.value})


def routing_key_known(config: Config, presented: str) -> bool:
    """Whether ``presented`` is some route's routing_key (constant-time, every route compared)."""
    digest = _digest(presented)
    known = False
    for route in config.routes:
        if route.routing_key is not None:
            known = hmac.compare_digest(_digest(route.routing_key), digest) | known
    return known


def bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="oncall-gateway"'}


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the matched route's declared authentication before its handler runs."""
    match = request.match_info
    if match.http_exception is not None:  # no such route or method: 404/405 reach nothing
        return await handler(request)
    kind = declared(match.handler)
    if kind in (Auth.NONE, Auth.PROVIDER, Auth.ACTION_LINK):
        return await handler(request)
    if kind is Auth.SESSION:
        from gateway.console.gate import session_gate  # it imports this module

        return await session_gate(request, handler, declared_role(match.handler, request.method))
    config = request.app[CONFIG]
    if kind is Auth.CALENDAR_FEED:
        request[FEED] = await _calendar_feed(request)
        return await handler(request)
    presented = bearer(request)
    if not presented and kind is Auth.TOKEN_OR_QUERY:
        # The access log writes paths without their query, so a token in the URL is not logged.
        presented = request.query.get("token", "")
    token = token_for(config, presented) if presented else None
    needed = declared_role(match.handler, request.method)
    if token is not None:
        held = token_role(token)
        if not held.allows(needed) and kind is Auth.TOKEN_OR_ROUTING_KEY:  # PagerDuty's senders read its shape
            return _pagerduty_forbidden(needed, held)
        if not held.allows(needed):
            raise forbidden(needed, held)
        request[TOKEN_NAME], request[ROLE] = token.name, held
        return await handler(request)
    if kind is Auth.TOKEN_OR_ROUTING_KEY:
        refusal = await _routing_key_refusal(request, config, needed)
        if refusal is None:
            request[ROLE] = Role.RESPONDER
        return refusal if refusal is not None else await handler(request)
    if not presented:
        raise ApiError(401, "unauthorized", "missing API token: send 'Authorization: Bearer <token>'",
                       headers=_CHALLENGE)
    raise ApiError(401, "unauthorized", "invalid API token", headers=_CHALLENGE)


def secret_sha256(secret: str) -> str:
    """What the store keeps of a calendar feed's secret."""
    return _digest(secret).hex()


async def _calendar_feed(request: web.Request) -> CalendarFeed:
    """The live feed the path's secret names, or 404 (unknown and revoked look the same).

    The store is searched by the secret's SHA-256, never by the secret, so the lookup's timing says nothing
    about the secret (the hash of a guess tells nothing of a stored hash's preimage)."""
    secret = request.match_info.get("secret", "")
    digest = secret_sha256(secret)
    feed = await request.app[STORE].find_calendar_feed(digest) if secret else None
    if feed is None:
        raise ApiError(404, "not_found", "no such calendar feed (unknown or revoked)")
    return feed


async def _routing_key_refusal(request: web.Request, config: Config, needed: Role) -> web.Response | None:
    """None when the body's ``routing_key`` is an API token or a route's key; else PagerDuty's answer.

    A token must hold the ``needed`` role; a route's key counts as responder."""
    try:
        body = await parsed_body(request)
    except ApiError as exc:
        return pagerduty_error(400, "Event object is invalid", [exc.message])
    key = body.get("routing_key") if isinstance(body, dict) else None
    if isinstance(key, str) and key:
        token = token_for(config, key)
        is_route_key = routing_key_known(config, key)
        if token is not None and not token_role(token).allows(needed) and not is_route_key:
            return _pagerduty_forbidden(needed, token_role(token))
        if token is not None or is_route_key:
            return None
    return pagerduty_error(401, "missing or unknown routing_key or API token",
                           ["routing_key is not known to this gateway"], error="unauthorized")


def _pagerduty_forbidden(needed: Role, held: Role) -> web.Response:
    return pagerduty_error(403, f"this needs the {needed.value!r} role; the token has {held.value!r}",
                           ["the token may not send events"], error="forbidden")
