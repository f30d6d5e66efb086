"""Heartbeat monitors: a job checks in (POST /api/v1/heartbeats/{name}) at least every ``interval``; late by
``grace`` after that, an alert is triggered on its route, and the next check-in resolves it.

A heartbeat's deadline is its last check-in + interval + grace; one never seen counts from this gateway's
start (the first deadline is start + interval + grace: a restart never alerts at once). Check-ins are in the
store, so with several gateways each sees the others'; each may find a heartbeat late, and the dedup key
(``heartbeat:<name>``) makes that one alert. Whether a lateness has had its alert is read from the store too
(the key's newest alert), so a restart does not alert again for it. An alert resolved by hand while no check-in
came counts as a fresh start: late again interval + grace after the resolve. The monitor sleeps until the next
deadline or until a check-in here wakes it (a check-in on another gateway moves the deadline on: the monitor
reads them again when it wakes, and sleeps on); while a heartbeat's alert is open, it looks again every interval
(to see it resolved by hand).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from core.clock import Clock, iso, sleep_until_woken
from gateway.alerts import AlertService
from gateway.config import Config, Heartbeat
from gateway.signals import AlertSignal
from gateway.store import Alert, Store

log = logging.getLogger(__name__)

SOURCE = "heartbeat"


def dedup_key(name: str) -> str:
    return f"heartbeat:{name}"


@dataclass(frozen=True, kw_only=True)
class HeartbeatState:
    heartbeat: Heartbeat
    last_seen: float | None
    deadline: float
    state: str  # "ok" | "late" | "never" (no check-in yet, its first deadline not passed)


class Heartbeats:
    def __init__(self, *, config: Config, store: Store, clock: Clock, alerts: AlertService) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.alerts = alerts
        self.started_at = clock.now()
        # heartbeat -> (the check-in a lateness counts from, that lateness's alert id or None): the store is
        # searched by dedup key once per lateness, then the alert is read by id (the search scans old alerts)
        self._lateness: dict[str, tuple[float | None, int | None]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.started_at = self.clock.now()
        if self.config.heartbeats:
            self._task = asyncio.create_task(self._run(), name="heartbeat monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def deadline(self, heartbeat: Heartbeat, last_seen: float | None) -> float:
        base = self.started_at if last_seen is None else last_seen
        return base + heartbeat.interval_s + heartbeat.grace_s

    async def states(self) -> list[HeartbeatState]:
        seen = await self.store.heartbeats_seen()
        now = self.clock.now()
        found = []
        for name, heartbeat in self.config.heartbeats.items():
            last = seen.get(name)
            deadline = self.deadline(heartbeat, last)
            state = "late" if deadline <= now else "never" if last is None else "ok"
            found.append(HeartbeatState(heartbeat=heartbeat, last_seen=last, deadline=deadline, state=state))
        return found

    async def check_in(self, name: str, *, by: str) -> None:
        """Record a check-in (durable) and resolve the heartbeat's open alert, if any. KeyError: no such name."""
        heartbeat = self.config.heartbeats[name]
        now = self.clock.now()
        await self.store.heartbeat_seen(name, now=now)
        self._wake.set()
        late = await self.store.find_open_alert(dedup_key(name))
        if late is not None:
            await self.alerts.resolve(late.id, by=f"heartbeat {heartbeat.name}",
                                      how=f"resolved: heartbeat {heartbeat.name} checked in (token {by})")

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                next_at = await self.check_deadlines()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeats: error while checking deadlines; trying again in 1 s")
                next_at = self.clock.now() + 1
            await sleep_until_woken(self.clock, self._wake, next_at)

    async def check_deadlines(self) -> float:
        """Trigger an alert for each heartbeat late with no alert for this lateness yet; returns when to look next."""
        seen = await self.store.heartbeats_seen()
        now = self.clock.now()
        next_at = math.inf
        for name, heartbeat in self.config.heartbeats.items():
            last = seen.get(name)
            deadline = self.deadline(heartbeat, last)
            if deadline <= now:
                deadline = await self._late(heartbeat, last, deadline, now)
            next_at = min(next_at, deadline)
        return next_at

    async def _late(self, heartbeat: Heartbeat, last: float | None, deadline: float, now: float) -> float:
        """A late heartbeat: trigger its alert unless this lateness (no check-in since ``last``) has one; returns
        when to look at it again.

        The store says whether it has one (not this gateway's memory: a restart, or another gateway, finds the
        same). An alert of this lateness resolved by hand while no check-in came stands for a fresh start: the
        heartbeat is late again interval + grace after that, so a resolve never silences it for good.
        """
        name = heartbeat.name
        latest = await self._alert_of_lateness(name, last)
        if latest is not None:
            if latest.resolved_at is None:
                return now + heartbeat.interval_s  # open: look again (resolved by hand, it counts from then)
            deadline = latest.resolved_at + heartbeat.interval_s + heartbeat.grace_s
            if deadline > now:
                return deadline
        since = f"last check-in {iso(last)}" if last is not None else f"no check-in since {iso(self.started_at)}"
        log.warning("heartbeat %s is late (%s, deadline %s)", name, since, iso(deadline))
        result = await self.alerts.ingest(AlertSignal(
            action="trigger", source=SOURCE, dedup_key=dedup_key(name), summary=heartbeat.summary,
            details={"heartbeat": name, "last_check_in": iso(last), "deadline": iso(deadline),
                     "interval_s": heartbeat.interval_s, "grace_s": heartbeat.grace_s},
            labels=dict(heartbeat.labels), team=heartbeat.team,
            priority=heartbeat.priority.value if heartbeat.priority else None))
        self._lateness[name] = (last, result.alert.id if result.alert is not None else None)
        if result.alert is not None and result.created and (await self.store.heartbeats_seen()).get(name) != last:
            # It checked in while the alert was being written (its check-in found no alert to resolve).
            await self.alerts.resolve(result.alert.id, by=f"heartbeat {name}",
                                      how=f"resolved: heartbeat {name} checked in as it was found late")
        return now + heartbeat.interval_s

    async def _alert_of_lateness(self, name: str, last: float | None) -> Alert | None:
        """The newest alert of the lateness that counts from check-in ``last`` (None: it has had none)."""
        known = self._lateness.get(name)
        if known is not None and known[0] == last:
            return await self.store.get_alert(known[1]) if known[1] is not None else None
        latest = await self.store.latest_alert(dedup_key(name))
        if latest is not None and last is not None and latest.created_at <= last:
            latest = None  # an earlier lateness's, resolved by a check-in
        self._lateness[name] = (last, latest.id if latest is not None else None)
        return latest
