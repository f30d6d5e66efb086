"""Maintenance windows: alerts that match one while it is on are recorded but not paged (``suppress``), or
paged at low priority (``low_priority``); held alerts still open when their windows end start paging then.

Windows come from the YAML (one-off, or recurring through named time windows) and from the API (one-off,
stored, may be ended early). An alert is matched on its labels when it arrives, against every window on at
that moment (``verdict``: in memory, no query on the intake path). A held alert is written with its hold in
one transaction and no escalation due (``Store.create_held_alert``); this service sleeps until the first
hold's windows are over (or until woken by a change), then releases it: the hold's row is deleted and the
escalation starts now, in one transaction, so whichever gateway deletes the row releases it, once. At start
it looks at once: windows that ended while the gateway was down release their alerts.

With several gateways on one PostgreSQL, a window added or ended, and every new hold, is pushed to every
gateway (``{"maintenance": ...}`` on channel 'gateway'); each reads the run-time windows again and looks. Each
also does so every ``REFRESH_S``, whatever the pushes said (a push can be lost), as overrides do.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.clock import Clock, iso, sleep_until_woken, to_datetime
from core.enums import AlertStatus, Priority
from gateway.config import Config, MaintenanceWindow, Matcher, TimeWindow
from gateway.refresh import read_again_every
from gateway.routing import matches, parse_matcher
from gateway.store import Hold, HoldWindow, NewMaintenance, Store, StoredMaintenance
from gateway.time_windows import HORIZON, contains, next_change

log = logging.getLogger(__name__)

SUPPRESS, LOW_PRIORITY = "suppress", "low_priority"
ACTIONS = (SUPPRESS, LOW_PRIORITY)
REFRESH_S = 60.0  # the run-time windows are read again (and the holds looked at) this often, whatever the pushes said


@dataclass(frozen=True, kw_only=True)
class WindowState:
    """One window as it stands at a moment: for the API's listing and for matching alerts."""

    key: str  # config:<name> | api:<id>
    name: str
    source: str  # "config" | "api"
    matchers: tuple[Matcher, ...]
    matcher_texts: tuple[str, ...]
    action: str
    comment: str
    state: str  # "active" | "upcoming" | "ended"
    start: float | None  # this or the next occurrence (None: a recurring window that never starts again)
    end: float | None  # when it ends (ended: when it did)
    recurring: bool = False
    stored: StoredMaintenance | None = None


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """What maintenance makes of an arriving alert."""

    hold: tuple[HoldWindow, ...] = ()  # the suppressing windows on now: hold it until they are all over
    low_priority: tuple[str, ...] = ()  # names of the low_priority windows on now

    def note(self) -> str:
        if self.hold:
            until = max(w.until for w in self.hold)
            return (f"; held by maintenance window {_names(self.hold)} until {iso(until)}: not paged now, "
                    "paged then if still open")
        if self.low_priority:
            return f"; low priority: maintenance window {', '.join(self.low_priority)}"
        return ""


def _names(windows: tuple[HoldWindow, ...]) -> str:
    return ", ".join(w.name for w in windows)


def _matcher_text(matcher: Matcher) -> str:
    escaped = matcher.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{matcher.label}{matcher.op}"{escaped}"'


def recurring_end(during: tuple[TimeWindow, ...], at: datetime) -> datetime | None:
    """The first moment at or after ``at`` when none of ``during`` contains it (None: not within HORIZON)."""
    moment = at
    for _ in range(64):
        inside = [window for window in during if contains(window, moment)]
        if not inside:
            return moment
        ends = [next_change(window, moment) for window in inside]
        if any(end is None for end in ends):
            return None
        moment = max(end for end in ends if end is not None)
    return None


def _recurring_start(during: tuple[TimeWindow, ...], at: datetime) -> datetime | None:
    starts = [change for window in during if (change := next_change(window, at)) is not None]
    return min(starts) if starts else None


