"""Settings of the message channels: email over SMTP, chat webhooks, and the signed action links in both.

Read and validated by ``gateway.config`` (the ``email:``, ``chat:`` and ``action_links:`` sections); secrets
come from the environment (``*_env`` keys).
"""

from __future__ import annotations

import email.errors
import re
from dataclasses import dataclass, field
from email.headerregistry import Address
from pathlib import Path

#: the kinds of chat destination: Slack incoming webhook, Teams workflow webhook, generic signed JSON
CHAT_KINDS = ("slack", "teams", "webhook")


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    host: str
    port: int
    sender: str  # the From header, e.g. "On-call <oncall@example.com>"
    starttls: bool = True  # upgrade a plain connection with STARTTLS (required: a server without it is refused)
    implicit_tls: bool = False  # TLS from the first byte (SMTPS, usually port 465)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None  # trust this CA bundle instead of the system's (an internal CA)
    timeout_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class ChatDestination:
    name: str  # the key under ``chat:``
    kind: str  # one of CHAT_KINDS
    url: str = field(repr=False)  # incoming webhook URLs are secrets
    secret: str | None = field(default=None, repr=False)  # the generic webhook's signing key
    timeout_s: float = 10.0


#: the action links' signing key, when action_links.secret_env names no other variable
LINK_SECRET_ENV = "GATEWAY_LINK_SECRET"
#: a shorter key could be guessed offline from any one link (whose payload and signature it shows)
MIN_LINK_SECRET_CHARS = 16


@dataclass(frozen=True, kw_only=True)
class ActionLinkSettings:
    secret: str | None = field(default=None, repr=False)  # None: derived from the API tokens
    # the key before the last rotation: links signed with it still work (until they expire), new ones use ``secret``
    previous_secret: str | None = field(default=None, repr=False)
    expires_after_s: int = 24 * 3600


#: one plain addr-spec (alice@example.com, o'brien@example.com): no display name, list separator, route, quoting
#: or line break
_ADDRESS = re.compile(r"[^@\s<>\",;:()\[\]\\]+@[^@\s<>\"',;:()\[\]\\]+\.[^@\s<>\"',;:()\[\]\\]+")


def is_address(text: str) -> bool:
    """Whether ``text`` is one plain email address, as the To header and RCPT TO carry it unchanged. Addresses
    come from the config and from directories (a Keycloak attribute its user may edit): one holding a comma
    would otherwise add recipients of its own."""
    if not _ADDRESS.fullmatch(text):
        return False
    try:
        return str(Address(addr_spec=text)) == text
    except (email.errors.HeaderParseError, ValueError, IndexError):
        return False
