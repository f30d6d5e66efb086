"""What an email or a chat post about an alert says, and the HTML pages of the action links.

Rendered from jinja2 templates beside the others in ``gateway/templates/`` (a file of the same name in
``templates_dir`` wins): ``*.html.j2`` are HTML and autoescaped; the rest are plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.clock import iso
from gateway.store import Alert
from gateway.templates import Templates


@dataclass(frozen=True, kw_only=True)
class AlertMessage:
    """One alert as a message carries it: its facts, where to see it, and the one-click actions."""

    alert: Alert
    recipient: str  # the engineer's name, or the chat destination's
    console_url: str  # the alert in the console (its timeline and pages)
    acknowledge_url: str  # signed, one use
    resolve_url: str  # signed, one use
    delivery: str = ""  # the same on every try of one page ("page-<id>"): a receiver drops a repeat by it

    @property
    def title(self) -> str:
        return " ".join(self.alert.summary.split())[:300]

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The labels by name, each on one line: in a plain-text mail a value with line breaks could lay out a
        look-alike "Acknowledge" link of its own."""
        return [(" ".join(key.split()), " ".join(value.split())) for key, value in sorted(self.alert.labels.items())]

    @property
    def created(self) -> str:
        return iso(self.alert.created_at) or ""


class MessageTemplates:
    """The alert emails and the action links' pages, from the gateway's templates."""

    def __init__(self, templates: Templates) -> None:
        self._templates = templates

    def email(self, message: AlertMessage) -> tuple[str, str, str]:
        """Subject, plain text and HTML of an alert email."""
        subject = " ".join(self._templates.render("alert_email_subject", m=message).split())
        return (subject, self._templates.render("alert_email.txt", m=message),
                self._templates.render("alert_email.html", m=message))

    def page(self, **context: Any) -> str:
        """An action link's page (the confirmation, the result, or why the link cannot be used)."""
        return self._templates.render("action_link.html", **context)
