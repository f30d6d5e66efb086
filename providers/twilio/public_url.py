"""Can Twilio reach ``server.public_url``? A pure check, for start-up warnings and ``check-config``.

Twilio calls the gateway from the internet, at the URL the gateway gives it
(``server.public_url``, which defaults to ``http://<server.host>:<server.port>``),
and signs each request over that exact URL. A loopback, private or link-local
address, or a name only a local network resolves, cannot be reached from
Twilio; plain ``http`` can be reached, but then every webhook crosses the
internet unencrypted. None of these stops the gateway: they are warnings.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

KEY = "server.public_url"
_LOCAL_SUFFIXES = (".local", ".localhost", ".internal", ".lan", ".home.arpa", ".localdomain")
_FIX = f"set {KEY} to the https:// URL where Twilio reaches the gateway (your reverse proxy or tunnel)"


def public_url_problems(url: str) -> list[str]:
    """What stops Twilio from reaching ``url`` safely, one sentence each; ``[]`` when nothing does."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in ("http", "https") or not host:
        return [f"{KEY} {url!r} is not an absolute http(s) URL: Twilio cannot call it; {_FIX}"]
    problems = []
    where = _unreachable(host)
    if where:
        problems.append(f"{KEY} {url} is {where}: Twilio, calling from the internet, cannot reach it "
                        f"(calls will not run, and SMS replies and status callbacks will not arrive); {_FIX}")
    if parts.scheme == "http":
        problems.append(f"{KEY} {url} uses plain http: every Twilio webhook (phone numbers, key presses, "
                        "recording links) and its signature would cross the internet unencrypted, and a "
                        "captured request could be replayed; Twilio recommends https for webhooks; "
                        f"{_FIX}")
    return problems


def _unreachable(host: str) -> str:
    """Why ``host`` cannot be reached from the internet, or ``""``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
            return f"a local name ({host})"
        if "." not in host:
            return f"a single-label name ({host}) that only a local network resolves"
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return f"a loopback address ({host})"
    if address.is_unspecified:
        return f"the unspecified address ({host}), which only means 'every interface' to a server"
    if address.is_link_local:
        return f"a link-local address ({host})"
    if address.is_private or address in _SHARED:
        return f"a private address ({host})"
    return ""


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598): not routable from outside
