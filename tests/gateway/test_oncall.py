from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.config import Override, Rotation, Team
from gateway.oncall import OnCall, handoff_at, who_is_on_call

BERLIN = ZoneInfo("Europe/Berlin")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rotation(kind: str, start: date, *, shift: timedelta | None = None, zone: str = "UTC") -> Rotation:
    length = shift or {"daily": timedelta(days=1), "weekly": timedelta(days=7)}[kind]
    return Rotation(kind=kind, shift=length, start=start, handoff=time(9, 0), time_zone=zone)


def team(*members: str, rot: Rotation | None = None, overrides: tuple[Override, ...] = ()) -> Team:
    return Team(id="sre", members=members, rotation=rot, overrides=overrides)


def override(start: str, end: str, engineer: str, role: str = "primary") -> Override:
    return Override(start=utc(start), end=utc(end), engineer=engineer, role=role)


def test_without_rotation_first_two_members_always() -> None:
    answer = who_is_on_call(team("alice", "bob", "carol"), utc("2030-05-01T12:00"))
    assert answer == OnCall(team="sre", primary="alice", secondary="bob", until=None)


def test_single_member_has_no_secondary() -> None:
    weekly = rotation("weekly", date(2026, 1, 5))
    answer = who_is_on_call(team("alice", rot=weekly), utc("2026-02-01T00:00"))
    assert (answer.primary, answer.secondary) == ("alice", None)
    assert who_is_on_call(team("alice"), utc("2026-02-01T00:00")).secondary is None


def test_weekly_rotation() -> None:
    weekly = team("alice", "bob", "carol", rot=rotation("weekly", date(2026, 1, 5)))
    first = who_is_on_call(weekly, utc("2026-01-05T09:00"))
    assert (first.primary, first.secondary, first.until) == ("alice", "bob", utc("2026-01-12T09:00"))
    second = who_is_on_call(weekly, utc("2026-01-12T08:59:59"))
    assert second.primary == "alice"
    third = who_is_on_call(weekly, utc("2026-01-12T09:00"))
    assert (third.primary, third.secondary) == ("bob", "carol")
    wrapped = who_is_on_call(weekly, utc("2026-01-20T00:00"))
    assert (wrapped.primary, wrapped.secondary, wrapped.until) == ("carol", "alice", utc("2026-01-26T09:00"))
    later = who_is_on_call(weekly, utc("2026-01-26T09:00"))
    assert later.primary == "alice"


def test_daily_rotation() -> None:
    daily = team("alice", "bob", rot=rotation("daily", date(2026, 1, 5)))
    assert who_is_on_call(daily, utc("2026-01-05T20:00")).primary == "alice"
    answer = who_is_on_call(daily, utc("2026-01-06T08:00"))
    assert (answer.primary, answer.until) == ("alice", utc("2026-01-06T09:00"))
    assert who_is_on_call(daily, utc("2026-01-06T09:00")).primary == "bob"
    assert who_is_on_call(daily, utc("2026-01-07T09:00")).primary == "alice"


def test_before_the_first_handoff_counts_backwards() -> None:
    weekly = team("alice", "bob", "carol", rot=rotation("weekly", date(2026, 1, 5)))
    answer = who_is_on_call(weekly, utc("2026-01-05T08:59"))
    assert (answer.primary, answer.secondary, answer.until) == ("carol", "alice", utc("2026-01-05T09:00"))
    earlier = who_is_on_call(weekly, utc("2025-12-28T09:00"))
    assert (earlier.primary, earlier.secondary, earlier.until) == ("bob", "carol", utc("2025-12-29T09:00"))


def test_daily_handoff_stays_at_local_time_across_spring_dst_change() -> None:
    # Europe/Berlin moves from CET (UTC+1) to CEST (UTC+2) on 2026-03-29.
    daily = team("alice", "bob", rot=rotation("daily", date(2026, 3, 27), zone="Europe/Berlin"))
    before = who_is_on_call(daily, utc("2026-03-28T12:00"))  # shift 1
    assert before.primary == "bob"
    assert before.until == utc("2026-03-29T07:00")  # 09:00 CEST, not 08:00 UTC
    assert before.until.astimezone(BERLIN).time() == time(9, 0)
    assert who_is_on_call(daily, utc("2026-03-29T06:59")).primary == "bob"
    assert who_is_on_call(daily, utc("2026-03-29T07:30")).primary == "alice"  # 09:30 local, shift 2


def test_weekly_handoff_stays_at_local_time_across_autumn_dst_change() -> None:
    # back from CEST to CET on 2026-10-25
    weekly = team("alice", "bob", rot=rotation("weekly", date(2026, 10, 19), zone="Europe/Berlin"))
    first = who_is_on_call(weekly, utc("2026-10-19T07:00"))  # 09:00 CEST
    assert first.primary == "alice"
    assert first.until == utc("2026-10-26T08:00")  # 09:00 CET
    assert who_is_on_call(weekly, utc("2026-10-26T07:30")).primary == "alice"  # 08:30 local
    assert who_is_on_call(weekly, utc("2026-10-26T08:00")).primary == "bob"
    assert handoff_at(weekly.rotation, 0) == utc("2026-10-19T07:00")  # type: ignore[arg-type]


