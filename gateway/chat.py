"""Chat webhooks: an alert posted to Slack, Microsoft Teams or any HTTP receiver, with its action links.

- Slack incoming webhooks take Slack's own message format: ``text`` (the notification and fallback) and Block
  Kit ``blocks``, with link buttons to the signed acknowledge and resolve links. Slack answers ``200 ok``.
- Teams workflow webhooks (Power Automate, "When a Teams webhook request is received") take a message with
  one Adaptive Card attachment; its ``Action.OpenUrl`` buttons open the links. They answer ``202``. The alert's
  text goes into TextRuns, where Teams renders no markdown (no link can be slipped in).
- A generic webhook gets the alert as JSON, signed: ``X-Gateway-Signature: t=<unix time>,v1=<hex>`` where
  ``<hex>`` is HMAC-SHA256 with the shared secret over ``"<t>." + body`` (the exact bytes sent).

A post that fails comes back as ``ChatError``: transient (a timeout, a 5xx, a 429 with its Retry-After) or
permanent (any other 4xx: the same post would fail again).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp

from gateway.message_settings import ChatDestination
from gateway.messages import AlertMessage

SIGNATURE_HEADER = "X-Gateway-Signature"
#: a Retry-After longer than this is not waited for (the post counts as failed)
MAX_RETRY_AFTER_S = 300.0


class ChatError(Exception):
    def __init__(self, message: str, *, transient: bool, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after_s = retry_after_s


def _facts(message: AlertMessage) -> list[tuple[str, str]]:
    alert = message.alert
    facts = [("Priority", str(alert.priority)), ("Team", alert.team or "-"), ("Status", str(alert.status)),
             ("Source", alert.source)]
    facts += [(key, value) for key, value in sorted(alert.labels.items())][:10]
    return facts


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) as its documented escapes."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: AlertMessage) -> dict[str, Any]:
    alert = message.alert
    urgent = ":rotating_light: " if alert.priority == "high" else ""
    title = f"{urgent}Alert #{alert.id}: {_slack_escape(message.title)}"
    fields = [{"type": "mrkdwn", "text": f"*{_slack_escape(k)}*\n{_slack_escape(v)}"[:2000]}
              for k, v in _facts(message)]
    return {
        # escaped too: Slack reads the notification text as mrkdwn, where <!channel> would ping a whole channel
        "text": _slack_escape(f"Alert #{alert.id} ({alert.priority}, team {alert.team or '-'}): "
                              f"{message.title}")[:3000],
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": title[:3000]}},
            {"type": "section", "fields": fields[:10]},
            {"type": "actions", "block_id": f"alert-{alert.id}", "elements": [
                {"type": "button", "action_id": "acknowledge", "style": "primary",
                 "text": {"type": "plain_text", "text": "Acknowledge"}, "url": message.acknowledge_url},
                {"type": "button", "action_id": "resolve",
                 "text": {"type": "plain_text", "text": "Resolve"}, "url": message.resolve_url},
                {"type": "button", "action_id": "open",
                 "text": {"type": "plain_text", "text": "Open in console"}, "url": message.console_url},
            ]},
        ],
    }


def _runs(*runs: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """A RichTextBlock of TextRuns: Teams renders the markdown of a TextBlock and of a FactSet's titles and
    values (``[Acknowledge](https://elsewhere)`` becomes a link), never that of a TextRun, so text from an
    alert goes only into TextRuns."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": text, **style} for text, style in runs]}


def teams_payload(message: AlertMessage) -> dict[str, Any]:
    alert = message.alert
    title_style = {"size": "Large", "weight": "Bolder", "color": "Attention" if alert.priority == "high" else "Default"}
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            _runs((f"Alert #{alert.id}: {message.title}", title_style)),
            *({**_runs((f"{key}: ", {"weight": "Bolder"}), (value, {})), "spacing": "Small"}
              for key, value in _facts(message)),
        ],
        "actions": [
            {"type": "Action.OpenUrl", "title": "Acknowledge", "url": message.acknowledge_url, "style": "positive"},
            {"type": "Action.OpenUrl", "title": "Resolve", "url": message.resolve_url},
            {"type": "Action.OpenUrl", "title": "Open in console", "url": message.console_url},
        ],
    }
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def webhook_payload(message: AlertMessage) -> dict[str, Any]:
    alert = message.alert
    return {
        "event": "alert.paged",
        "delivery": message.delivery,  # the same on each try of one post (a timed-out try may have arrived)
        "alert": {"id": alert.id, "title": message.title, "summary": alert.summary, "status": str(alert.status),
                  "priority": str(alert.priority), "team": alert.team, "source": alert.source,
                  "labels": alert.labels, "created_at": message.created},
        "links": {"acknowledge": message.acknowledge_url, "resolve": message.resolve_url,
                  "console": message.console_url},
    }


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The generic webhook's signature header value (receivers compute the same and compare)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


_PAYLOADS = {"slack": slack_payload, "teams": teams_payload, "webhook": webhook_payload}


class ChatPoster:
    """Posts to the configured destinations over one HTTP session (opened on first use)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, destination: ChatDestination, message: AlertMessage, *, now: float) -> None:
        body = json.dumps(_PAYLOADS[destination.kind](message), separators=(",", ":")).encode()
        hook = "webhook" if destination.kind == "webhook" else f"{destination.kind} webhook"
        headers = {"Content-Type": "application/json", "User-Agent": "oncall-telephony-gateway"}
        if destination.kind == "webhook" and destination.secret is not None:
            headers[SIGNATURE_HEADER] = signature(destination.secret, int(now), body)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(destination.url, data=body, headers=headers, allow_redirects=False,
                                          timeout=aiohttp.ClientTimeout(total=destination.timeout_s)) as response:
                answer = (await response.content.read(300)).decode("utf-8", "replace").strip()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChatError(f"{hook} unreachable: {type(exc).__name__} {exc}".strip(),
                            transient=True) from None
        if 200 <= status < 300:
            return
        what = f"{hook} answered HTTP {status}" + (f" ({answer[:120]})" if answer else "")
        if status == 429 or status >= 500 or status == 408:
            raise ChatError(what, transient=True, retry_after_s=_seconds(retry_after))
        raise ChatError(what, transient=False)


def _seconds(retry_after: str | None) -> float | None:
    """Retry-After in seconds (the delta form; a date or nonsense counts as unknown)."""
    if retry_after is None:
        return None
    try:
        seconds = float(retry_after.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 86400 else None
