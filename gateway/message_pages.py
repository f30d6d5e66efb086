"""Email and chat pages: the alert, its console link and signed acknowledge/resolve links, to a mailbox or a
chat destination.

Paging hands a written page here (outbox: written due, sent, then done). A page is delivered with a few
tries on transient failures (each recorded on the alert's timeline), and its outcome is ``sent`` or
``failed``. An email or a chat post never counts as an answer: only an acknowledgement stops escalation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import jinja2

from core.clock import Clock
from core.enums import Channel
from gateway.action_links import ActionLinks
from gateway.chat import MAX_RETRY_AFTER_S, ChatError, ChatPoster
from gateway.config import Config, Engineer
from gateway.mailer import Mailer, MailError
from gateway.messages import AlertMessage, MessageTemplates
from gateway.store import Alert, Page, Store, TimelineEntry

log = logging.getLogger(__name__)

#: waits between tries of a transient failure (a Retry-After, when given and shorter than the cap, wins)
RETRY_WAITS_S = (5.0, 30.0, 120.0)


class MessageFailed(Exception):
    """A page that could not be delivered (after its tries); the message says why."""


class MessageWithdrawn(MessageFailed):
    """The alert was closed while a page waited to try again: it is not sent."""


class MessagePages:
    def __init__(self, *, config: Config, store: Store, clock: Clock, links: ActionLinks,
                 templates: MessageTemplates, mailer: Mailer | None, chat: ChatPoster,
                 engineers: Callable[[str], Engineer | None] | None = None) -> None:
        self.config = config
        # An engineer by id, configured or from a directory (gateway.directory.roster.Roster.engineer)
        self.engineer = engineers if engineers is not None else config.engineers.get
        self.store = store
        self.clock = clock
        self.links = links
        self.templates = templates
        self.mailer = mailer
        self.chat = chat
        self._sending: set[int] = set()  # pages in a try now (not while they wait for the next)

    def sending(self, page_id: int) -> bool:
        """Whether the page is being handed over right now (so closing its alert must not call it unsent)."""
        return page_id in self._sending

    def message(self, page: Page, alert: Alert) -> AlertMessage:
        """The alert as this page carries it; the links act in the name of the page's engineer (or chat)."""
        engineer = self.engineer(page.engineer or "")
        actor = page.engineer if page.channel == Channel.EMAIL and page.engineer else f"chat:{page.number}"
        now = self.clock.now()
        return AlertMessage(
            alert=alert,
            recipient=engineer.name if engineer else page.number,
            console_url=f"{self.config.public_url.rstrip('/')}/console/alerts/{alert.id}",
            acknowledge_url=self.links.link(alert_id=alert.id, action="acknowledge", engineer=actor, now=now),
            resolve_url=self.links.link(alert_id=alert.id, action="resolve", engineer=actor, now=now),
            delivery=f"page-{page.id}",
        )

    async def deliver(self, page: Page, alert: Alert) -> str:
        """Deliver one email or chat page, trying again on transient failures; returns a detail for the
        timeline ("" at the first try), or raises MessageFailed (MessageWithdrawn: its alert is closed)."""
        self._sending.add(page.id)  # before the check, with no await between: see Paging.cancel_pages
        try:
            if not await self.store.call_wanted(page.id):
                raise MessageWithdrawn("alert closed; not sent")
            return await self._tries(page, alert)
        finally:
            self._sending.discard(page.id)

    async def _tries(self, page: Page, alert: Alert) -> str:
        message = self.message(page, alert)
        what = f"email to {message.recipient}" if page.channel == Channel.EMAIL else f"chat post to {page.number}"
        for attempt in range(len(RETRY_WAITS_S) + 1):
            try:
                await self._once(page, message)
                return f"on try {attempt + 1}" if attempt else ""
            except (MailError, ChatError) as exc:
                wait = RETRY_WAITS_S[attempt] if attempt < len(RETRY_WAITS_S) else None
                retry_after = exc.retry_after_s if isinstance(exc, ChatError) else None
                if retry_after is not None:
                    wait = retry_after if retry_after <= MAX_RETRY_AFTER_S and wait is not None else None
                if not exc.transient or wait is None:
                    raise MessageFailed(str(exc)) from None
                until = self.clock.now() + wait  # from the failure, however long the note takes to write
                log.warning("alert %d: %s failed (%s); trying again in %.0f s", alert.id, what, exc, wait)
                await self.store.add_timeline(TimelineEntry(
                    alert_id=alert.id, at=self.clock.now(), kind="page",
                    message=f"{what} failed ({exc}); trying again in {wait:.0f} s",
                    data={"page": page.id, "channel": page.channel, "attempt": attempt + 1}))
                self._sending.discard(page.id)
                await self.clock.sleep_until(until)
                self._sending.add(page.id)
                if not await self.store.call_wanted(page.id):
                    raise MessageWithdrawn("alert closed; not sent") from None
        raise MessageFailed("no try left")  # not reached: the last try returns or raises

    async def _once(self, page: Page, message: AlertMessage) -> None:
        if page.channel == Channel.EMAIL:
            if self.mailer is None:
                raise MailError("no email: section configured", transient=False)
            try:
                subject, text, html = self.templates.email(message)
            except jinja2.TemplateError as exc:  # an override in templates_dir that does not render
                raise MailError(f"the email templates do not render: {type(exc).__name__}: {exc}",
                                transient=False) from None
            await self.mailer.send(page.number, subject, text, html)
            return
        destination = self.config.chat.get(page.number)
        if destination is None:
            raise ChatError(f"chat destination {page.number!r} is no longer configured", transient=False)
        await self.chat.post(destination, message, now=self.clock.now())


def link_warnings(config: Config) -> list[str]:
    """Email or chat steps whose links would point at a loopback address nobody else can reach."""
    uses_links = any({"email", "chat"} & set(step.channels) for policy in config.policies.values()
                     for step in policy.steps)
    host = urlsplit(config.public_url).hostname or ""
    if uses_links and (host in ("localhost", "::1") or host.startswith("127.")):
        return [f"server.public_url is {config.public_url}: the console and action links in emails and chat posts "
                "point there; set it to the address people reach the gateway at"]
    return []


def email_gaps(config: Config) -> list[str]:
    """Who a step would email but has no address, per route (a route ties a team to a policy): warnings for
    ``gateway check-config``; at run time such an engineer is skipped, with a note on the alert's timeline."""
    found: list[str] = []
    routes = [*config.routes, *([config.default_route] if config.default_route is not None else [])]
    for route in routes:
        policy = config.policies.get(route.policy)
        team = config.teams.get(route.team)
        if policy is None or team is None:
            continue
        for index, step in enumerate(policy.steps):
            if "email" not in step.channels:
                continue
            ids = [step.engineer] if step.target == "engineer" and step.engineer else list(team.members)
            missing = [config.engineers[i].name for i in ids if i in config.engineers and not config.engineers[i].email]
            if missing:
                found.append(f"route {route.name}: policies.{policy.id}.steps[{index}] emails, but "
                              f"{', '.join(missing)} of team {team.id} {'has' if len(missing) == 1 else 'have'} "
                              "no email address")
    return found
