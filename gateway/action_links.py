"""Signed one-time action links: acknowledge or resolve an alert from an email or a chat message.

A link is ``{public_url}/a/{token}``; the token carries the alert, the action, who acts (an engineer id, or
``chat:<destination>`` for a chat post) and an expiry, signed with HMAC-SHA256. Signed rather than stored, so
issuing a link writes nothing; its one use is recorded in the store (``Store.use_action_link``), whose
primary key lets only one of several gateways on one PostgreSQL accept it. The key is the environment
variable named by ``action_links.secret_env``, else ``GATEWAY_LINK_SECRET``, else derived from the API tokens
(which every gateway of a deployment shares; changing a token then voids the links sent before). After a
rotation, ``action_links.previous_secret_env`` keeps the links signed with the old key working until they expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from gateway.config import Config

ACTIONS = ("acknowledge", "resolve")
#: a token longer than this is refused before any work (real ones are about 200 characters)
MAX_TOKEN_CHARS = 1024


@dataclass(frozen=True, kw_only=True)
class ActionLink:
    alert_id: int
    action: str  # "acknowledge" | "resolve"
    engineer: str  # who acts: an engineer id, or "chat:<destination>"
    expires: float
    nonce: str  # what makes each link one of a kind (its use is recorded under it)


class LinkRefused(Exception):
    """A token that cannot be used: ``status`` 403 (not ours: tampered, malformed) or 410 (expired)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def signing_key(config: Config) -> bytes:
    """The key new links are signed with (the config holds ``GATEWAY_LINK_SECRET`` when it is set)."""
    if config.action_links.secret:
        return _key(config.action_links.secret)
    material = "\0".join(sorted(f"{t.name}\0{t.token}" for t in config.api_tokens))
    return hashlib.sha256(b"action-link-from-tokens\0" + material.encode("utf-8", "surrogatepass")).digest()


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"action-link\0" + secret.encode("utf-8", "surrogatepass")).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ActionLinks:
    """Issues and reads action links for one deployment's key and public URL."""

    def __init__(self, config: Config) -> None:
        self._key = signing_key(config)
        # what a link may be signed with: the key, and the one before it while its links may still be out
        previous = config.action_links.previous_secret
        self._keys = (self._key, *((_key(previous),) if previous else ()))
        self._base = config.public_url.rstrip("/")
        self.expires_after_s = config.action_links.expires_after_s

    def issue(self, *, alert_id: int, action: str, engineer: str, now: float) -> str:
        """A new token (each call a different one)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        body = {"a": alert_id, "x": action, "e": engineer, "t": int(now + self.expires_after_s),
                "n": secrets.token_urlsafe(12)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def url(self, token: str) -> str:
        return f"{self._base}/a/{token}"

    def link(self, *, alert_id: int, action: str, engineer: str, now: float) -> str:
        return self.url(self.issue(alert_id=alert_id, action=action, engineer=engineer, now=now))

    def read(self, token: str, *, now: float) -> ActionLink:
        """What a genuine, unexpired token says; LinkRefused otherwise. The signature is checked first, in
        constant time, and nothing of an unsigned payload is looked at."""
        tampered = LinkRefused(403, "invalid_link", "This link is not valid: it may have been cut or changed.")
        if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise tampered
        payload, signature = token.split(".")
        presented = signature.encode("utf-8", "surrogatepass")
        if not any([hmac.compare_digest(self._sign(payload, key).encode(), presented) for key in self._keys]):
            raise tampered  # (a list, not a generator: every key is tried, whichever matches)
        try:
            body = json.loads(_unb64(payload))
            link = ActionLink(alert_id=int(body["a"]), action=str(body["x"]), engineer=str(body["e"]),
                              expires=float(body["t"]), nonce=str(body["n"]))
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise tampered from None
        if link.action not in ACTIONS:
            raise tampered
        if now >= link.expires:
            raise LinkRefused(410, "link_expired", "This link has expired. Open the alert in the console instead.")
        return link

    def _sign(self, payload: str, key: bytes | None = None) -> str:
        return _b64(hmac.new(key or self._key, payload.encode(), hashlib.sha256).digest())