def config_state(window: MaintenanceWindow, now: float) -> WindowState:
    def made(state: str, start: float | None, end: float | None) -> WindowState:
        return WindowState(key=f"config:{window.name}", name=window.name, source="config", matchers=window.matchers,
                           matcher_texts=tuple(_matcher_text(m) for m in window.matchers), action=window.action,
                           comment=window.comment, state=state, start=start, end=end, recurring=bool(window.during))

    if window.during:
        at = to_datetime(now)
        if any(contains(item, at) for item in window.during):
            end = recurring_end(window.during, at)
            return made("active", None, end.timestamp() if end else now + HORIZON.total_seconds())
        start = _recurring_start(window.during, at)
        if start is None:
            return made("ended", None, None)
        end = recurring_end(window.during, start)
        return made("upcoming", start.timestamp(), end.timestamp() if end else None)
    assert window.start is not None and window.end is not None
    start_s, end_s = window.start.timestamp(), window.end.timestamp()
    return made("upcoming" if now < start_s else "active" if now < end_s else "ended", start_s, end_s)


def _end(window: StoredMaintenance) -> float:
    """When a run-time window ends (or ended early)."""
    return window.end if window.ended_at is None else min(window.end, window.ended_at)


def stored_state(window: StoredMaintenance, matchers: tuple[Matcher, ...], now: float) -> WindowState:
    end = _end(window)
    state = "ended" if now >= end else "upcoming" if now < window.start else "active"
    return WindowState(key=f"api:{window.id}", name=f"maintenance {window.id}", source="api", matchers=matchers,
                       matcher_texts=window.matchers, action=window.action, comment=window.comment, state=state,
                       start=window.start, end=end, stored=window)


@dataclass(frozen=True, kw_only=True)
class _OnNow:
    """A window on at some moment, as an arriving alert is matched against it."""

    key: str
    name: str
    action: str
    matchers: tuple[Matcher, ...]
    end: float | None  # None: recurring, worked out only when it matches
    recurring: MaintenanceWindow | None = None


