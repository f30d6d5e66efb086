"""Console sessions: an API token exchanged for a signed, expiring cookie.

The cookie carries the token's name, an expiry, a per-session CSRF value and a fingerprint of the token's
secret, signed with HMAC-SHA256. Signed rather than stored: every gateway on one PostgreSQL (and a restarted
one) checks it with no database round trip and no table to expire, because they share the key. The key is
``GATEWAY_CONSOLE_SECRET`` from the environment, else derived from the configured API tokens (which every
gateway of a deployment shares): then adding, changing or removing any token signs everyone out (with the
environment's secret, changing or removing a token ends only the sessions it opened). The role is
read from the config on every request, never from the cookie: lowering a token's role takes effect at once.
What a signed cookie cannot do is be revoked alone: signing out clears it in the browser, and a copy taken
before stays valid until it expires (``SESSION_S``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from gateway.config import ApiToken, Config

COOKIE = "gateway_console"
SESSION_S = 12 * 3600
SECRET_ENV = "GATEWAY_CONSOLE_SECRET"
SIGN_IN = "/console/sign-in"


@dataclass(frozen=True, kw_only=True)
class Session:
    token: ApiToken
    expires: float
    csrf: str


#: the session a console request was authenticated with
SESSION = web.RequestKey("console_session", Session)


def signing_key(config: Config) -> bytes:
    """The HMAC key: the environment's secret, else one derived from every API token."""
    configured = os.environ.get(SECRET_ENV, "")
    if configured:
        return hashlib.sha256(b"console-session\0" + configured.encode()).digest()
    material = "\0".join(sorted(f"{t.name}\0{t.token}" for t in config.api_tokens))
    return hashlib.sha256(b"console-session-from-tokens\0" + material.encode("utf-8", "surrogatepass")).digest()


def _fingerprint(config: Config, token: ApiToken) -> str:
    """Which secret the session was opened with: keyed, so the cookie's reader learns nothing of the token."""
    secret = token.token.encode("utf-8", "surrogatepass")
    return hmac.new(signing_key(config), b"fingerprint\0" + secret, hashlib.sha256).hexdigest()[:32]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(config: Config, token: ApiToken, *, now: float) -> tuple[str, Session]:
    """A new session for ``token``: the cookie value and what it says."""
    session = Session(token=token, expires=now + SESSION_S, csrf=secrets.token_urlsafe(24))
    body = json.dumps({"n": token.name, "e": session.expires, "c": session.csrf, "f": _fingerprint(config, token)},
                      separators=(",", ":")).encode()
    payload = _b64(body)
    signature = _b64(hmac.new(signing_key(config), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}", session


def read(config: Config, value: str, *, now: float) -> Session | None:
    """The session ``value`` (a cookie) stands for, or None: bad signature, expired, or its token gone."""
    payload, _, signature = value.partition(".")
    expected = _b64(hmac.new(signing_key(config), payload.encode("utf-8", "surrogatepass"), hashlib.sha256).digest())
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
        return None
    try:
        data: Any = json.loads(_unb64(payload))
        name, expires, csrf, fingerprint = str(data["n"]), float(data["e"]), str(data["c"]), str(data["f"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires <= now:
        return None
    for token in config.api_tokens:
        if token.name == name and hmac.compare_digest(_fingerprint(config, token), fingerprint):
            return Session(token=token, expires=expires, csrf=csrf)
    return None


def csrf_matches(session: Session, presented: str) -> bool:
    return hmac.compare_digest(session.csrf.encode(), presented.encode("utf-8", "surrogatepass"))


def set_cookie(response: web.StreamResponse, config: Config, value: str) -> None:
    response.set_cookie(COOKIE, value, max_age=SESSION_S, path="/console", httponly=True,
                        secure=config.public_url.startswith("https://"), samesite="Lax")


def clear_cookie(response: web.StreamResponse, config: Config) -> None:
    response.del_cookie(COOKIE, path="/console", secure=config.public_url.startswith("https://"),
                        samesite="Lax")


def sign_in_redirect(request: web.Request) -> web.HTTPSeeOther:
    wanted = request.path_qs if request.method == "GET" and request.path.startswith("/console") else "/console"
    return web.HTTPSeeOther(f"{SIGN_IN}?next={quote(wanted, safe='')}")
