"""The scheduler: runs each escalation's due step, and plans who a step pages.

Durable first, then act: a step is written (pages due, escalation moved on, timeline) in one transaction
before any call or SMS starts, so after a crash what was due is sent again and what was sent is not.
The scheduler sleeps until the next due time, or until woken by a change; it never polls.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Protocol

from core.clock import Clock, sleep_until_woken, to_datetime
from core.enums import AlertStatus, Channel, PageStatus
from core.phone import mask
from gateway import failpoints
from gateway.config import Config, DirectoryGroup, Engineer, Policy, PolicyStep, Team
from gateway.later_pages import LaterPages, earliest, personal_pages
from gateway.layers import why_nobody
from gateway.notification_rules import NotificationRule
from gateway.oncall import who_is_on_call
from gateway.page_kinds import PageKind, PageKinds
from gateway.paging import NEGATIVE
from gateway.store import (
    Alert,
    Escalation,
    NewPage,
    Page,
    StepPlan,
    Store,
    TimelineEntry,
)

log = logging.getLogger(__name__)


class PageSender(Protocol):
    """Where the scheduler hands a step's written pages (paging)."""

    async def send(self, page: Page, alert: Alert, *, ring_s: int) -> None: ...


class Scheduler:
    def __init__(self, *, config: Config, store: Store, clock: Clock, paging: PageSender, kinds: PageKinds,
                 teams: Callable[[str], Team | None] | None = None,
                 engineers: Callable[[str], Engineer | None] | None = None,
                 directory_group: Callable[[DirectoryGroup], list[Engineer]] | None = None,
                 rules: Callable[[str], tuple[NotificationRule, ...]] | None = None,
                 later_pages: LaterPages | None = None) -> None:
        self.config = config
        # An engineer's personal notification rules in force (gateway.rule_book.RuleBook.rules_for)
        self.rules = rules if rules is not None else (
            lambda engineer: config.engineers[engineer].notification_rules if engineer in config.engineers else ())
        self.later_pages = later_pages
        # A team as it stands now (gateway.overrides.Schedule.team: with the overrides added at run time)
        self.teams = teams if teams is not None else config.teams.get
        # An engineer by id, configured or from a directory (gateway.directory.roster.Roster.engineer)
        self.engineer = engineers if engineers is not None else config.engineers.get
        # Every member of a directory group, for a step that names one (gateway.directory.roster.Roster.group)
        self.directory_group = directory_group
        self.store = store
        self.clock = clock
        self.paging = paging
        self.kinds = kinds
        self._wake = asyncio.Event()
        self._planned_wake = math.inf  # when the scheduler will look next on its own (inf: not before woken)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="escalation scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def due_at(self, when: float) -> None:
        """Something is due at ``when``: wake the scheduler if it plans to sleep past that."""
        if when < self._planned_wake:
            self._wake.set()

    def later_page_written(self, when: float) -> None:
        """A personal rule's page due at ``when`` was written: send it then."""
        if self.later_pages is not None:
            self.later_pages.expect(when)
        self.due_at(when)

    def took_over(self) -> None:
        """A dead gateway's escalations and later pages are ours now: look at what is due."""
        if self.later_pages is not None:
            self.later_pages.look_again()
        self.due_at(0.0)

    # -------------------------------------------------------------- planning

    def plan(self, *, team: str, policy: Policy, kind: PageKind, step_index: int, repeat: int, now: float,
             notes: list[TimelineEntry] | None = None) -> StepPlan:
        """Who step ``step_index`` pages now, how, and when the step after it is due."""
        step = policy.steps[step_index]
        if step.group is not None:  # notify: directory:<name>:<group path>
            targets = self.directory_group(step.group) if self.directory_group is not None else []
        else:
            targets = self._targets(team, step.target, step.engineer, now)
        label = f"step {step_index + 1} of {len(policy.steps)}"
        channels = kind.channels(step)
        notes = list(notes or [])
        rule_notes: list[TimelineEntry] = []  # after the step's own note
        pages = [page for eng in targets for page in
                 personal_pages(eng, step, kind, self.rules(eng.id), now=now, label=label, notes=rule_notes)]
        pages += self._message_pages(step, channels, targets, label, now, notes)
        if pages:  # a chat post goes out with nobody on call too: the note says so, and why
            who = ", ".join(f"{e.name} ({mask(e.phones[0])})" for e in targets) or f"({self._nobody(team, step, now)})"
            notes.append(TimelineEntry(alert_id=0, at=now, kind="step",
                                       message=f"{label}: {step.via} {step.target} {who}; "
                                       f"times out in {step.timeout_s} s",
                                       data={"step": step_index, "repeat": repeat}))
            next_due = now + step.timeout_s
        elif targets:  # their notification rules send nothing before the step's timeout (the note says which)
            why = ("no page falls due within its timeout" if {Channel.CALL, Channel.SMS} & set(channels)
                   else "nobody it emails has an address")  # an email-only step (each one noted above)
            notes.append(TimelineEntry(alert_id=0, at=now, kind="step", message=f"{label}: {why}; skipped"))
            next_due = now
        else:
            notes.append(TimelineEntry(alert_id=0, at=now, kind="step",
                                       message=f"{label}: {self._nobody(team, step, now)}; skipped"))
            next_due = now
        notes += rule_notes
        return StepPlan(step=step_index, repeat=repeat, pages=pages, next_due=next_due, notes=notes)

    @staticmethod
    def _message_pages(step: PolicyStep, channels: tuple[Channel, ...], targets: list[Engineer], label: str,
                       now: float, notes: list[TimelineEntry]) -> list[NewPage]:
        """A step's email pages (to each target with an address) and chat posts (to each destination named)."""
        pages: list[NewPage] = []
        if Channel.EMAIL in channels:
            for eng in targets:
                if eng.email:
                    pages.append(NewPage(engineer=eng.id, number=eng.email, channel=Channel.EMAIL))
                else:
                    log.warning("%s: %s has no email address; not emailed", label, eng.name)
                    notes.append(TimelineEntry(alert_id=0, at=now, kind="step",
                                               message=f"{label}: {eng.name} has no email address; not emailed"))
        if Channel.CHAT in channels:
            pages += [NewPage(engineer=None, number=name, channel=Channel.CHAT) for name in step.chat]
        return pages

    def _targets(self, team_id: str, target: str, engineer: str | None, now: float) -> list[Engineer]:
        if target == "engineer":
            return _found(self.engineer(engineer or ""))
        team = self.teams(team_id)
        if team is None:
            return []
        if target == "team":
            return [found for m in team.members for found in _found(self.engineer(m))]
        oncall = who_is_on_call(team, to_datetime(now))
        chosen = oncall.primary if target == "primary" else oncall.secondary
        return _found(self.engineer(chosen)) if chosen is not None else []

    # ----------------------------------------------------------------- steps

    async def _run(self) -> None:
        while True:
            self._planned_wake = math.inf  # while running, any news wakes us again
            self._wake.clear()
            try:
                for esc in await self.store.due_escalations(self.clock.now()):
                    await self._run_step(esc)
                next_due = await self.store.next_due()
                if self.later_pages is not None:  # personal rules' later pages: send those due, wake for the next
                    next_due = earliest(next_due, await self.later_pages.send_due())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation scheduler: error while running due steps; retrying in 1 s")
                next_due = self.clock.now() + 1
            self._planned_wake = math.inf if next_due is None else next_due
            await self._sleep(next_due)

    async def _sleep(self, until: float | None) -> None:
        if until is not None and until <= self.clock.now():
            return
        await sleep_until_woken(self.clock, self._wake, until)

    async def _run_step(self, esc: Escalation) -> None:
        alert = await self.store.get_alert(esc.alert_id)
        now = self.clock.now()
        if alert is None or alert.status != AlertStatus.TRIGGERED:
            return
        policy = self.config.policies.get(alert.policy)
        if policy is None:
            log.error("alert %d: policy %r is no longer configured; escalation stopped", alert.id, alert.policy)
            await self.store.reschedule(alert.id, expect=esc, next_due=None, now=now,
                                        note=f"policy {alert.policy} is no longer configured; escalation stopped")
            return
        kind = self.kinds.of(alert)
        step_index, repeat = esc.step, esc.repeat
        notes: list[TimelineEntry] = []
        if step_index >= len(policy.steps):
            if repeat >= policy.repeat:
                rounds = policy.repeat + 1
                log.warning("alert %d: escalation exhausted, nobody acknowledged after %d round(s)", alert.id, rounds)
                note = f"escalation exhausted: nobody acknowledged after {rounds} round(s)"
                if await self.store.reschedule(alert.id, expect=esc, next_due=None, now=now, note=note):
                    await kind.exhausted(alert)
                return
            step_index, repeat = 0, repeat + 1
            notes.append(TimelineEntry(alert_id=alert.id, at=now, kind="escalation",
                                       message=f"policy {policy.id} starts again "
                                       f"(round {repeat + 1} of {policy.repeat + 1})"))
        plan = self.plan(team=alert.team, policy=policy, kind=kind, step_index=step_index, repeat=repeat,
                         now=now, notes=notes)
        created = await self.store.start_step(alert.id, expect=esc, plan=plan, now=now)
        if created is None:
            return  # acknowledged or moved on meanwhile
        failpoints.reached("step-committed")
        log.info("alert %d: step %d of %d paging %d number(s)", alert.id, step_index + 1, len(policy.steps),
                 len(created))
        for page in created:
            await self.paging.send(page, alert, ring_s=policy.steps[step_index].ring_s)

    async def step_failed(self, page: Page) -> None:
        """Paging says a page failed: when every page of the current step has, start the next step now."""
        if page.step is None:
            return
        esc = await self.store.get_escalation(page.alert_id)
        if esc is None or esc.next_due is None:
            return
        if (esc.step - 1, esc.repeat) != (page.step, page.repeat):
            return  # the page belongs to an older step
        siblings = [p for p in await self.store.pages_for(page.alert_id)
                    if (p.step, p.repeat) == (page.step, page.repeat)]
        # An email or chat post never answers: beside calls or SMS, only those decide whether nobody can take it.
        phones = [p for p in siblings if p.channel in (Channel.CALL, Channel.SMS)]
        siblings = phones or siblings
        if all(p.status == PageStatus.DONE and p.outcome in {o.value for o in NEGATIVE} for p in siblings):
            now = self.clock.now()
            if esc.next_due > now and await self.store.reschedule(
                page.alert_id, expect=esc, next_due=now, now=now,
                note=f"step {page.step + 1}: nobody can take it; moving on now",
            ):
                self.due_at(now)

    def _nobody(self, team_id: str, step: PolicyStep, now: float) -> str:
        if step.group is not None:
            return f"nobody is in directory group {step.group.group} of {step.group.directory}"
        return f"nobody is {step.target} on call for team {team_id}{self._why_nobody(team_id, step.target, now)}"

    def _why_nobody(self, team_id: str, target: str, now: float) -> str:
        """Why a primary or secondary step found nobody, when the team's layers say (gateway.layers)."""
        team = self.teams(team_id)
        return why_nobody(team, to_datetime(now)) if team is not None and target in ("primary", "secondary") else ""


def _found(engineer: Engineer | None) -> list[Engineer]:
    return [engineer] if engineer is not None and engineer.phones else []
