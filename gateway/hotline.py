"""The hotline: a caller waits in a queue while engineers are screened one by one.

Each hotline call is stored as an alert (source "hotline") so it has the same
durable escalation, pages and timeline as any alert: the policy's steps call
engineers with the screening flow instead of the alert flow. The first
engineer who presses 1 acknowledges it and is bridged to the caller; when the
policy runs out the caller is offered voicemail and the team gets an SMS.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.clock import Clock
from core.enums import AlertStatus, Channel, Priority
from core.phone import mask, spoken
from gateway.alerts import AlertService
from gateway.config import Config, PolicyStep, Team
from gateway.paging import Paging, call_id_for
from gateway.store import Alert, NewAlert, NewPage, Page, Store, TimelineEntry
from gateway.templates import Templates
from ivr_flows.hotline import HotlineCallerFlow
from ivr_flows.model import EngineerConnected, Flow, FlowOutcome, NobodyAccepted
from ivr_flows.screening import ScreeningFlow
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    InboundCall,
    VoiceProvider,
)

log = logging.getLogger(__name__)

SOURCE = "hotline"  # the source of every hotline call's alert


def hotline_key(call_id: str) -> str:
    return f"hotline:{call_id}"


def _waited_for(outcome: FlowOutcome) -> str:
    """How a hotline caller's wait ended, for ``gateway_hotline_wait_seconds`` (a bounded label)."""
    return {FlowOutcome.CONNECTED: "connected", FlowOutcome.VOICEMAIL: "voicemail",
            FlowOutcome.NO_ANSWER: "missed"}.get(outcome, "hung_up")


class ScreeningKind:
    """The pages of a hotline call: "call from ..., press 1 to accept", by call only (a caller waits)."""

    def __init__(self, accepted: Callable[[Alert, Page], Awaitable[None]],
                 exhausted: Callable[[Alert], Awaitable[None]]) -> None:
        self._accepted = accepted
        self._exhausted = exhausted

    def flow(self, alert: Alert, page: Page, language: str) -> Flow[Any]:
        return ScreeningFlow(caller=spoken(str(alert.details.get("caller", ""))), language=language)

    def channels(self, step: PolicyStep) -> tuple[Channel, ...]:
        return (Channel.CALL,)  # only a call can connect the caller

    async def answered(self, alert: Alert, page: Page, outcome: CallOutcome, who: str) -> None:
        if outcome == CallOutcome.ACCEPTED:
            await self._accepted(alert, page)

    async def exhausted(self, alert: Alert) -> None:
        await self._exhausted(alert)


