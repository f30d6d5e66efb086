"""Chat webhook receivers on loopback that check what they get the way the services do.

- Slack incoming webhook: JSON only; ``text`` or ``blocks``; known block types; section text within 3000
  characters and at most 10 fields; buttons with plain_text text (<= 75), a URL (<= 3000), unique
  action_ids. Answers ``200 ok``, or Slack's plain-text errors (``400 invalid_payload``, ``400 invalid_blocks``).
- Teams workflow webhook ("When a Teams webhook request is received"): JSON only; ``type: message`` with
  attachments of ``application/vnd.microsoft.card.adaptive`` holding an AdaptiveCard (version 1.0-1.6, body a
  list of known elements, a RichTextBlock's inlines TextRuns, actions of known types with title and, for
  Action.OpenUrl, a URL). Answers ``202``; a bad shape 400.
  ``rendered_links`` says which links Teams would show: the markdown links of TextBlocks and FactSets (Teams
  renders markdown there; not in a RichTextBlock's TextRuns) and the actions' URLs.
- Generic: verifies ``X-Gateway-Signature: t=..,v1=..`` with the shared secret over ``t + "." + body``.

Each can be told to fail the next requests (``fail_next``), as the real ones do: a status, a body and
headers (e.g. 429 with Retry-After).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_SLACK_BLOCKS = {"section", "actions", "context", "divider", "header", "image", "rich_text", "input"}
_CARD_ELEMENTS = {"TextBlock", "RichTextBlock", "FactSet", "Image", "ImageSet", "Container", "ColumnSet", "ActionSet",
                  "Table", "Media"}
_CARD_ACTIONS = {"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility", "Action.Execute"}


@dataclass
class Receiver:
    """What one receiver accepted (the parsed JSON) and what it refused (status, why)."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    failures: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)

    def fail_next(self, status: int, body: str = "", headers: dict[str, str] | None = None, times: int = 1) -> None:
        self.failures.extend([(status, body, headers or {})] * times)

    @property
    def requests(self) -> int:
        return len(self.accepted) + len(self.refused)


def _json_body(raw: bytes, content_type: str) -> Any:
    if content_type != "application/json":
        raise ValueError("invalid_payload (not application/json)")
    return json.loads(raw)


def _slack_problem(payload: Any) -> str | None:
    if not isinstance(payload, dict) or not (payload.get("text") or payload.get("blocks")):
        return "no_text"
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list) or len(blocks) > 50:
        return "invalid_blocks"
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _SLACK_BLOCKS:
            return "invalid_blocks"
        if block["type"] == "section":
            text = block.get("text")
            fields = block.get("fields", [])
            if text is None and not fields:
                return "invalid_blocks"
            if text is not None and (text.get("type") not in ("mrkdwn", "plain_text") or len(text["text"]) > 3000):
                return "invalid_blocks"
            if len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields):
                return "invalid_blocks"
        if block["type"] == "actions":
            ids = [element.get("action_id") for element in block.get("elements", [])]
            if not ids or len(ids) > 25 or len(set(ids)) != len(ids):
                return "invalid_blocks"
            for element in block["elements"]:
                label = element.get("text", {})
                if element.get("type") != "button" or label.get("type") != "plain_text":
                    return "invalid_blocks"
                if not 0 < len(label.get("text", "")) <= 75 or len(element.get("url", "")) > 3000:
                    return "invalid_blocks"
                if element.get("style") not in (None, "primary", "danger"):
                    return "invalid_blocks"
    return None


def _teams_problem(payload: Any) -> str | None:
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return "the body must be a message"
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "the message has no attachments"
    for attachment in attachments:
        if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
            return "only Adaptive Cards are supported"
        card = attachment.get("content")
        if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
            return "the attachment is not an AdaptiveCard"
        version = str(card.get("version", ""))
        if version not in ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"):
            return f"unsupported card version {version!r}"
        if not isinstance(card.get("body"), list):
            return "the card has no body"
        for element in card["body"]:
            if not isinstance(element, dict) or element.get("type") not in _CARD_ELEMENTS:
                return "the card's body holds an unknown element"
            if element["type"] == "RichTextBlock" and (
                    version in ("1.0", "1.1") or not isinstance(element.get("inlines"), list)
                    or not all(isinstance(run, str) or (isinstance(run, dict) and run.get("type") == "TextRun"
                                                        and isinstance(run.get("text"), str))
                               for run in element["inlines"])):
                return "a RichTextBlock (1.2 and later) holds TextRuns with text"
        for action in card.get("actions", []):
            if action.get("type") not in _CARD_ACTIONS or not action.get("title"):
                return "an action has no known type or no title"
            if action["type"] == "Action.OpenUrl" and not str(action.get("url", "")).startswith(("http://", "https://")):
                return "Action.OpenUrl needs a url"
    return None


_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)[^)]*\)")


def rendered_links(card: dict[str, Any]) -> set[tuple[str, str]]:
    """The (label, URL) links a Teams reader sees on ``card``: markdown links where Teams renders markdown
    (TextBlock text, Fact title and value, at any depth) and the actions' buttons."""
    found: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        texts: list[str] = []
        if node.get("type") == "TextBlock":
            texts.append(str(node.get("text", "")))
        if node.get("type") == "FactSet":
            texts += [str(fact.get(key, "")) for fact in node.get("facts", []) for key in ("title", "value")]
        for text in texts:
            found.update((label, url) for label, url in _MARKDOWN_LINK.findall(text))
        if node.get("type") == "Action.OpenUrl":
            found.add((str(node.get("title", "")), str(node.get("url", ""))))
        for key, value in node.items():
            if key not in ("text", "facts"):
                walk(value)

    walk(card)
    return found


def _signature_problem(secret: str, header: str, body: bytes) -> str | None:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if "t" not in parts or "v1" not in parts:
        return "no signature"
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, parts["v1"]) else "signature mismatch"


def chat_app(slack: Receiver, teams: Receiver, hook: Receiver, *, hook_secret: str) -> web.Application:
    """One app serving the three receivers at /slack, /teams and /hook."""

    async def receive(request: web.Request, receiver: Receiver, check: Any, ok: web.Response) -> web.Response:
        raw = await request.read()
        if receiver.failures:
            status, body, headers = receiver.failures.pop(0)
            receiver.refused.append((status, body))
            return web.Response(status=status, text=body, headers=headers)
        try:
            payload = _json_body(raw, request.content_type)
        except ValueError as exc:
            receiver.refused.append((400, str(exc)))
            return web.Response(status=400, text="invalid_payload")
        problem = check(payload, request, raw)
        if problem is not None:
            receiver.refused.append((400, problem))
            return web.Response(status=400, text=problem)
        receiver.accepted.append(payload)
        return ok

    async def slack_hook(request: web.Request) -> web.Response:
        return await receive(request, slack, lambda p, r, b: _slack_problem(p), web.Response(text="ok"))

    async def teams_hook(request: web.Request) -> web.Response:
        return await receive(request, teams, lambda p, r, b: _teams_problem(p), web.Response(status=202))

    async def generic_hook(request: web.Request) -> web.Response:
        return await receive(request, hook, lambda p, r, b: _signature_problem(
            hook_secret, r.headers.get("X-Gateway-Signature", ""), b), web.json_response({"ok": True}))

    app = web.Application()
    app.router.add_post("/slack", slack_hook)
    app.router.add_post("/teams", teams_hook)
    app.router.add_post("/hook", generic_hook)
    return app
