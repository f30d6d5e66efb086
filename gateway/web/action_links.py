"""The signed action links in emails and chat posts: ``GET /a/{token}`` asks, ``POST /a/{token}`` acts.

Mail scanners (Outlook Safe Links and the like) and chat link previews fetch every link they see, so a GET
never changes anything: it shows what the link would do, with one button that POSTs. The POST checks the
signature and expiry, that the alert is still open for that action, records the link's one use in the store
(only one of several gateways can) and then acknowledges or resolves in the name of the engineer the link
was sent to. Every refusal is a small HTML page with a 4xx: 403 (not a genuine link), 410 (expired or used
already), 409 (the alert is already closed), 404 (no such alert), 429 (too many invalid links from one address).
No API token is needed: the signed link is the credential.
"""

from __future__ import annotations

import collections
from typing import Any

from aiohttp import web

from core.enums import AlertStatus
from gateway.action_links import ActionLink, ActionLinks, LinkRefused
from gateway.messages import MessageTemplates
from gateway.store import Alert
from gateway.web.auth import Auth, auth
from gateway.web.keys import ALERTS, CLOCK, CONFIG, ROSTER, STORE

routes = web.RouteTableDef()

LINKS = web.AppKey("action_links", ActionLinks)
PAGES = web.AppKey("action_link_pages", MessageTemplates)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL: never pass it on
    "X-Robots-Tag": "noindex",
    # never framed (a page could otherwise lay its own bait over the confirm button): CSP for today's browsers,
    # X-Frame-Options for older ones
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}
_VERB = {"acknowledge": ("Acknowledge", "acknowledged"), "resolve": ("Resolve", "resolved")}


class RateLimiter:
    """At most ``limit`` links refused as not genuine per ``window_s`` from one client address; past that, every
    link from it is answered 429 until the window has passed (memory bounded). Genuine links are not counted:
    behind a reverse proxy every client has the proxy's address, and mail scanners fetch every link of every
    alert email, so counting them would lock everyone out during the very incident the links are for."""

    def __init__(self, *, limit: int = 30, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_clients = max_clients
        self._seen: dict[str, collections.deque[float]] = {}

    def blocked(self, client: str, now: float) -> bool:
        times = self._seen.get(client)
        if times is None:
            return False
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._seen[client]
            return False
        return len(times) >= self.limit

    def refused(self, client: str, now: float) -> None:
        """A link from ``client`` was not genuine (cut, changed or made up)."""
        times = self._seen.get(client)
        if times is None:
            if len(self._seen) >= self.max_clients:
                self._seen.clear()  # crude, but bounded: a flood of addresses forgets the rest
            times = self._seen[client] = collections.deque()
        times.append(now)


LIMITER = web.AppKey("action_link_limiter", RateLimiter)


def _page(request: web.Request, status: int, heading: str, text: str, **context: Any) -> web.Response:
    html = request.app[PAGES].page(heading=heading, text=text, alert=context.get("alert"),
                                   confirm=context.get("confirm"), button=context.get("button", ""),
                                   console_url=context.get("console_url"))
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8", headers=_HEADERS)


def _console_url(request: web.Request, alert: Alert) -> str:
    return f"{request.app[CONFIG].public_url.rstrip('/')}/console/alerts/{alert.id}"


def _closed_for(alert: Alert, action: str) -> bool:
    """Acknowledging needs a triggered alert; resolving an unresolved one."""
    return alert.status != AlertStatus.TRIGGERED if action == "acknowledge" else alert.status == AlertStatus.RESOLVED


async def _checked(request: web.Request, *, closed_too: bool = True) -> tuple[ActionLink, Alert] | web.Response:
    """The link and its alert, or the page saying why it cannot be used (nothing changed). ``closed_too``:
    refuse an alert already closed for the link's action."""
    now = request.app[CLOCK].now()
    client = request.remote or "unknown"
    limiter = request.app[LIMITER]
    if limiter.blocked(client, now):
        return _page(request, 429, "Too many tries", "Too many invalid links from your address. Wait a minute.")
    try:
        link = request.app[LINKS].read(request.match_info["token"], now=now)
    except LinkRefused as refused:
        if refused.status == 403:  # not genuine: someone may be guessing
            limiter.refused(client, now)
        heading = "Link expired" if refused.status == 410 else "Link not valid"
        return _page(request, refused.status, heading, refused.message)
    alert = await request.app[STORE].get_alert(link.alert_id)
    if alert is None:
        return _page(request, 404, "No such alert", f"Alert #{link.alert_id} does not exist (any more).")
    if closed_too and _closed_for(alert, link.action):
        return _already(request, alert)
    return link, alert


def _already(request: web.Request, alert: Alert) -> web.Response:
    return _page(request, 409, f"Already {alert.status}",
                 f"Alert #{alert.id} is already {alert.status}: nothing was changed.",
                 alert=alert, console_url=_console_url(request, alert))


@routes.get("/a/{token}")
@auth(Auth.ACTION_LINK)
async def confirm(request: web.Request) -> web.Response:
    """Show what the link does and ask to confirm; changes nothing (scanners fetch links)."""
    checked = await _checked(request)
    if isinstance(checked, web.Response):
        return checked
    link, alert = checked
    verb, _ = _VERB[link.action]
    return _page(request, 200, f"{verb} alert #{alert.id}?",
                 f"Press the button to {link.action} this alert as {_actor(request, link)}.",
                 alert=alert, confirm=True, button=verb, console_url=_console_url(request, alert))


@routes.post("/a/{token}")
@auth(Auth.ACTION_LINK)
async def act(request: web.Request) -> web.Response:
    """Use the link once: acknowledge or resolve in the name of whom it was sent to. A used link says so
    (410) even when its alert is closed by now."""
    checked = await _checked(request, closed_too=False)
    if isinstance(checked, web.Response):
        return checked
    link, alert = checked
    now = request.app[CLOCK].now()
    if not await request.app[STORE].use_action_link(link.nonce, alert_id=alert.id, action=link.action,
                                                    engineer=link.engineer, now=now):
        return _page(request, 410, "Link already used", "This link has been used already; each works once.",
                     alert=alert, console_url=_console_url(request, alert))
    if _closed_for(alert, link.action):
        return _already(request, alert)
    actor = _actor(request, link)
    chat = link.engineer.startswith("chat:")
    alerts = request.app[ALERTS]
    _, done = _VERB[link.action]
    change = alerts.acknowledge if link.action == "acknowledge" else alerts.resolve
    how = f"{done} by {link.engineer.removeprefix('chat:')} (chat link)" if chat else f"{done} by {actor} (email link)"
    updated, changed = await change(alert.id, by=link.engineer, how=how)
    if not changed:  # closed by someone else between the check and now
        return _already(request, updated)
    return _page(request, 200, f"Alert #{alert.id} {done}", f"Done: {done} as {actor}.", alert=updated,
                 console_url=_console_url(request, updated))


def _actor(request: web.Request, link: ActionLink) -> str:
    if link.engineer.startswith("chat:"):
        return f"{link.engineer.removeprefix('chat:')} (chat)"
    engineer = request.app[ROSTER].engineer(link.engineer)  # configured, or a directory person
    return engineer.name if engineer is not None else link.engineer