class HotlineService:
    """Beside the alert service: a hotline call is an alert whose pages screen engineers for the caller."""

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        clock: Clock,
        alerts: AlertService,
        paging: Paging,
        templates: Templates,
        voice: VoiceProvider,
        due_at: Callable[[float], None],
        teams: Callable[[str], Team | None] | None = None,
    ) -> None:
        self.config = config
        # A team as it stands now (gateway.overrides.Schedule.team: a directory team with its members)
        self.teams = teams if teams is not None else config.teams.get
        self.store = store
        self.clock = clock
        self.alerts = alerts
        self.paging = paging
        self.templates = templates
        self.voice = voice
        self.telemetry = paging.telemetry  # the app's metrics
        self._due_at = due_at
        self._by_number = {h.number: h for h in config.hotlines}
        self._by_name = {h.name: h for h in config.hotlines}
        self.page_kind = ScreeningKind(self.accepted, self.exhausted)

    # ---------------------------------------------------------- the caller

    async def inbound_call(self, call: InboundCall) -> Flow[Any] | None:
        hotline = self._by_number.get(call.dialled)
        if hotline is None:
            log.warning("call %s to %s: not a hotline number; ending it", call.call_id, mask(call.dialled))
            return None
        now = self.clock.now()
        alert, created, _ = await self.store.create_alert(
            NewAlert(
                dedup_key=hotline_key(call.call_id),
                priority=Priority(hotline.priority),
                source=SOURCE,
                summary=f"Hotline call from {spoken(call.caller)}",
                details={"caller": call.caller, "hotline": hotline.name, "call_id": call.call_id},
                labels={"hotline": hotline.name},
                team=hotline.team,
                policy=hotline.policy,
                route=f"hotline:{hotline.name}",
            ),
            now=now,
            escalate_at=None,  # engineers are tried once the caller waits on hold
            note=f"call from {mask(call.caller) if call.caller else 'a withheld number'} on hotline {hotline.name}",
        )
        if created:
            self.telemetry.alert_created(source=alert.source, route=alert.route)
        log.info("hotline %s: call %s from %s (alert %d)", hotline.name, call.call_id,
                 mask(call.caller) if call.caller else "withheld number", alert.id)
        greeting = self.templates.render_string(hotline.greeting, hotline=hotline.name, team=hotline.team)
        return HotlineCallerFlow(
            greeting=greeting,
            language=self.config.default_language,
            priority_menu=hotline.priority_menu,
            default_priority=hotline.priority,
            voicemail=hotline.voicemail,
            max_voicemail_s=hotline.max_voicemail_s,
        )

    async def caller_waiting(self, event: CallerWaiting) -> None:
        alert = await self.store.find_open_alert(hotline_key(event.call_id))
        if alert is None:
            log.warning("hotline call %s is waiting but has no open record; ignored", event.call_id)
            return
        now = self.clock.now()
        started = await self.store.begin_escalation(
            alert.id, priority=event.priority, now=now,
            note=f"caller waiting in the {event.priority}-priority queue; trying engineers",
        )
        if started:
            hotline = str(alert.details.get("hotline", ""))
            self.telemetry.caller_waiting(event.call_id, hotline=hotline, alert_id=alert.id,
                                          arrived_at=alert.created_at, gone_by=now + self._longest_wait_s(hotline))
            log.info("hotline call %s (alert %d) waiting, %s priority", event.call_id, alert.id, event.priority)
            self._due_at(now)

    def _longest_wait_s(self, hotline_name: str) -> float:
        """Longer than any caller of the hotline can wait: its policy run to the end (every step, every
        repeat), twice over, and an hour more (queues, a voicemail)."""
        hotline = self._by_name.get(hotline_name)
        policy = self.config.policies.get(hotline.policy) if hotline is not None else None
        steps = sum(step.timeout_s + step.ring_s for step in policy.steps) * (policy.repeat + 1) if policy else 0
        return 2.0 * steps + 3600.0

    async def caller_finished(self, event: CallerFinished) -> None:
        alert = await self.store.find_open_alert(hotline_key(event.call_id))
        if alert is None:
            self.telemetry.caller_done(event.call_id, outcome=_waited_for(event.outcome), now=self.clock.now())
            log.info("hotline call %s ended (%s)", event.call_id, event.outcome.value)
            return
        pages = await self.store.pages_for(alert.id)
        for page in pages:
            if page.outcome == "accepted":
                # The engineer's leg ends with the caller's (normally the bridge ends both; if the caller
                # left before the bridge, the engineer must not wait alone): hang up, free its line.
                await self.paging.hang_up(call_id_for(page))
        waited = int(self.clock.now() - alert.created_at)
        escalation = await self.store.get_escalation(alert.id)
        # The policy ran out: nobody accepted, whatever the provider reports about how the call ended.
        missed = alert.status == AlertStatus.TRIGGERED and bool(pages) and escalation is not None \
            and escalation.next_due is None
        if event.outcome == FlowOutcome.VOICEMAIL:
            await self._tell_team(alert, waited, event.recording_url)
            how = f"caller left a voicemail ({event.recording_url}) after {waited} s"
        elif event.outcome == FlowOutcome.CONNECTED:
            engineer = self.paging.engineer(alert.acknowledged_by or "")
            how = f"call over; the caller was connected to {engineer.name if engineer else alert.acknowledged_by}"
        elif event.outcome == FlowOutcome.NO_ANSWER or missed:
            await self._tell_team(alert, waited, None)
            how = f"nobody accepted; the caller hung up or was told so after {waited} s, without a voicemail"
        else:
            how = f"caller hung up after {waited} s"
        self.telemetry.caller_done(event.call_id, now=alert.acknowledged_at or self.clock.now(),
                                   outcome="missed" if missed and event.outcome not in (
                                       FlowOutcome.VOICEMAIL, FlowOutcome.CONNECTED) else _waited_for(event.outcome))
        await self.alerts.resolve(alert.id, by="hotline", how=how)

    async def caller_lost_with_gateway(self, alert_id: int, gateway_id: str) -> None:
        """A hotline caller's call ran on a gateway that died (a provider whose calls end with it): the caller
        is gone from here (the dialplan may have sent them to another gateway, as a new call)."""
        alert = await self.store.get_alert(alert_id)
        if alert is None or alert.source != SOURCE or not alert.is_open:
            return
        for page in await self.store.pages_for(alert.id):
            if page.outcome == "accepted":
                await self.paging.hang_up(call_id_for(page))
        await self.alerts.resolve(alert.id, by="hotline", how=f"the caller's gateway {gateway_id} stopped; "
                                  "the caller's call ended with it")

    # --------------------------------------------------------- the engineers

    async def accepted(self, alert: Alert, page: Page) -> None:
        """An engineer pressed 1 on the screening call: connect them, or tell them they are late."""
        engineer = self.paging.engineer(page.engineer or "")
        name = engineer.name if engineer else mask(page.number)
        waited = int(self.clock.now() - alert.created_at)
        _, changed = await self.alerts.acknowledge(
            alert.id, by=page.engineer or page.number, how=f"accepted by {name}; the caller waited {waited} s"
        )
        if not changed:
            log.info("alert %d: %s accepted, but the call was already taken or over; hanging up", alert.id, name)
            await self.store.add_timeline(TimelineEntry(alert_id=alert.id, at=self.clock.now(), kind="page",
                                                        message=f"{name} accepted too late; hung up"))
            await self.paging.hang_up(call_id_for(page))
            return
        caller_call = str(alert.details.get("call_id", ""))
        self.telemetry.caller_done(caller_call, outcome="connected", now=self.clock.now())
        log.info("hotline alert %d: connecting the caller to %s", alert.id, name)
        await self.voice.notify(caller_call, EngineerConnected(engineer_name=name, call_id=call_id_for(page)))

    async def exhausted(self, alert: Alert) -> None:
        log.warning("hotline alert %d: nobody accepted; offering the caller voicemail", alert.id)
        await self.voice.notify(str(alert.details.get("call_id", "")), NobodyAccepted())

    async def _tell_team(self, alert: Alert, waited: int, recording_url: str | None) -> None:
        hotline = self._by_name.get(str(alert.details.get("hotline", "")))
        team = self.teams(alert.team)
        if self.paging.sms is None or team is None or hotline is None:
            log.warning("hotline alert %d: no SMS provider or team; the team is not texted", alert.id)
            return
        template = "hotline_voicemail_sms" if recording_url else "hotline_missed_sms"
        body = self.templates.render(template, alert=alert, hotline=hotline.name, waited=waited,
                                     caller=spoken(str(alert.details.get("caller", ""))),
                                     recording_url=recording_url or "")
        members = [e for e in map(self.paging.engineer, team.members) if e is not None]
        now = self.clock.now()
        pages = await self.store.add_pages(
            alert.id,
            [NewPage(engineer=e.id, number=e.phones[0], channel=Channel.SMS) for e in members],
            notes=[TimelineEntry(alert_id=alert.id, at=now, kind="page",
                                 message=f"texting team {team.id} about the missed call")],
            now=now,
        )
        for page in pages:  # in the background: this may run inside a provider's webhook
            self.paging.spawn(self.paging.send_sms_page(page, body, only_while_open=False))
