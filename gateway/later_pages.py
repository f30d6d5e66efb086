"""Personal notification rules at work: the pages they plan for a step, and sending those due later.

Durable first: every page of a step, later ones included, is written with the step (a later one as 'due'
with its ``due_at``). The scheduler wakes at the earliest ``due_at`` (it never polls) and hands the pages due
to :meth:`LaterPages.send_due`, which sends each one still wanted (its alert still triggered and its step
still the current one), releasing it in the store just before (each once, also with several gateways). A
later page whose step is over is skipped, on the record (finished as canceled); an acknowledgement cancels
the later pages with the rest (``Paging.cancel_pages``).

Which pages follow the rules: alert calls only (a page kind with ``follows_personal_rules``); a hotline
screening calls at once whatever the rules say, for a caller is waiting. On a step that only texts
(``via: sms``) only the rules' SMS count (a quiet step never turns into calls); without any, the step's SMS
goes out at once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from datetime import timedelta

from core.clock import Clock
from core.enums import AlertStatus, Channel
from gateway.config import Config, Engineer, PolicyStep
from gateway.durations import format_duration
from gateway.notification_rules import NotificationRule
from gateway.page_kinds import PageKind
from gateway.store import Alert, Escalation, NewPage, Page, Store, TimelineEntry

log = logging.getLogger(__name__)

def earliest(*moments: float | None) -> float | None:
    known = [moment for moment in moments if moment is not None]
    return min(known) if known else None


def personal_pages(engineer: Engineer, step: PolicyStep, kind: PageKind, rules: tuple[NotificationRule, ...], *,
                   now: float, label: str, notes: list[TimelineEntry]) -> list[NewPage]:
    """The pages of ``step`` for ``engineer``: as the step says, or as their rules say (with a note)."""
    phone = [channel for channel in kind.channels(step) if channel in (Channel.CALL, Channel.SMS)]
    if not phone:
        return []  # an email or chat step: those pages are the scheduler's (Scheduler._message_pages)
    follows = bool(getattr(kind, "follows_personal_rules", False))
    if follows and phone == [Channel.SMS]:
        rules = tuple(rule for rule in rules if rule.via == Channel.SMS)
    if not follows or not rules:
        return [NewPage(engineer=engineer.id, number=engineer.phones[0], channel=channel) for channel in phone]
    kept = [rule for rule in rules if rule.after_s < step.timeout_s]
    late = [rule for rule in rules if rule.after_s >= step.timeout_s]
    message = (f"{label}: {engineer.name} is paged by their notification rules: "
               f"{', '.join(rule.describe() for rule in kept) or 'nothing in this step'}")
    if late:
        timeout = format_duration(timedelta(seconds=step.timeout_s))
        message += f"; not sent, at or past the step's timeout ({timeout}): {', '.join(r.describe() for r in late)}"
    notes.append(TimelineEntry(alert_id=0, at=now, kind="step", message=message,
                               data={"engineer": engineer.id, "rules": [rule.as_json() for rule in kept],
                                     "not_sent": [rule.as_json() for rule in late]}))
    return [NewPage(engineer=engineer.id, number=engineer.phones[0], channel=rule.via,
                    due_at=now + rule.after_s if rule.after_s else None) for rule in kept]


def step_is_current(esc: Escalation | None, page: Page, now: float) -> bool:
    """The page's step is the escalation's current one and not over (timed out, or moved on early)."""
    return (esc is not None and esc.next_due is not None and esc.next_due > now
            and (esc.step - 1, esc.repeat) == (page.step, page.repeat))


class LaterPages:
    """Sends the personal rules' later pages when due (run by the scheduler).

    The store is asked only when one may be due: the earliest due time is remembered from the last look and
    from each later page written here since (``expect``), so the scheduler's every wake-up (one per alert at
    intake) costs no query while nobody has rules. ``look_again`` (at start, after a takeover) forgets it."""

    def __init__(self, *, config: Config, store: Store, clock: Clock,
                 send: Callable[[Page, Alert], Awaitable[None]],
                 skip: Callable[[Page, str], Awaitable[object]]) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self._send = send
        self._skip = skip
        self._look_at: float | None = -math.inf  # when a later page may be due (None: none is waiting)

    def expect(self, when: float) -> None:
        """A later page due at ``when`` was written (by this gateway's plan)."""
        self._look_at = when if self._look_at is None else min(self._look_at, when)

    def look_again(self) -> None:
        """Later pages may have come from elsewhere (a dead gateway's, taken over): ask the store next time."""
        self._look_at = -math.inf

    async def send_due(self) -> float | None:
        """Send (or skip) every later page due now; returns when the next one is due."""
        now = self.clock.now()
        if self._look_at is None or self._look_at > now:
            return self._look_at
        for page in await self.store.later_pages_due(now):
            alert = await self.store.get_alert(page.alert_id)
            if alert is None or alert.status != AlertStatus.TRIGGERED:
                continue  # closed meanwhile: its pages were canceled with it
            if not step_is_current(await self.store.get_escalation(alert.id), page, now):
                step = page.step + 1 if page.step is not None else "?"
                log.info("alert %d: %s page %d skipped: step %s was over before it fell due", alert.id,
                         page.channel, page.id, step)
                await self._skip(page, f"step {step} was over before it fell due; not sent")
                continue
            # Released only now, one by one: a store error above leaves this page and the rest due (the
            # scheduler looks again), where releasing them all first would strand them until a restart.
            released = await self.store.release_page(page.id)
            if released is None:
                continue  # finished meanwhile, or another gateway took it over
            log.info("alert %d: %s page %d of a notification rule is due; sending", alert.id, page.channel, page.id)
            await self._send(released, alert)
        self._look_at = await self.store.next_page_due()
        return self._look_at
