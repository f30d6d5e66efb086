"""How long ``who_is_on_call`` takes for a layered team: `python -m bench.oncall_layers` (a few seconds).

A team of one weekly rotation against three layers (weekdays; a weekend window, Friday 18:00 to Monday 09:00;
a holiday-dates window), in Europe/Berlin: moments moving forward as the scheduler asks, moments in random
order, and one calendar feed's span. Figures only, best of a few rounds; nothing here is a test.
"""

from __future__ import annotations

import os
import random
import timeit
from datetime import UTC, date, datetime, time, timedelta

from gateway import calendar_feed
from gateway.config import Layer, Rotation, Team, TimeWindow, WeeklyRange
from gateway.oncall import who_is_on_call

ZONE = "Europe/Berlin"


def teams() -> tuple[Team, Team]:
    weekly = Rotation(kind="weekly", shift=timedelta(days=7), start=date(2026, 1, 5), handoff=time(9), time_zone=ZONE)
    weekend_rotation = Rotation(kind="weekly", shift=timedelta(days=7), start=date(2026, 1, 2), handoff=time(18),
                                time_zone=ZONE)
    weekends = TimeWindow(name="weekends", time_zone=ZONE, weekly=(
        WeeklyRange(days=frozenset({4}), start=time(18), end=None),
        WeeklyRange(days=frozenset({5, 6}), start=time(0), end=None),
        WeeklyRange(days=frozenset({0}), start=time(0), end=time(9))))
    holidays = TimeWindow(name="holidays", time_zone=ZONE, dates=frozenset({date(2026, 12, 24), date(2026, 12, 25)}))
    one = Team(id="one", members=("alice", "bob", "carol"), rotation=weekly)
    layered = Team(id="layered", members=("alice", "bob", "carol", "dave", "erin", "frank"), rotation=None, layers=(
        Layer(name="weekdays", members=("alice", "bob", "carol"), rotation=weekly),
        Layer(name="weekend", members=("dave", "erin"), rotation=weekend_rotation, when=(weekends,)),
        Layer(name="holidays", members=("frank",), rotation=None, when=(holidays,)),
    ))
    return one, layered


def per_call_us(team: Team, moments: list[datetime]) -> float:
    best = min(timeit.repeat(lambda: [who_is_on_call(team, at) for at in moments], number=1, repeat=5))
    return best / len(moments) * 1e6


def main() -> None:
    one, layered = teams()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(1)
    forward = [start + timedelta(seconds=37 * n) for n in range(2000)]
    scattered = [start + timedelta(minutes=rng.randrange(0, 365 * 24 * 60)) for _ in range(2000)]
    print(f"load average {os.getloadavg()[0]:.1f}")
    for team in (one, layered):
        print(f"{team.id:8}  forward {per_call_us(team, forward):6.1f} us   random order "
              f"{per_call_us(team, scattered):6.1f} us   per who_is_on_call")
    now = datetime(2026, 3, 20, tzinfo=UTC)
    best = min(timeit.repeat(lambda: calendar_feed.feed_stretches([layered], now), number=1, repeat=3))
    print(f"layered   calendar feed span (29 weeks): {best * 1000:.1f} ms")


if __name__ == "__main__":
    main()
