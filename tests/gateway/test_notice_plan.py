"""The notice planner's pure parts: handoffs found through who_is_on_call, summary times, SMS-sized texts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from core.sms_segments import segments
from gateway import notice_plan
from gateway.config import Layer, OnCallSummary, Override, Rotation, Team, TimeWindow
from gateway.oncall import who_is_on_call

DAILY = Rotation(kind="daily", shift=timedelta(days=1), start=date(2026, 3, 1), handoff=time(9, 0),
                 time_zone="Europe/Berlin")


def _who(team: Team) -> notice_plan.Who:
    return lambda at: who_is_on_call(team, at)


def _utc(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def test_handoffs_skip_a_moment_where_the_role_stays_with_the_same_person() -> None:
    # Daily at 09:00 Berlin (08:00 UTC): bob is primary on 2 Mar, alice on 3 Mar, bob on 4 Mar. The override on
    # 2 Mar puts bob in his own role (no change); the one on 4 Mar hands the role to alice for two hours.
    team = Team(id="sre", members=("alice", "bob"), rotation=DAILY, overrides=(
        Override(start=_utc(2, 12), end=_utc(2, 14), role="primary", engineer="bob"),
        Override(start=_utc(4, 12), end=_utc(4, 14), role="primary", engineer="alice"),
    ))
    found = notice_plan.handoffs(_who(team), after=_utc(2, 10), roles=("primary",))
    assert [(h.engineer, h.at, h.until) for h in (next(found) for _ in range(4))] == [
        ("alice", _utc(3, 8), _utc(4, 8)),
        ("bob", _utc(4, 8), _utc(4, 12)),
        ("alice", _utc(4, 12), _utc(4, 14)),
        ("bob", _utc(4, 14), _utc(5, 8)),
    ]


def test_a_team_without_a_rotation_has_no_handoffs() -> None:
    team = Team(id="dba", members=("carol", "dave"), rotation=None)
    assert list(notice_plan.handoffs(_who(team), after=datetime(2026, 3, 2, tzinfo=UTC),
                                     roles=("primary", "secondary"))) == []


def test_a_weekly_summary_keeps_its_local_time_across_a_dst_change() -> None:
    summary = OnCallSummary(every="weekly", at=time(8, 15), day=0, to=("alice",), via=("sms",),
                            time_zone="Europe/Berlin")
    last, following = notice_plan.summary_times(summary, datetime(2026, 3, 25, 12, tzinfo=UTC))  # a Wednesday
    assert last == datetime(2026, 3, 23, 7, 15, tzinfo=UTC)  # Monday 08:15 CET
    assert following == datetime(2026, 3, 30, 6, 15, tzinfo=UTC)  # Monday 08:15 CEST
    assert notice_plan.summary_times(summary, following)[0] == following  # due at its very moment


def test_a_handoff_text_stays_sms_sized_with_many_long_alert_titles() -> None:
    handoff = notice_plan.Handoff(role="primary", engineer="bob", at=datetime(2026, 3, 30, 7, tzinfo=UTC),
                                  until=None)
    text = notice_plan.handoff_text(team="sre", handoff=handoff, zone="Europe/Berlin", open_alerts=57,
                                    titles=["x" * 200, "Disk   full\non db-1", "third", "fourth"])
    assert text == ("On call: you are primary for sre from Mon 30 Mar 09:00 until further notice (CEST)."
                    f" Open alerts: 57: {'x' * 37}...; Disk full on db-1; third")
    assert segments(text) == 2
    assert segments(notice_plan.fit("word " * 100)) == 2


def test_a_handoff_text_with_a_unicode_title_stays_two_sms_segments() -> None:
    # One typographic apostrophe makes the whole text UCS-2: 67 characters per segment, not 153.
    handoff = notice_plan.Handoff(role="primary", engineer="bob", at=datetime(2026, 3, 30, 7, tzinfo=UTC),
                                  until=datetime(2026, 4, 6, 7, tzinfo=UTC))
    titles = ["Checkout’s latency above 2 s on web-1", "Disk full on db-1 /var/lib", "Queue backlog growing"]
    text = notice_plan.handoff_text(team="sre", handoff=handoff, zone="Europe/Berlin", open_alerts=3, titles=titles)
    assert segments(text) == 2
    assert text == ("On call: you are primary for sre from Mon 30 Mar 09:00 to Mon 6 Apr 09:00 (CEST). Open alerts:"
                    " 3: Checkout’s latency above 2 s on...")
    gsm = notice_plan.handoff_text(team="sre", handoff=handoff, zone="Europe/Berlin", open_alerts=3,
                                   titles=[title.replace("’", "'") for title in titles])
    assert gsm.endswith("Open alerts: 3: Checkout's latency above 2 s on web-1; Disk full on db-1 /var/lib; Queue"
                        " backlog growing")


def test_a_layered_answers_look_ahead_cap_is_no_handoff() -> None:
    # Alice always, but for the one-person holiday layer at Christmas: every answer until then ends at the layers'
    # 7-day look-ahead (gateway.layers.HORIZON) with the same answer after it.
    christmas = TimeWindow(name="christmas", time_zone="Europe/Berlin",
                           dates=frozenset({date(2026, 12, 24), date(2026, 12, 25)}))
    team = Team(id="noc", members=("alice", "frank"), rotation=None, layers=(
        Layer(name="always", members=("alice",), rotation=None),
        Layer(name="christmas", members=("frank",), rotation=None, when=(christmas,)),
    ))
    assert who_is_on_call(team, _utc(2, 10)).until == _utc(9, 10)  # a cap, not a change
    assert list(notice_plan.handoffs(_who(team), after=_utc(2, 10), roles=("primary", "secondary"))) == []
    found = notice_plan.handoffs(_who(team), after=datetime(2026, 12, 1, tzinfo=UTC), roles=("primary", "secondary"))
    assert [(h.role, h.engineer, h.at, h.until) for h in found] == [
        ("primary", "frank", datetime(2026, 12, 23, 23, tzinfo=UTC), datetime(2026, 12, 25, 23, tzinfo=UTC)),
        ("secondary", "alice", datetime(2026, 12, 23, 23, tzinfo=UTC), datetime(2026, 12, 25, 23, tzinfo=UTC)),
        ("primary", "alice", datetime(2026, 12, 25, 23, tzinfo=UTC), None),
    ]