def test_custom_rotation_uses_exact_durations() -> None:
    three_days = rotation("custom", date(2026, 3, 27), shift=timedelta(days=3), zone="Europe/Berlin")
    custom = team("alice", "bob", "carol", rot=three_days)
    first = who_is_on_call(custom, utc("2026-03-27T08:00"))  # 09:00 CET
    assert (first.primary, first.secondary) == ("alice", "bob")
    assert first.until == utc("2026-03-30T08:00")  # exactly 72 h later: 10:00 CEST
    assert who_is_on_call(custom, utc("2026-03-30T07:59")).primary == "alice"
    assert who_is_on_call(custom, utc("2026-03-30T08:00")).primary == "bob"
    before = who_is_on_call(custom, utc("2026-03-27T07:59"))
    assert (before.primary, before.until) == ("carol", utc("2026-03-27T08:00"))


def test_custom_rotation_with_hours() -> None:
    twelve = rotation("custom", date(2026, 1, 5), shift=timedelta(hours=12))
    custom = team("alice", "bob", rot=twelve)
    assert who_is_on_call(custom, utc("2026-01-05T20:59")).primary == "alice"
    assert who_is_on_call(custom, utc("2026-01-05T21:00")).primary == "bob"
    assert who_is_on_call(custom, utc("2026-01-06T09:00")).primary == "alice"


def test_primary_override_by_someone_else() -> None:
    weekly = rotation("weekly", date(2026, 1, 5))
    covered = team(
        "alice", "bob", rot=weekly, overrides=(override("2026-01-06T00:00", "2026-01-07T00:00", "dave"),)
    )
    answer = who_is_on_call(covered, utc("2026-01-06T12:00"))
    assert (answer.primary, answer.secondary) == ("dave", "bob")
    assert answer.until == utc("2026-01-07T00:00")
    after = who_is_on_call(covered, utc("2026-01-07T00:00"))
    assert (after.primary, after.until) == ("alice", utc("2026-01-12T09:00"))
    before = who_is_on_call(covered, utc("2026-01-05T12:00"))
    assert (before.primary, before.until) == ("alice", utc("2026-01-06T00:00"))


def test_primary_override_with_the_secondary_swaps() -> None:
    covered = team("alice", "bob", overrides=(override("2026-01-06T00:00", "2026-01-07T00:00", "bob"),))
    answer = who_is_on_call(covered, utc("2026-01-06T12:00"))
    assert (answer.primary, answer.secondary) == ("bob", "alice")


def test_secondary_override() -> None:
    covered = team(
        "alice",
        "bob",
        overrides=(
            override("2026-01-06T00:00", "2026-01-07T00:00", "carol", role="secondary"),
            override("2026-01-08T00:00", "2026-01-09T00:00", "alice", role="secondary"),
        ),
    )
    replaced = who_is_on_call(covered, utc("2026-01-06T12:00"))
    assert (replaced.primary, replaced.secondary) == ("alice", "carol")
    swapped = who_is_on_call(covered, utc("2026-01-08T12:00"))
    assert (swapped.primary, swapped.secondary) == ("bob", "alice")


def test_latest_listed_override_wins() -> None:
    covered = team(
        "alice",
        "bob",
        overrides=(
            override("2026-01-01T00:00", "2026-01-31T00:00", "carol"),
            override("2026-01-10T00:00", "2026-01-11T00:00", "dave"),
        ),
    )
    assert who_is_on_call(covered, utc("2026-01-10T12:00")).primary == "dave"
    answer = who_is_on_call(covered, utc("2026-01-09T12:00"))
    assert (answer.primary, answer.until) == ("carol", utc("2026-01-10T00:00"))
    assert who_is_on_call(covered, utc("2026-01-11T00:00")).primary == "carol"


def test_primary_and_secondary_overrides_together() -> None:
    both = team(
        "alice",
        "bob",
        overrides=(
            override("2026-01-01T00:00", "2026-01-02T00:00", "carol", role="secondary"),
            override("2026-01-01T00:00", "2026-01-02T00:00", "dave"),
        ),
    )
    answer = who_is_on_call(both, utc("2026-01-01T12:00"))
    assert (answer.primary, answer.secondary) == ("dave", "carol")
    clash = team(
        "alice",
        "bob",
        overrides=(
            override("2026-01-01T00:00", "2026-01-02T00:00", "carol"),
            override("2026-01-01T00:00", "2026-01-02T00:00", "carol", role="secondary"),
        ),
    )
    answer = who_is_on_call(clash, utc("2026-01-01T12:00"))
    assert (answer.primary, answer.secondary) == ("carol", "bob")


def test_secondary_override_of_single_member_keeps_primary() -> None:
    solo = team("alice", overrides=(override("2026-01-01T00:00", "2026-01-02T00:00", "alice", role="secondary"),))
    answer = who_is_on_call(solo, utc("2026-01-01T12:00"))
    assert (answer.primary, answer.secondary) == ("alice", None)


def test_until_is_the_nearest_boundary_in_utc() -> None:
    weekly = rotation("weekly", date(2026, 1, 5), zone="Europe/Berlin")
    covered = team("alice", "bob", rot=weekly, overrides=(override("2026-01-20T00:00", "2026-01-21T00:00", "x"),))
    assert who_is_on_call(covered, utc("2026-01-06T00:00")).until == utc("2026-01-12T08:00")
    answer = who_is_on_call(covered, utc("2026-01-19T12:00"))
    assert answer.until == utc("2026-01-20T00:00")
    assert answer.until.tzinfo == UTC  # type: ignore[union-attr]


def test_at_in_another_zone_is_the_same_instant() -> None:
    daily = team("alice", "bob", rot=rotation("daily", date(2026, 1, 5)))
    at = datetime(2026, 1, 6, 9, 30, tzinfo=ZoneInfo("America/New_York"))  # 14:30 UTC
    assert who_is_on_call(daily, at).primary == "bob"


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        who_is_on_call(team("alice"), datetime(2026, 1, 1))
