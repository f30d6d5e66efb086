"""Replies engineers send by SMS: "1", "ACK 42", "resolve #42", "42 esc".

A reply is one keyword, optionally with an alert number before or after it.
A bare number is not a command: it is too easy to send by accident.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

SmsAction = Literal["acknowledge", "resolve", "escalate"]

SMS_HELP = (
    "Reply 1 or ACK to acknowledge, 2 or ESC to pass it on, RESOLVE to resolve. "
    "Add the alert number to pick one, e.g. ACK 42."
)

_KEYWORDS: dict[str, SmsAction] = {
    "1": "acknowledge",
    "a": "acknowledge",
    "ack": "acknowledge",
    "acknowledge": "acknowledge",
    "ok": "acknowledge",
    "r": "resolve",
    "res": "resolve",
    "resolve": "resolve",
    "close": "resolve",
    "2": "escalate",
    "e": "escalate",
    "esc": "escalate",
    "escalate": "escalate",
}

# ASCII digits only (\d also matches other scripts); 18 digits fit a 64-bit integer.
_ALERT_NUMBER = re.compile(r"#?([0-9]{1,18})")


@dataclass(frozen=True, kw_only=True)
class SmsCommand:
    """``alert_id`` is None when the reply names no alert (the latest one is meant)."""

    action: SmsAction
    alert_id: int | None = None


def parse_sms_reply(text: str) -> SmsCommand | None:
    """Read a reply; None when it is not a command."""
    words = text.strip().rstrip(".!").casefold().split()
    if len(words) == 1:
        action = _KEYWORDS.get(words[0])
        return None if action is None else SmsCommand(action=action)
    if len(words) == 2:
        first, second = words
        # Keyword first wins, so "1 42" is "acknowledge 42".
        return _command(first, second) or _command(second, first)
    return None


def _command(keyword: str, number: str) -> SmsCommand | None:
    action = _KEYWORDS.get(keyword)
    match = _ALERT_NUMBER.fullmatch(number)
    if action is None or match is None:
        return None
    return SmsCommand(action=action, alert_id=int(match.group(1)))
