"""Alerts: ingest and dedup, routing, acknowledge, resolve, escalate, raise priority, direct pages.

The top of the services (alerts -> scheduler -> paging): it writes an alert with its first step in one
transaction, hands the pages to paging and tells the scheduler when the next step is due. Errors a
client can cause are domain errors (``gateway.errors``) that the web layer maps to 4xx.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, replace

from core.clock import Clock
from core.enums import AlertStatus, Channel, Priority
from core.phone import mask
from gateway import failpoints
from gateway.config import Config, Route
from gateway.errors import AlertNotFound, Conflict, NoRoute, UnknownTeam
from gateway.maintenance import Maintenance, Verdict
from gateway.page_kinds import PageKinds
from gateway.paging import Paging
from gateway.priority_rules import raising_rule
from gateway.routing import Arrival, Check, select_route
from gateway.scheduler import Scheduler
from gateway.signals import AlertSignal
from gateway.store import Alert, NewAlert, NewPage, Page, Store, TimelineEntry
from gateway.telemetry import Telemetry

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    signal: AlertSignal
    alert: Alert | None  # None: acknowledge/resolve for no open alert
    created: bool = False
    changed: bool = False
    dedup_key: str = ""


class AlertService:
    def __init__(self, *, config: Config, store: Store, clock: Clock, scheduler: Scheduler, paging: Paging,
                 kinds: PageKinds, maintenance: Maintenance | None = None) -> None:
        self.config = config
        self.maintenance = maintenance  # windows that hold alerts or page them at low priority
        self.telemetry: Telemetry = paging.telemetry  # the app's metrics
        self.store = store
        self.clock = clock
        self.scheduler = scheduler
        self.paging = paging
        self.kinds = kinds

    # --------------------------------------------------------------- intake

    async def ingest_all(self, signals: list[AlertSignal]) -> list[IngestResult]:
        """Check that every signal can be routed before storing any, then store each durably.

        Each trigger's route is chosen here, once: the route checked is the route taken, even when a time
        window ends while the batch is being stored."""
        routed: list[tuple[Arrival, Route] | None] = []
        for index, signal in enumerate(signals):
            if signal.action != "trigger":
                routed.append(None)
                continue
            arrival = Arrival.of(signal, self.clock.now())
            try:
                routed.append((arrival, self.route_for(signal, arrival)))
            except UnknownTeam:
                raise
            except LookupError:
                raise NoRoute(index, signal.labels) from None
        return [await self.ingest(signal, route) for signal, route in zip(signals, routed, strict=True)]

    async def ingest(self, signal: AlertSignal, routed: tuple[Arrival, Route] | None = None) -> IngestResult:
        """Act on one signal; a trigger takes ``routed`` (its arrival and route) when they are known already.
        ``IngestResult.dedup_key`` is the key as the sender knows it."""
        public_key = signal.dedup_key or uuid.uuid4().hex
        stored_key = self._stored_key(signal, public_key)
        if signal.action == "trigger":
            return await self._trigger(signal, stored_key, public_key, routed)
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

    def route_for(self, signal: AlertSignal, arrival: Arrival | None = None) -> Route:
        """The route of a trigger; UnknownTeam for a team that does not exist, LookupError for no route."""
        arrival = arrival or Arrival.of(signal, self.clock.now())
        if signal.team is None:
            return select_route(self.config, signal.labels, signal.routing_key, arrival=arrival)
        if signal.team not in self.config.teams:
            raise UnknownTeam(signal.team)
        candidates = [r for r in self.config.routes if r.team == signal.team]
        check = Check(signal.labels, arrival, self.config.time_zone)
        matching = [r for r in candidates if check.holds(r, "route")]
        if matching:
            return matching[0]
        if candidates:
            return candidates[0]
        default = self.config.default_route
        if default is None or default.policy not in self.config.policies:
            raise UnknownTeam(signal.team)
        return Route(name=f"team:{signal.team}", matchers=(), team=signal.team, policy=default.policy,
                     priority=default.priority)

    async def _trigger(self, signal: AlertSignal, dedup_key: str, public_key: str,
                       routed: tuple[Arrival, Route] | None) -> IngestResult:
        now = self.clock.now()
        if routed is None:
            arrival = Arrival.of(signal, now)
            routed = arrival, self.route_for(signal, arrival)
        arrival, route = routed
        priority = Priority(signal.priority or route.priority)
        raised_by = raising_rule(self.config, route, signal.labels, arrival, priority)
        new = NewAlert(
            dedup_key=dedup_key,
            priority=Priority.HIGH if raised_by else priority,
            source=signal.source,
            summary=signal.summary or "(no summary)",
            details=signal.details,
            labels=signal.labels,
            team=route.team,
            policy=route.policy,
            route=route.name,
        )
        verdict = self.maintenance.verdict(new.labels, now) if self.maintenance is not None else None
        if verdict is not None and verdict.hold:
            return await self._held(signal, new, route, verdict, public_key, now,
                                    raised=f" (raised by rule {raised_by.name})" if raised_by else "")
        raised = f"priority raised to high by rule {raised_by.name}" if raised_by else ""
        if verdict is not None:
            new = replace(new, priority=Priority.LOW)  # the window's word is the operator's, for now: it wins
            if raised_by is not None:
                raised = (f"priority rule {raised_by.name} not applied: maintenance window "
                          f"{', '.join(verdict.low_priority)} pages it at low priority")
        policy = self.config.policies[route.policy]
        kind = self.kinds.of_source(new.source)
        first = self.scheduler.plan(team=new.team, policy=policy, kind=kind, step_index=0, repeat=0, now=now)
        if raised:
            first = replace(first, notes=[TimelineEntry(alert_id=0, at=now, kind="priority", message=raised),
                                          *first.notes])
        alert, created, pages = await self.store.create_alert(
            new,
            now=now,
            escalate_at=now,
            note=f"triggered from {signal.source}; route {route.name} -> team {route.team}, "
            f"policy {route.policy}, {new.priority} priority" + (verdict.note() if verdict else ""),
            first_step=first,
        )
        if not created:
            log.info("alert %d: duplicate trigger from %s ignored (dedup key already open)", alert.id, signal.source)
            return IngestResult(signal=signal, alert=alert, created=False, dedup_key=public_key)
        failpoints.reached("alert-committed")
        self.telemetry.alert_created(source=alert.source, route=alert.route)
        # Fast path: step 1 was written with the alert; dial now, the scheduler takes the rest.
        log.info("alert %d triggered from %s (team %s, %s priority): %s",
                 alert.id, signal.source, alert.team, alert.priority, alert.summary)
        for page in pages:
            await self.paging.send(page, alert, ring_s=policy.steps[0].ring_s)
        self.scheduler.due_at(first.next_due)  # the scheduler learns when step 2 is due
        return IngestResult(signal=signal, alert=alert, created=True, dedup_key=public_key)

    # ------------------------------------------------------- status changes

    async def acknowledge(self, alert_id: int, *, by: str, how: str) -> tuple[Alert, bool]:
        return await self._close(alert_id, AlertStatus.ACKNOWLEDGED, by=by, how=how)

    async def resolve(self, alert_id: int, *, by: str, how: str) -> tuple[Alert, bool]:
        return await self._close(alert_id, AlertStatus.RESOLVED, by=by, how=how)

    async def _close(self, alert_id: int, status: AlertStatus, *, by: str, how: str) -> tuple[Alert, bool]:
        result = await self.store.change_status(alert_id, status, now=self.clock.now(), by=by, note=how)
        if result is None:
            raise AlertNotFound(alert_id)
        alert, changed = result
        if changed:
            self.telemetry.alert_changed(status=status.value, source=alert.source, priority=alert.priority.value,
                                         created_at=alert.created_at, now=self.clock.now())
            log.info("alert %d %s: %s", alert.id, status, how)
            await self.paging.cancel_pages(alert.id)
        return alert, changed

    async def raise_priority(self, alert_id: int, *, by: str) -> Alert:
        """Make an alert high priority: its future calls and the ones still queued jump ahead."""
        alert = await self.store.set_priority(alert_id, Priority.HIGH, now=self.clock.now(),
                                              note=f"priority raised to high by {by}")
        if alert is None:
            raise AlertNotFound(alert_id)
        moved = await self.paging.raise_priority(alert_id)
        log.info("alert %d raised to high priority by %s (%d queued call(s) moved up)", alert_id, by, moved)
        return alert

    async def escalate(self, alert_id: int, *, by: str) -> tuple[Alert, bool]:
        """Start the next step now (an operator, an SMS 'esc', a declined call)."""
        alert = await self.store.get_alert(alert_id)
        if alert is None:
            raise AlertNotFound(alert_id)
        esc = await self.store.get_escalation(alert_id)
        if alert.status != AlertStatus.TRIGGERED or esc is None:
            return alert, False
        now = self.clock.now()
        if esc.next_due is None and (esc.step, esc.repeat) == (0, 0) and await self._release_by_hand(alert, by, now):
            return alert, True
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
            self.scheduler.due_at(now)
        return alert, changed

    async def command(self, alert_id: int, action: str, *, by: str, raise_to_high: bool = False,
                      via: str = "API") -> tuple[Alert, bool]:
        """An operator's acknowledge, resolve or escalate (optionally raising the priority first).

        Conflict when it cannot apply: escalating an alert that is not triggered, or acknowledging a
        resolved one. Acknowledging or resolving twice is not a conflict: it answers ``changed: false``.
        """
        if raise_to_high:
            await self.raise_priority(alert_id, by=f"{by} ({via})")
        if action == "acknowledge":
            alert, changed = await self.acknowledge(alert_id, by=by, how=f"acknowledged by {by} ({via})")
        elif action == "resolve":
            alert, changed = await self.resolve(alert_id, by=by, how=f"resolved by {by} ({via})")
        else:
            alert, changed = await self.escalate(alert_id, by=f"{by} ({via})")
        if not changed and ((action != "resolve" and alert.status == AlertStatus.RESOLVED) or action == "escalate"):
            raise Conflict(f"alert {alert_id} is {alert.status}; cannot {action} it", {"status": alert.status})
        return alert, changed

    # ----------------------------------------------------------- direct pages

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
                priority=Priority(priority),
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
        self.telemetry.alert_created(source=alert.source, route=alert.route)
        pages = [NewPage(engineer=eng, number=number, channel=Channel(channel)) for eng, number in targets]
        notes = [TimelineEntry(alert_id=alert.id, at=now, kind="page",
                               message=f"direct {channel} to {', '.join(mask(n) for _, n in targets)}")]
        created = await self.store.add_pages(alert.id, pages, notes=notes, now=now)
        for page in created:
            await self.paging.send(page, alert)
        return alert, created

    # ------------------------------------------------------------ maintenance

    async def _held(self, signal: AlertSignal, new: NewAlert, route: Route, verdict: Verdict, public_key: str,
                    now: float, raised: str = "") -> IngestResult:
        """Record an alert that a maintenance window holds: durable and deduplicated, not paged until then."""
        assert self.maintenance is not None
        alert, created = await self.store.create_held_alert(
            new, now=now, windows=verdict.hold,
            note=f"triggered from {signal.source}; route {route.name} -> team {route.team}, policy {route.policy}, "
                 f"{new.priority} priority{raised}" + verdict.note())
        if not created:
            log.info("alert %d: duplicate trigger from %s ignored (dedup key already open)", alert.id, signal.source)
            return IngestResult(signal=signal, alert=alert, created=False, dedup_key=public_key)
        self.telemetry.alert_created(source=alert.source, route=alert.route)
        log.info("alert %d triggered from %s during maintenance (%s): held, not paged", alert.id, signal.source,
                 ", ".join(w.name for w in verdict.hold))
        self.maintenance.held_until(max(w.until for w in verdict.hold))  # it sleeps until the first hold is over
        return IngestResult(signal=signal, alert=alert, created=True, dedup_key=public_key)

    async def _release_by_hand(self, alert: Alert, by: str, now: float) -> bool:
        """Escalating an alert a maintenance window holds starts its paging now, and the window's end has
        nothing left to release. False: it was not held."""
        if self.maintenance is None or alert.policy not in self.config.policies:
            return False  # a direct page is never held
        if not await self.store.release_hold(alert.id, now=now,
                                             note=f"escalated by {by} during maintenance: paging starts now"):
            return False
        log.info("alert %d escalated by %s during maintenance: paging starts now", alert.id, by)
        self.telemetry.not_timed(alert.id)  # its delay was chosen, not latency
        self.scheduler.due_at(now)
        return True
