"""The domain's words, as enums that compare equal to the text stored and sent over HTTP."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    HIGH = "high"
    LOW = "low"


class AlertStatus(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Channel(StrEnum):
    CALL = "call"
    SMS = "sms"
    EMAIL = "email"
    CHAT = "chat"  # a post to a named chat destination (Slack, Teams, a generic webhook)


class PageStatus(StrEnum):
    """A page is an outbox entry: written due, sent once the provider took it, done with its outcome."""

    DUE = "due"
    SENT = "sent"
    DONE = "done"
