"""Time windows: wall time in the window's own zone, across DST changes, holidays, negation, and their config."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, TimeWindow, WeeklyRange, load_config
from gateway.time_windows import contains, next_change

AMS = "Europe/Amsterdam"
WEEKDAYS = frozenset(range(5))
BUSINESS = TimeWindow(name="business", time_zone=AMS, weekly=(WeeklyRange(days=WEEKDAYS, start=time(9), end=time(17)),),
                      except_dates=frozenset({date(2026, 12, 25)}))
NIGHTS = TimeWindow(name="nights", time_zone=AMS, weekly=(WeeklyRange(days=frozenset(range(7)), start=time(22),
                                                                       end=time(6)),))
AFTER_HOURS = TimeWindow(name="after_hours", time_zone=AMS, negated=BUSINESS)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("at", "business", "nights"),
    [
        (utc(2026, 3, 24, 13, 0), True, False),  # Tuesday 14:00 CET
        (utc(2026, 3, 24, 7, 59), False, False),  # Tuesday 08:59 CET
        (utc(2026, 3, 24, 8, 0), True, False),  # 09:00 CET: the start is inside
        (utc(2026, 3, 24, 16, 0), False, False),  # 17:00 CET: the end is outside
        (utc(2026, 3, 29, 1, 0), False, True),  # Sunday 03:00 CEST, the night the clocks go forward
        (utc(2026, 3, 31, 7, 30), True, False),  # Tuesday 09:30 CEST: business hours follow the wall clock
        (utc(2026, 10, 25, 0, 30), False, True),  # 02:30 CEST, before the clocks go back
        (utc(2026, 10, 25, 1, 30), False, True),  # 02:30 CET, the repeated hour
        (utc(2026, 12, 25, 10, 0), False, False),  # a Friday that is a holiday
        (utc(2026, 3, 28, 12, 0), False, False),  # Saturday noon
    ],
)
def test_contains_reads_the_wall_clock_of_the_windows_zone(at: datetime, business: bool, nights: bool) -> None:
    assert contains(BUSINESS, at) is business
    assert contains(NIGHTS, at) is nights
    assert contains(AFTER_HOURS, at) is not business


def test_an_unaware_moment_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        contains(BUSINESS, datetime(2026, 3, 24, 13))


@pytest.mark.parametrize(
    ("window", "at", "expected"),
    [
        (BUSINESS, utc(2026, 3, 24, 13, 0), utc(2026, 3, 24, 16, 0)),
        (BUSINESS, utc(2026, 3, 27, 16, 0), utc(2026, 3, 30, 7, 0)),  # Friday CET -> Monday 09:00 CEST
        (BUSINESS, utc(2026, 12, 24, 16, 0), utc(2026, 12, 28, 8, 0)),  # over the holiday and the weekend
        (NIGHTS, utc(2026, 10, 24, 22, 0), utc(2026, 10, 25, 5, 0)),  # the longer night ends at 06:00 CET
        (AFTER_HOURS, utc(2026, 3, 24, 13, 0), utc(2026, 3, 24, 16, 0)),
    ],
)
def test_next_change(window: TimeWindow, at: datetime, expected: datetime) -> None:
    assert next_change(window, at) == expected
    before = expected - timedelta(seconds=1)
    assert contains(window, before) == contains(window, at) != contains(window, expected)


def test_a_start_that_the_clocks_skip_begins_when_the_gap_ends() -> None:
    window = TimeWindow(name="w", time_zone=AMS, weekly=(WeeklyRange(days=frozenset(range(7)), start=time(2, 30),
                                                                    end=time(4)),))
    # 2026-03-29 02:00 CET jumps to 03:00 CEST (01:00 UTC): 02:30 never happens, the window opens at 03:00.
    assert next_change(window, utc(2026, 3, 28, 23, 0)) == utc(2026, 3, 29, 1, 0)


def test_a_window_that_never_changes_has_no_next_change() -> None:
    always = TimeWindow(name="a", time_zone="UTC", weekly=(WeeklyRange(days=frozenset(range(7)), start=time(0),
                                                                       end=None),))
    assert contains(always, utc(2026, 1, 1, 0, 0))
    assert next_change(always, utc(2026, 1, 1, 0, 0)) is None


def test_excluded_windows_and_dates(tmp_path: Path) -> None:
    config = load(tmp_path, """
        time_windows:
          holidays: {dates: [2026-12-24, 2026-12-31]}
          business_hours:
            time_zone: Europe/Amsterdam
            weekly: [{days: mon-fri, from: "09:00", to: "17:00"}, {days: sat, from: "10:00", to: "12:00"}]
            except: [holidays]
            except_dates: [2026-12-25]
          after_hours: {not: business_hours}
          weekends: {weekly: [{days: "sat,sun", from: "00:00", to: "24:00"}]}
    """)
    windows = config.time_windows
    assert set(windows) == {"holidays", "business_hours", "after_hours", "weekends"}
    business = windows["business_hours"]
    assert contains(business, utc(2026, 12, 23, 12, 0))  # Wednesday
    assert not contains(business, utc(2026, 12, 24, 12, 0))  # holiday list
    assert not contains(business, utc(2026, 12, 25, 12, 0))  # except_dates
    assert contains(business, utc(2026, 12, 26, 10, 30))  # Saturday morning
    assert contains(windows["after_hours"], utc(2026, 12, 24, 12, 0))
    assert windows["weekends"].time_zone == "UTC"
    assert contains(windows["weekends"], utc(2026, 12, 27, 23, 59)) and not contains(windows["weekends"],
                                                                                      utc(2026, 12, 28, 0, 0))


def test_bad_windows_are_reported_with_their_key_paths(tmp_path: Path) -> None:
    path = write(tmp_path, """
        time_windows:
          a: {weekly: [{days: mon-fry, from: "09:00", to: "17:00"}]}
          b: {weekly: [{days: mon, from: "09:00", to: "09:00"}]}
          c: {not: missing}
          d: {not: e}
          e: {except: [d], dates: [2026-13-01]}
          f: {weekly: [{days: mon, from: 9}]}
          g: {}
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = "\n".join(caught.value.problems)
    assert "time_windows.a.weekly[0].days: 'mon-fry' is not a weekday" in text
    assert "time_windows.b.weekly[0].to: equals from" in text
    assert "time_windows.c.not: unknown time window 'missing'" in text
    assert "refers back to itself (d -> e -> d)" in text
    assert "time_windows.e.dates[0]: expected a date" in text
    assert "time_windows.f.weekly[0].from: expected a time like \"09:00\"" in text
    assert "time_windows.f.weekly[0].to: is required" in text
    assert "time_windows.g: expected weekly ranges" in text
    assert all(problem.startswith(str(path)) for problem in caught.value.problems)


