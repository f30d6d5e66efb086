"""Whether a moment lies in a named time window (business hours, nights, weekends, holidays), and when
that next changes. Windows are read in their own zone's wall time, so 09:00-17:00 stays 09:00-17:00
across DST changes; routes, maintenance windows and schedule layers all use them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

from gateway.config import TimeWindow, WeeklyRange

#: how far ahead next_change looks before it says "never" (a little over a year: yearly holiday lists)
HORIZON = timedelta(days=400)
_MIDNIGHT = time(0)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _in_range(item: WeeklyRange, local: datetime) -> bool:
    clock, day = local.time(), local.weekday()
    if item.end is not None and item.end <= item.start:  # past midnight: started today or yesterday
        return (day in item.days and clock >= item.start) or ((day - 1) % 7 in item.days and clock < item.end)
    return day in item.days and clock >= item.start and (item.end is None or clock < item.end)


def contains(window: TimeWindow, at: datetime) -> bool:
    """Whether ``at`` (aware) lies inside ``window``."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("time windows need an aware datetime")
    if window.negated is not None:
        return not contains(window.negated, at)
    local = at.astimezone(_zone(window.time_zone))
    if local.date() in window.except_dates:
        return False
    inside = local.date() in window.dates or any(_in_range(item, local) for item in window.weekly)
    return inside and not any(contains(other, at) for other in window.excluded)


def _clock_times(window: TimeWindow) -> set[tuple[str, time]]:
    """Every (zone, wall-clock time) at which ``window``, or a window it refers to, can change."""
    found = {(window.time_zone, _MIDNIGHT)}
    for item in window.weekly:
        found.add((window.time_zone, item.start))
        found.add((window.time_zone, item.end or _MIDNIGHT))
    for other in (*window.excluded, *([window.negated] if window.negated else [])):
        found |= _clock_times(other)
    return found


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The first instant at or after the wall time ``day clock`` in ``zone`` (the end of a DST gap
    for a wall time that does not exist that day)."""
    early = datetime.combine(day, clock, tzinfo=zone)
    if early.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == early.replace(tzinfo=None):
        return early.astimezone(UTC)
    # A skipped wall time: the offset changes between the two readings; find that instant.
    low = early.replace(fold=1).astimezone(UTC)
    high = early.astimezone(UTC)
    if high < low:
        low, high = high, low
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


@lru_cache(maxsize=4096)
def _shifts(name: str, first: date, count: int) -> tuple[datetime, ...]:
    """The instants within ``count`` UTC days from ``first`` at which the offset of zone ``name`` changes (at
    most one a day is found).

    When the clocks go back, the wall time steps back there (to the previous day, in a zone that changes at
    midnight) and the wall times of the repeated stretch come twice: a window can change at that instant, and
    at the second passing of its edges."""
    zone = _zone(name)
    found = []
    edges = [datetime.combine(first + timedelta(days=n), _MIDNIGHT, tzinfo=UTC) for n in range(count + 1)]
    offsets = [edge.astimezone(zone).utcoffset() for edge in edges]
    for (low, high), (before, after) in zip(pairwise(edges), pairwise(offsets), strict=True):
        if after == before:
            continue
        while high - low > timedelta(seconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(zone).utcoffset() == before:
                low = middle
            else:
                high = middle
        found.append(high.replace(microsecond=0))
    return tuple(found)


def _second_passing(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The later instant of a wall time that comes twice (the clocks went back), else the only one."""
    late = datetime.combine(day, clock, tzinfo=zone).replace(fold=1)
    if late.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == late.replace(tzinfo=None, fold=0):
        return late.astimezone(UTC)
    return _instant(day, clock, zone)


def next_change(window: TimeWindow, at: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first moment after ``at`` at which ``contains`` gives another answer (UTC), or None when it
    does not change within ``horizon``."""
    at = at.astimezone(UTC)
    now_inside = contains(window, at)
    times = _clock_times(window)
    zones = {zone for zone, _ in times}
    week = timedelta(days=7)
    start = datetime.combine(at.date(), _MIDNIGHT, tzinfo=UTC)
    while start <= at + horizon:
        # Wall times of the days around this week (zones lie within a day of UTC), taken in UTC order; in a
        # zone whose clocks change meanwhile, also the change itself and the second passing of each wall time.
        days = [start.date() + timedelta(days=offset) for offset in range(-1, 9)]
        found = {_instant(day, clock, _zone(zone)) for day in days for zone, clock in times}
        for name in zones:
            shifts = _shifts(name, days[0], len(days))
            if shifts:
                found.update(shifts)
                found.update(_second_passing(day, clock, _zone(name)) for day in days for zone, clock in times
                             if zone == name)
        candidates = sorted(found)
        for moment in candidates:
            if at < moment < start + week and moment >= start and contains(window, moment) != now_inside:
                return moment
        start += week
    return None