class Maintenance:
    def __init__(self, *, config: Config, store: Store, clock: Clock, due_at: Callable[[float], None],
                 released: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.due_at = due_at  # the scheduler: a released alert's escalation is due now
        self.released = released  # told each alert released here (telemetry: its first call is not timed)
        self._stored: dict[int, tuple[StoredMaintenance, tuple[Matcher, ...]]] = {}
        # The run-time windows not over when last read (a window never comes back once over): the ones an
        # arriving alert is matched against, however many ended windows the store keeps on record.
        self._live: list[tuple[StoredMaintenance, tuple[Matcher, ...]]] = []
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._planned_wake = math.inf  # when the release loop looks next on its own (inf: not before woken)
        self._task: asyncio.Task[None] | None = None
        self._refresh: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ windows

    async def load(self) -> None:
        """Read the run-time windows again (at start, after a change here or a push from another gateway)."""
        async with self._lock:
            loaded: dict[int, tuple[StoredMaintenance, tuple[Matcher, ...]]] = {}
            for window in await self.store.list_maintenance():
                try:
                    loaded[window.id] = (window, tuple(parse_matcher(text) for text in window.matchers))
                except ValueError as exc:  # checked when added; never silently match everything
                    log.error("maintenance %d ignored: %s", window.id, exc)
            self._stored = loaded
            now = self.clock.now()
            self._live = [(window, matchers) for window, matchers in loaded.values() if _end(window) > now]

    def windows(self, now: float) -> list[WindowState]:
        """Every window: the YAML's first, then the run-time ones oldest first."""
        found = [config_state(window, now) for window in self.config.maintenance]
        found += [stored_state(window, matchers, now) for window, matchers in self._stored.values()]
        return found

    async def held_alerts(self) -> dict[str, list[int]]:
        """The alerts each window holds now, by the window's key (config:<name> or api:<id>)."""
        held: dict[str, list[int]] = {}
        for hold in await self.store.list_holds():
            for window in hold.windows:
                held.setdefault(window.key, []).append(hold.alert_id)
        return held

    def stored(self, window_id: int) -> StoredMaintenance | None:
        item = self._stored.get(window_id)
        return item[0] if item else None

    def verdict(self, labels: dict[str, str], now: float) -> Verdict | None:
        """What the windows on at ``now`` make of an alert with ``labels`` (None: none matches). Matchers are
        checked first: a recurring window's end is worked out only for an alert it matches."""
        hold: list[HoldWindow] = []
        low: list[str] = []
        for window in self._on(now):
            if not all(matches(m, labels) for m in window.matchers):
                continue
            if window.action != SUPPRESS:
                low.append(window.name)
                continue
            end = window.end
            if end is None and window.recurring is not None:
                end = config_state(window.recurring, now).end
            hold.append(HoldWindow(key=window.key, name=window.name, until=end if end is not None else now))
        return Verdict(hold=tuple(hold), low_priority=tuple(low)) if hold or low else None

    def _on(self, now: float) -> list[_OnNow]:
        at = to_datetime(now)
        found = []
        for window in self.config.maintenance:
            key = f"config:{window.name}"
            if window.during:
                if any(contains(item, at) for item in window.during):
                    found.append(_OnNow(key=key, name=window.name, action=window.action, matchers=window.matchers,
                                        end=None, recurring=window))
            elif window.start is not None and window.end is not None and \
                    window.start.timestamp() <= now < window.end.timestamp():
                found.append(_OnNow(key=key, name=window.name, action=window.action, matchers=window.matchers,
                                    end=window.end.timestamp()))
        for stored, matchers in self._live:
            if stored.start <= now < _end(stored):
                found.append(_OnNow(key=f"api:{stored.id}", name=f"maintenance {stored.id}", action=stored.action,
                                    matchers=matchers, end=_end(stored)))
        return found

    async def add(self, new: NewMaintenance, *, now: float) -> StoredMaintenance:
        added = await self.store.add_maintenance(new, now=now)
        await self.load()
        log.info("maintenance %d added by %s (%s, %s): %s from %s to %s", added.id, added.created_by, added.action,
                 ", ".join(added.matchers), added.comment or "no comment", iso(added.start), iso(added.end))
        self.poke()
        return added

    async def end(self, window_id: int, *, by: str, now: float) -> StoredMaintenance | None:
        ended = await self.store.end_maintenance(window_id, by=by, now=now)
        if ended is not None:
            await self.load()
            log.info("maintenance %d ended early by %s", window_id, by)
            self.poke()
        return ended

    async def changed_elsewhere(self) -> None:
        """Another gateway added or ended a window, or held an alert: read again and look."""
        await self.load()
        self.poke()

    # ------------------------------------------------------------ releasing

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="maintenance releases")
        self._refresh = asyncio.create_task(self._keep_fresh(), name="maintenance refresh")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, self._refresh) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = self._refresh = None

    async def _keep_fresh(self) -> None:
        """Read the run-time windows again and look at the holds every ``REFRESH_S``: a safety net for a push
        from another gateway that was lost (a window added or ended, an alert held there); until cancelled."""
        await read_again_every(REFRESH_S, self.changed_elsewhere, what="maintenance windows",
                               sleep=lambda seconds: self.clock.sleep_until(self.clock.now() + seconds))

    def poke(self) -> None:
        """Look at the holds again now (a window changed)."""
        self._wake.set()

    def held_until(self, when: float) -> None:
        """An alert was held until ``when`` (here or on another gateway): look again then if not sooner anyway
        (an alert storm during maintenance does not make the holds be read once per alert)."""
        if when < self._planned_wake:
            self._wake.set()

    def until(self, hold: Hold, now: float) -> float:
        """When ``hold``'s windows are all over, as known now: an API window may have ended early, a YAML one
        may have been made to end sooner (or taken out) before a restart. Never later than the hold's note said."""
        configured = {window.name: window for window in self.config.maintenance}
        ends = []
        for window in hold.windows:
            source, _, ident = window.key.partition(":")
            end = window.until
            if source == "api" and ident.isdigit() and (found := self.stored(int(ident))) is not None:
                end = min(end, found.ended_at) if found.ended_at is not None else end
            elif source == "config":
                yaml = configured.get(ident)
                if yaml is None:
                    end = min(end, now)  # taken out of the YAML since
                elif yaml.end is not None:
                    end = min(end, yaml.end.timestamp())  # a one-off window's end changed since
            ends.append(end)
        return max(ends, default=now)

    async def _run(self) -> None:
        while True:
            self._planned_wake = -math.inf  # while it looks, any news makes it look again
            self._wake.clear()
            try:
                next_at = await self.release_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("maintenance: error while releasing held alerts; trying again in 1 s")
                next_at = self.clock.now() + 1
            self._planned_wake = next_at
            await self._sleep(next_at)

    async def _sleep(self, until: float) -> None:
        await sleep_until_woken(self.clock, self._wake, until)

    async def release_due(self) -> float:
        """Release every hold whose windows are over; returns when the next one is (inf: none held)."""
        now = self.clock.now()
        next_at = math.inf
        for hold in await self.store.list_holds():
            until = self.until(hold, now)
            if until <= now:
                until = await self._held_on(hold, now)
            if until > now:
                next_at = min(next_at, until)
                continue
            note = f"maintenance over (window {self._how_ended(hold)}): paging starts now"
            if await self.store.release_hold(hold.alert_id, now=now, note=note):
                log.info("alert %d: maintenance window %s ended; paging starts now", hold.alert_id,
                         _names(hold.windows))
                if self.released is not None:
                    self.released(hold.alert_id)
                self.due_at(now)
        return next_at

    async def _held_on(self, hold: Hold, now: float) -> float:
        """A hold whose windows are over: when the windows on now that match its alert are (a window added
        meanwhile, for work that overran), written on the hold; ``now`` when none is, or the alert is closed.
        Released while a low_priority window that matches it is on, it pages at low priority."""
        alert = await self.store.get_alert(hold.alert_id)
        verdict = self.verdict(alert.labels, now) if alert is not None and alert.status == AlertStatus.TRIGGERED \
            else None
        if verdict is None or not verdict.hold:
            if verdict is not None and verdict.low_priority:
                await self.store.set_priority(hold.alert_id, Priority.LOW, now=now, note=(
                    f"low priority: maintenance window {', '.join(verdict.low_priority)}"))
            return now
        on = Hold(alert_id=hold.alert_id, windows=verdict.hold, held_at=hold.held_at)
        until = self.until(on, now)
        if until > now:
            if {w.key for w in verdict.hold} == {w.key for w in hold.windows}:
                note = f"maintenance window {_names(verdict.hold)} runs longer now: still held until {iso(until)}"
            else:
                note = (f"maintenance window {self._how_ended(hold)}; still held by maintenance window "
                        f"{_names(verdict.hold)} until {iso(until)}")
            if await self.store.extend_hold(hold.alert_id, expect=hold.windows, windows=verdict.hold, now=now,
                                            note=note):
                log.info("alert %d: maintenance window %s ended; still held by %s", hold.alert_id,
                         _names(hold.windows), _names(verdict.hold))
        return until  # (not extended: released or held on elsewhere meanwhile; the next look reads it again)

    def _how_ended(self, hold: Hold) -> str:
        """``db-upgrade ended``, or ``maintenance 3 ended early by ops`` (for the alert's timeline)."""
        parts = []
        for window in hold.windows:
            source, _, ident = window.key.partition(":")
            found = self.stored(int(ident)) if source == "api" and ident.isdigit() else None
            if found is not None and found.ended_at is not None and found.ended_at < window.until:
                parts.append(f"{window.name} ended early by {found.ended_by}")
            else:
                parts.append(f"{window.name} ended")
        return ", ".join(parts)