BASE = """
    api_tokens: [{name: a, token: t}]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(BASE) + textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


# Edges inside the hour the clocks go back: 02:30 in Amsterdam (02:00-03:00 comes twice on 2026-10-25), 01:30 in
# New York (01:00-02:00 twice on 2026-11-01), and midnight in Santiago (2026-04-05 00:00 goes back to 04-04 23:00).
REPEATED = [
    (TimeWindow(name="late", time_zone=AMS, weekly=(WeeklyRange(days=frozenset(range(7)), start=time(22),
                                                                end=time(2, 30)),)), utc(2026, 10, 24, 12, 0)),
    (TimeWindow(name="ny", time_zone="America/New_York", weekly=(WeeklyRange(days=frozenset(range(7)),
                                                                             start=time(1, 30), end=time(2)),)),
     utc(2026, 10, 31, 18, 0)),
    (TimeWindow(name="sunday", time_zone="America/Santiago", dates=frozenset({date(2026, 4, 5)})),
     utc(2026, 4, 4, 12, 0)),
]


@pytest.mark.parametrize(("window", "start"), REPEATED, ids=[window.name for window, _ in REPEATED])
def test_next_change_is_the_first_change_across_the_hour_that_comes_twice(window: TimeWindow,
                                                                         start: datetime) -> None:
    # Every minute for 36 hours around the change: next_change must name the first minute with another answer.
    minutes = [start + timedelta(minutes=n) for n in range(36 * 60)]
    inside = [contains(window, moment) for moment in minutes]
    for index in range(0, len(minutes) - 1, 3):
        expected = next((minutes[later] for later in range(index + 1, len(minutes))
                         if inside[later] != inside[index]), None)
        found = next_change(window, minutes[index], timedelta(days=3))
        if expected is not None:
            assert found == expected, minutes[index]
        else:
            assert found is None or found > minutes[-1], minutes[index]
