"""What an email or a chat post about an alert says, and the HTML pages of the action links.

Rendered from jinja2 templates beside the others in ``gateway/templates/`` (a file of the same name in
``templates_dir`` wins): ``*.html.j2`` are HTML and autoescaped; the rest are plain text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from core.clock import iso
from gateway.store import Alert


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
    def __init__(self, override_dir: Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if override_dir is not None:
            loaders.append(jinja2.FileSystemLoader(str(override_dir)))
        loaders.append(jinja2.PackageLoader("gateway", "templates"))
        self._env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=jinja2.StrictUndefined,
        )

    def render(self, name: str, **context: Any) -> str:
        return self._env.get_template(name).render(**context).strip()

    def email(self, message: AlertMessage) -> tuple[str, str, str]:
        """Subject, plain text and HTML of an alert email."""
        subject = " ".join(self.render("alert_email_subject.j2", m=message).split())
        return subject, self.render("alert_email.txt.j2", m=message), self.render("alert_email.html.j2", m=message)

    def page(self, **context: Any) -> str:
        """An action link's page (the confirmation, the result, or why the link cannot be used)."""
        return self.render("action_link.html.j2", **context)
