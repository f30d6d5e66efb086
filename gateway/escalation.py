"""The escalation engine: alerts in, pages out along the policy, until someone acknowledges.

Durable first, then act: every step is written (pages 'due', escalation moved
on, timeline) in one transaction before any call or SMS is started, so after a
crash what was due is sent again and what was sent is not. The scheduler
sleeps until the next due time (or until woken by a change), never polls.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway import failpoints
from gateway.clock import Clock, to_datetime
from gateway.config import Config, Engineer, Policy, PolicyStep, Route
from gateway.dispatch import Dispatcher
from gateway.oncall import who_is_on_call
from gateway.phone import mask, spoken
from gateway.routing import matches, select_route
from gateway.send_gate import SendGate
from gateway.signals import AlertSignal
from gateway.store import Alert, Escalation, NewAlert, NewPage, Page, StepPlan, Store, TimelineEntry
from gateway.templates import Templates
from ivr_flows.alert_call import AlertCallFlow
from ivr_flows.model import Flow
from ivr_flows.screening import ScreeningFlow
from providers.base import CallOutcome, CallRequest, CallResult, ProviderError, SmsProvider, SmsRequest, VoiceProvider

log = logging.getLogger(__name__)

#: outcomes after which a page no longer stands in the way of the next step
_NEGATIVE = {
    CallOutcome.DECLINED,
    CallOutcome.NO_ANSWER,
    CallOutcome.MACHINE,
    CallOutcome.BUSY,
    CallOutcome.FAILED,
    CallOutcome.CANCELED,
}
_OUTCOME_TEXT = {
    CallOutcome.ACKNOWLEDGED: "acknowledged (pressed 1)",
    CallOutcome.ACCEPTED: "accepted",
    CallOutcome.DECLINED: "declined",
    CallOutcome.NO_ANSWER: "did not answer",
    CallOutcome.MACHINE: "voicemail picked up (not an acknowledgement)",
    CallOutcome.BUSY: "was busy",
    CallOutcome.FAILED: "could not be reached",
    CallOutcome.CANCELED: "call canceled",
}


class HotlineHooks(Protocol):
    """What the engine asks of the hotline service (set as ``engine.hotline``)."""

    async def accepted(self, alert: Alert, page: Page) -> None: ...

    async def exhausted(self, alert: Alert) -> None: ...


class UnknownTeam(LookupError):
    def __init__(self, team: str) -> None:
        super().__init__(f"unknown team {team!r}")
        self.team = team


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    signal: AlertSignal
    alert: Alert | None  # None: acknowledge/resolve for no open alert
    created: bool = False
    changed: bool = False
    dedup_key: str = ""


def call_id_for(page: Page) -> str:
    return f"page-{page.id}"


def page_id_from(call_id: str) -> int | None:
    prefix, _, number = call_id.partition("-")
    return int(number) if prefix == "page" and number.isdigit() else None


class EscalationEngine:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        clock: Clock,
        voice: VoiceProvider,
        sms: SmsProvider | None,
        templates: Templates,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.voice = voice
        self.sms = sms
        self.templates = templates
        self.dispatcher = Dispatcher(
            voice,
            now=clock.now,
            reserved_share=config.reserved_for_high,
            low_wait_warning_s=config.low_wait_warning_s,
            is_wanted=self._call_still_wanted,
            on_placed=self._call_placed,
            on_failed=self._call_failed,
        )
        self._wake = asyncio.Event()
        self._planned_wake = math.inf  # when the scheduler will look next on its own (inf: not before woken)
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._sms_gate = SendGate()
        self._engineer_by_number = {n: e for e in config.engineers.values() for n in e.phones}
        self.hotline: HotlineHooks | None = None

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.dispatcher.start()
        unsent = await self.store.unsent_pages()
        if unsent:
            log.info("recovery: %d page(s) were due but not sent before the last stop; sending now", len(unsent))
        for page in unsent:
            alert = await self.store.get_alert(page.alert_id)
            if alert is not None:
                await self._send(page, alert)
        self._task = asyncio.create_task(self._run(), name="escalation scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        await self.dispatcher.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def due_at(self, when: float) -> None:
        """Something is due at ``when``: wake the scheduler if it plans to sleep past that."""
        if when < self._planned_wake:
            self._wake.set()

    # --------------------------------------------------------------- intake

    async def ingest(self, signal: AlertSignal) -> IngestResult:
        """Act on one signal. ``IngestResult.dedup_key`` is the key as the sender knows it."""
        public_key = signal.dedup_key or uuid.uuid4().hex
        stored_key = self._stored_key(signal, public_key)
        if signal.action == "trigger":
            return await self._trigger(signal, stored_key, public_key)
        existing = await self.store.find_open_alert(stored_key)
        if existing is None:
            log.info("%s %s: no open alert with that dedup key; nothing to do", signal.source, signal.action)
            return IngestResult(signal=signal, alert=None, dedup_key=public_key)
        by = f"{signal.source} integration"
        if signal.action == "acknowledge":
            alert, changed = await self.acknowledge(existing.id, by=by, how=f"acknowledged by {by}")
        else:
            alert, changed = await self.resolve(existing.id, by=by, how=f"resolved by {by}")
        return IngestResult(signal=signal, alert=alert, changed=changed, dedup_key=public_key)

    @staticmethod
    def _stored_key(signal: AlertSignal, key: str) -> str:
        if signal.source == "pagerduty" and signal.routing_key:
            # PagerDuty scopes dedup keys per routing key; hash it so the secret is not stored.
            scope = hashlib.sha256(signal.routing_key.encode()).hexdigest()[:12]
            return f"pagerduty:{scope}:{key}"
        return key

    def route_for(self, signal: AlertSignal) -> Route:
        if signal.team is None:
            return select_route(self.config, signal.labels, signal.routing_key)
        if signal.team not in self.config.teams:
            raise UnknownTeam(signal.team)
        candidates = [r for r in self.config.routes if r.team == signal.team]
        matching = [r for r in candidates if all(matches(m, signal.labels) for m in r.matchers)]
        if matching:
            return matching[0]
        if candidates:
            return candidates[0]
        default = self.config.default_route
        if default is None or default.policy not in self.config.policies:
            raise UnknownTeam(signal.team)
        return Route(name=f"team:{signal.team}", matchers=(), team=signal.team, policy=default.policy,
                     priority=default.priority)

    async def _trigger(self, signal: AlertSignal, dedup_key: str, public_key: str) -> IngestResult:
        route = self.route_for(signal)
        now = self.clock.now()
        new = NewAlert(
            dedup_key=dedup_key,
            priority=signal.priority or route.priority,
            source=signal.source,
            summary=signal.summary or "(no summary)",
            details=signal.details,
            labels=signal.labels,
            team=route.team,
            policy=route.policy,
            route=route.name,
        )
        policy = self.config.policies[route.policy]
        first = self._plan(team=new.team, source=new.source, policy=policy, step_index=0, repeat=0, now=now)
        alert, created, pages = await self.store.create_alert(
            new,
            now=now,
            escalate_at=now,
            note=f"triggered from {signal.source}; route {route.name} -> team {route.team}, "
            f"policy {route.policy}, {new.priority} priority",
            first_step=first,
        )
        if created:
            failpoints.reached("alert-committed")
            # Fast path: step 1 was written with the alert; dial now, the scheduler takes the rest.
            log.info("alert %d triggered from %s (team %s, %s priority): %s",
                     alert.id, signal.source, alert.team, alert.priority, alert.summary)
            for page in pages:
                await self._send(page, alert, ring_timeout_s=policy.steps[0].ring_s)
            self.due_at(first.next_due)  # the scheduler learns when step 2 is due
        else:
            log.info("alert %d: duplicate trigger from %s ignored (dedup key already open)", alert.id, signal.source)
        return IngestResult(signal=signal, alert=alert, created=created, dedup_key=public_key)

    # ------------------------------------------------------- status changes

    async def acknowledge(self, alert_id: int, *, by: str, how: str) -> tuple[Alert | None, bool]:
        return await self._close(alert_id, "acknowledged", by=by, how=how)

    async def resolve(self, alert_id: int, *, by: str, how: str) -> tuple[Alert | None, bool]:
        return await self._close(alert_id, "resolved", by=by, how=how)

    async def _close(self, alert_id: int, status: str, *, by: str, how: str) -> tuple[Alert | None, bool]:
        result = await self.store.change_status(alert_id, status, now=self.clock.now(), by=by, note=how)
        if result is None:
            return None, False
        alert, changed = result
        if changed:
            log.info("alert %d %s: %s", alert.id, status, how)
            await self._cancel_pages(alert.id)
        return alert, changed

    async def raise_priority(self, alert_id: int, *, by: str) -> Alert | None:
        """Make an alert high priority: its future calls and the ones still queued jump ahead."""
        alert = await self.store.set_priority(alert_id, "high", now=self.clock.now(),
                                              note=f"priority raised to high by {by}")
        if alert is not None:
            queued = {call_id_for(p) for p in await self.store.pages_for(alert_id) if p.status == "due"}
            moved = await self.dispatcher.raise_priority(queued)
            log.info("alert %d raised to high priority by %s (%d queued call(s) moved up)", alert_id, by, moved)
        return alert

    async def escalate(self, alert_id: int, *, by: str) -> tuple[Alert | None, bool]:
        """Start the next step now (an operator, an SMS 'esc', a declined call)."""
        alert = await self.store.get_alert(alert_id)
        if alert is None or alert.status != "triggered":
            return alert, False
        esc = await self.store.get_escalation(alert_id)
        if esc is None:
            return alert, False
        now = self.clock.now()
        if esc.next_due is None:
            if alert.policy not in self.config.policies:
                return alert, False  # a direct page: there is no next step
            # The policy ran out without an acknowledgement: run it again from the top.
            changed = await self.store.reschedule(alert_id, expect=esc, next_due=now, restart=True, now=now,
                                                  note=f"escalated by {by}: policy starts again from step 1")
        else:
            changed = await self.store.reschedule(alert_id, expect=esc, next_due=now, now=now,
                                                  note=f"escalated by {by}: next step starts now")
        if changed:
            log.info("alert %d escalated by %s", alert_id, by)
            self.due_at(now)
        return alert, changed

    async def _cancel_pages(self, alert_id: int) -> None:
        for page in await self.store.pages_for(alert_id):
            if page.status == "due" and page.channel == "sms":
                await self._sms_gate.withdraw(call_id_for(page))  # an SMS being sent now reaches Twilio first
            if page.status == "done" or page.channel != "call":
                continue
            call_id = call_id_for(page)
            if not await self.dispatcher.withdraw(call_id):
                # In the background: this often runs inside a provider's webhook (an engineer pressed 1),
                # which must answer at once, while hanging up may mean slow REST calls with retries.
                self.cancel_in_background(call_id)
                await self.dispatcher.finished(call_id)  # its line is free (a provider may never report it)
            await self._finish(page, CallOutcome.CANCELED, "alert closed; call canceled", log_it=False)

    def cancel_in_background(self, call_id: str) -> None:
        async def cancel() -> None:
            try:
                await self.voice.cancel_call(call_id)
            except ProviderError as exc:
                log.warning("could not cancel call %s: %s", call_id, exc)

        self.spawn(cancel())

    # ------------------------------------------------------------- scheduler

    async def _run(self) -> None:
        while True:
            self._planned_wake = math.inf  # while running, any news wakes us again
            self._wake.clear()
            try:
                for esc in await self.store.due_escalations(self.clock.now()):
                    await self._run_step(esc)
                next_due = await self.store.next_due()
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
        waiters = [asyncio.ensure_future(self._wake.wait())]
        if until is not None:
            waiters.append(asyncio.ensure_future(self.clock.sleep_until(until)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _run_step(self, esc: Escalation) -> None:
        alert = await self.store.get_alert(esc.alert_id)
        now = self.clock.now()
        if alert is None or alert.status != "triggered":
            return
        policy = self.config.policies.get(alert.policy)
        if policy is None:
            log.error("alert %d: policy %r is no longer configured; escalation stopped", alert.id, alert.policy)
            await self.store.reschedule(alert.id, expect=esc, next_due=None, now=now,
                                        note=f"policy {alert.policy} is no longer configured; escalation stopped")
            return
        step_index, repeat = esc.step, esc.repeat
        notes: list[TimelineEntry] = []
        if step_index >= len(policy.steps):
            if repeat >= policy.repeat:
                rounds = policy.repeat + 1
                log.warning("alert %d: escalation exhausted, nobody acknowledged after %d round(s)", alert.id, rounds)
                done = await self.store.reschedule(
                    alert.id, expect=esc, next_due=None, now=now,
                    note=f"escalation exhausted: nobody acknowledged after {rounds} round(s)")
                if done and alert.source == "hotline" and self.hotline is not None:
                    await self.hotline.exhausted(alert)
                return
            step_index, repeat = 0, repeat + 1
            notes.append(self._note(alert, now, "escalation",
                                    f"policy {policy.id} starts again (round {repeat + 1} of {policy.repeat + 1})"))
        plan = self._plan(team=alert.team, source=alert.source, policy=policy, step_index=step_index,
                          repeat=repeat, now=now, notes=notes)
        created = await self.store.start_step(alert.id, expect=esc, plan=plan, now=now)
        if created is None:
            return  # acknowledged or moved on meanwhile
        failpoints.reached("step-committed")
        log.info("alert %d: step %d of %d paging %d number(s)", alert.id, step_index + 1, len(policy.steps),
                 len(created))
        for page in created:
            await self._send(page, alert, ring_timeout_s=policy.steps[step_index].ring_s)

    def _plan(
        self,
        *,
        team: str,
        source: str,
        policy: Policy,
        step_index: int,
        repeat: int,
        now: float,
        notes: list[TimelineEntry] | None = None,
    ) -> StepPlan:
        """Who step ``step_index`` pages now, how, and when the step after it is due."""
        step = policy.steps[step_index]
        targets = self._targets(team, step, now)
        label = f"step {step_index + 1} of {len(policy.steps)}"
        pages = [
            NewPage(engineer=eng.id, number=eng.phones[0], channel=channel)
            for eng in targets
            for channel in self._channels(source, step)
        ]
        notes = list(notes or [])
        if pages:
            who = ", ".join(f"{e.name} ({mask(e.phones[0])})" for e in targets)
            notes.append(TimelineEntry(alert_id=0, at=now, kind="step",
                                       message=f"{label}: {step.via} {step.target} {who}; "
                                       f"times out in {step.timeout_s} s",
                                       data={"step": step_index, "repeat": repeat}))
            next_due = now + step.timeout_s
        else:
            notes.append(TimelineEntry(alert_id=0, at=now, kind="step",
                                       message=f"{label}: nobody is {step.target} on call for team {team}; skipped"))
            next_due = now
        return StepPlan(step=step_index, repeat=repeat, pages=pages, next_due=next_due, notes=notes)

    @staticmethod
    def _channels(source: str, step: PolicyStep) -> tuple[str, ...]:
        if source == "hotline":
            return ("call",)  # a caller is waiting: only a call can connect them
        return ("call", "sms") if step.via == "both" else (step.via,)

    def _targets(self, team_id: str, step: PolicyStep, now: float) -> list[Engineer]:
        engineers = self.config.engineers
        if step.target == "engineer":
            return [engineers[step.engineer]] if step.engineer in engineers else []
        team = self.config.teams.get(team_id)
        if team is None:
            return []
        if step.target == "team":
            return [engineers[m] for m in team.members if m in engineers]
        oncall = who_is_on_call(team, to_datetime(now))
        chosen = oncall.primary if step.target == "primary" else oncall.secondary
        return [engineers[chosen]] if chosen in engineers else []

    def _note(self, alert: Alert, now: float, kind: str, message: str, data: dict | None = None) -> TimelineEntry:
        return TimelineEntry(alert_id=alert.id, at=now, kind=kind, message=message, data=data or {})

    # ----------------------------------------------------------------- pages

    async def send_direct(
        self,
        *,
        message: str,
        channel: str,
        priority: str,
        team: str | None,
        targets: list[tuple[str | None, str]],
        requested_by: str,
    ) -> tuple[Alert, list[Page]]:
        """Page numbers outside any policy (POST /api/v1/calls and /sms): an alert with no escalation,
        so pressing 1 or replying acknowledges it like any other."""
        now = self.clock.now()
        alert, _, _ = await self.store.create_alert(
            NewAlert(
                dedup_key=f"direct-{channel}:{uuid.uuid4().hex}",
                priority=priority,
                source=f"api-{channel}",
                summary=message,
                details={"requested_by": requested_by},
                team=team or "",
                policy="",
                route="direct",
            ),
            now=now,
            escalate_at=None,
            note=f"direct {channel} requested by API token {requested_by}",
        )
        pages = [NewPage(engineer=eng, number=number, channel=channel) for eng, number in targets]
        notes = [self._note(alert, now, "page", f"direct {channel} to {', '.join(mask(n) for _, n in targets)}")]
        created = await self.store.add_pages(alert.id, pages, notes=notes, now=now)
        for page in created:
            await self._send(page, alert)
        return alert, created

    async def _send(self, page: Page, alert: Alert, ring_timeout_s: int = 60) -> None:
        engineer = self.config.engineers.get(page.engineer or "")
        language = engineer.language if engineer else self.config.default_language
        if page.channel == "call":
            flow: Flow[Any]
            if alert.source == "hotline":
                flow = ScreeningFlow(caller=spoken(str(alert.details.get("caller", ""))), language=language)
            else:
                flow = AlertCallFlow(message=self.templates.render("alert_call", alert=alert), language=language)
            await self.dispatcher.submit(
                CallRequest(
                    call_id=call_id_for(page),
                    to=page.number,
                    caller_id=None,
                    flow=flow,
                    ring_timeout_s=ring_timeout_s,
                    priority=alert.priority,
                )
            )
            return
        if self.sms is None:
            await self._finish(page, CallOutcome.FAILED, "no SMS provider configured")
            return
        body = self.templates.render("alert_sms", alert=alert)
        self.spawn(self.send_sms_page(page, body))

    async def send_sms_page(self, page: Page, body: str, *, only_while_open: bool = True) -> None:
        """Send one SMS page; it is marked sent, or finished as failed (which may move escalation on).

        ``only_while_open``: an alert page is not sent once its alert is closed (the send gate makes that
        hold even when the close races the send); a notice about a closed alert (the hotline's missed-call
        text) is sent anyway.
        """
        assert self.sms is not None
        sms_id = call_id_for(page)
        self._sms_gate.begin(sms_id)
        try:
            if only_while_open and (not await self.store.call_wanted(page.id) or self._sms_gate.withdrawn(sms_id)):
                log.info("SMS %s to %s dropped before sending: alert %d is closed", sms_id, mask(page.number),
                         page.alert_id)
                await self._finish(page, CallOutcome.CANCELED, "alert closed; SMS not sent", log_it=False)
                return
            await self.sms.send_sms(SmsRequest(sms_id=sms_id, to=page.number, body=body))
        except ProviderError as exc:
            log.warning("SMS %s to %s failed: %s", sms_id, mask(page.number), exc)
            await self._finish(page, CallOutcome.FAILED, f"SMS not sent: {exc}")
            return
        finally:
            self._sms_gate.end(sms_id)
        await self.store.mark_page_sent(page.id, now=self.clock.now())
        log.info("SMS %s to %s sent for alert %d", sms_id, mask(page.number), page.alert_id)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run side work in the background (kept until done, cancelled on stop)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _call_still_wanted(self, call_id: str) -> bool:
        page_id = page_id_from(call_id)
        return page_id is not None and await self.store.call_wanted(page_id)

    async def _call_placed(self, call_id: str) -> None:
        page_id = page_id_from(call_id)
        if page_id is not None:
            await self.store.mark_page_sent(page_id, now=self.clock.now())

    async def _call_failed(self, call_id: str, reason: str) -> None:
        await self.call_ended(CallResult(call_id=call_id, outcome=CallOutcome.FAILED, detail=reason))

    # --------------------------------------------------------------- outcomes

    async def call_ended(self, event: CallResult) -> None:
        """A provider reports how a call (or an SMS) ended."""
        if event.outcome == CallOutcome.ACCEPTED:
            # An accepted screening call stays up, bridged to the caller: it keeps its line until the
            # hotline call is over (HotlineService releases it then).
            self.dispatcher.keep(event.call_id)
        else:
            await self.dispatcher.finished(event.call_id)
        page_id = page_id_from(event.call_id)
        page = await self.store.get_page(page_id) if page_id is not None else None
        if page is None:
            log.warning("outcome %s for unknown call %s ignored", event.outcome, event.call_id)
            return
        page = await self._finish(page, event.outcome, event.detail)
        if page is None:
            return  # already finished (a replayed callback, or canceled)
        engineer = self.config.engineers.get(page.engineer or "")
        who = engineer.name if engineer else mask(page.number)
        if event.outcome == CallOutcome.ACKNOWLEDGED:
            await self.acknowledge(page.alert_id, by=page.engineer or page.number,
                                   how=f"acknowledged by {who} (pressed 1 on the call)")
            return
        if event.outcome == CallOutcome.ACCEPTED:
            alert = await self.store.get_alert(page.alert_id)
            if alert is not None and self.hotline is not None:
                await self.hotline.accepted(alert, page)
            return
        if event.outcome in _NEGATIVE:
            await self._maybe_move_on(page)

    async def _finish(self, page: Page, outcome: CallOutcome, detail: str, *, log_it: bool = True) -> Page | None:
        engineer = self.config.engineers.get(page.engineer or "")
        who = engineer.name if engineer else mask(page.number)
        text = f"{who} {_OUTCOME_TEXT.get(outcome, outcome.value)}" + (f" ({detail})" if detail else "")
        if page.channel == "sms":
            text = f"SMS to {who}: {outcome.value}" + (f" ({detail})" if detail else "")
        note = TimelineEntry(alert_id=page.alert_id, at=self.clock.now(), kind="page",
                             message=text, data={"page": page.id, "channel": page.channel, "outcome": outcome.value})
        finished = await self.store.finish_page(page.id, outcome=outcome.value, detail=detail,
                                                now=self.clock.now(), note=note)
        if finished is not None and log_it:
            log.info("alert %d: %s", page.alert_id, text)
        return finished

    async def _maybe_move_on(self, page: Page) -> None:
        """When every page of the current step has failed, start the next step now."""
        if page.step is None:
            return
        esc = await self.store.get_escalation(page.alert_id)
        if esc is None or esc.next_due is None:
            return
        if (esc.step - 1, esc.repeat) != (page.step, page.repeat):
            return  # the page belongs to an older step
        siblings = [p for p in await self.store.pages_for(page.alert_id)
                    if (p.step, p.repeat) == (page.step, page.repeat)]
        if all(p.status == "done" and p.outcome in {o.value for o in _NEGATIVE} for p in siblings):
            now = self.clock.now()
            if esc.next_due > now and await self.store.reschedule(
                page.alert_id, expect=esc, next_due=now, now=now,
                note=f"step {page.step + 1}: nobody can take it; moving on now",
            ):
                self.due_at(now)

    # ------------------------------------------------------------ lookups

    def engineer_for_number(self, number: str) -> Engineer | None:
        return self._engineer_by_number.get(number)

