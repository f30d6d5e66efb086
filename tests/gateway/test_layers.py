"""Layered schedules: a stack of rotations, each optionally limited to time windows, overrides on top.

The team ``noc`` (Europe/Berlin): weekdays alice, bob, carol (weekly from Monday 2026-01-05 09:00); above it a
weekend layer, dave and erin (weekly from Friday 2026-01-02 18:00), active Friday 18:00 to Monday 09:00; above
that a one-person holiday layer, frank, on 2026-12-24 to 26. Every instant is explicit: nothing depends on today.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway import layers
from gateway.app import create_app
from gateway.config import ConfigError, Layer, Override, Rotation, Team, TimeWindow, WeeklyRange, load_config
from gateway.console.picture import picture
from gateway.layers import HORIZON, active_layer
from gateway.oncall import who_is_on_call
from tests.support import AUTH, BASE_CONFIG, CAROL, TOKEN, Gateway, eventually, write_config

LAYERS = """\
  noc:
    layers:
      - name: weekdays
        members: [alice, bob, carol]
        rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: Europe/Berlin}
      - name: weekend
        members: [dave, erin]
        rotation: {kind: weekly, start: 2026-01-02, handoff: "18:00", time_zone: Europe/Berlin}
        when: [weekends]
      - name: holidays
        members: [frank]
        when: holidays
"""
WINDOWS = """
time_windows:
  weekends:
    time_zone: Europe/Berlin
    weekly:
      - {days: fri, from: "18:00", to: "24:00"}
      - {days: sat-sun, from: "00:00", to: "24:00"}
      - {days: mon, from: "00:00", to: "09:00"}
  holidays: {time_zone: Europe/Berlin, dates: [2026-12-24, 2026-12-25, 2026-12-26]}
"""
ENGINEERS = """\
  dave: {name: Dave, phones: ["+15550000004"]}
  erin: {name: Erin, phones: ["+15550000005"]}
  frank: {name: Frank, phones: ["+15550000006"]}
"""
DAVE, ERIN = "+15550000004", "+15550000005"
LAYERED = BASE_CONFIG.replace("teams:\n", "teams:\n" + LAYERS).replace("engineers:\n", "engineers:\n" + ENGINEERS) \
    + WINDOWS


WEEKEND_ONLY = LAYERED.replace("""      - name: weekdays
        members: [alice, bob, carol]
        rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: Europe/Berlin}
""", "")  # noc without its weekday layer: nobody on call from Monday 09:00 to Friday 18:00


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def noc(tmp_path: Path) -> Team:
    return load_config(write_config(tmp_path, LAYERED)).teams["noc"]


def pair(team: Team, at: datetime) -> tuple[str | None, str | None]:
    answer = who_is_on_call(team, at)
    return answer.primary, answer.secondary


def changes(team: Team, start: datetime, end: datetime) -> list[tuple[datetime, str | None, str | None]]:
    """Walk ``until`` from ``start``: each moment the answer changes, and the new answer. Every step is checked:
    the answer holds just before ``until`` and half way there."""
    found: list[tuple[datetime, str | None, str | None]] = []
    at = start
    while at < end:
        answer = who_is_on_call(team, at)
        if not found or found[-1][1:] != (answer.primary, answer.secondary):
            found.append((at, answer.primary, answer.secondary))
        assert answer.until is not None and at < answer.until <= at + HORIZON, (at, answer.until)
        for inside in (at + (answer.until - at) / 2, answer.until - timedelta(seconds=1)):
            assert pair(team, inside) == (answer.primary, answer.secondary), (at, inside)
        at = answer.until
    return found


def test_the_config_builds_the_stack_bottom_first_and_members_of_every_layer(noc: Team) -> None:
    assert [layer.name for layer in noc.layers] == ["weekdays", "weekend", "holidays"]
    assert noc.members == ("alice", "bob", "carol", "dave", "erin", "frank")
    assert noc.rotation is None
    assert [window.name for window in noc.layers[1].when] == ["weekends"]
    assert [window.name for window in noc.layers[2].when] == ["holidays"]  # a single name is a list of one
    assert noc.layers[0].when == ()


def test_the_weekend_layer_takes_over_friday_evening_and_gives_back_monday_across_spring_dst(noc: Team) -> None:
    # Europe/Berlin moves from CET to CEST on Sunday 2026-03-29: Friday 18:00 is 17:00Z, Monday 09:00 is 07:00Z.
    before = who_is_on_call(noc, utc("2026-03-27T16:59:59"))
    assert (before.primary, before.secondary, before.until) == ("carol", "alice", utc("2026-03-27T17:00"))
    weekend = who_is_on_call(noc, utc("2026-03-27T17:00"))
    assert (weekend.primary, weekend.secondary) == ("dave", "erin")  # the secondary from the winning layer
    assert weekend.until == utc("2026-03-30T07:00")
    assert pair(noc, utc("2026-03-29T12:00")) == ("dave", "erin")
    assert pair(noc, utc("2026-03-30T06:59:59")) == ("dave", "erin")
    assert pair(noc, utc("2026-03-30T07:00")) == ("alice", "bob")  # and the weekday rotation handed off meanwhile
    assert changes(noc, utc("2026-03-26T00:00"), utc("2026-04-01T00:00")) == [
        (utc("2026-03-26T00:00"), "carol", "alice"),
        (utc("2026-03-27T17:00"), "dave", "erin"),
        (utc("2026-03-30T07:00"), "alice", "bob"),
    ]
    assert active_layer(noc, utc("2026-03-28T00:00")) is noc.layers[1]
    assert active_layer(noc, utc("2026-03-30T07:00")) is noc.layers[0]


def test_across_the_autumn_dst_change_the_boundaries_stay_at_local_time(noc: Team) -> None:
    # back to CET on Sunday 2026-10-25: Friday 18:00 CEST is 16:00Z, Monday 09:00 CET is 08:00Z.
    assert changes(noc, utc("2026-10-22T00:00"), utc("2026-10-28T00:00")) == [
        (utc("2026-10-22T00:00"), "carol", "alice"),
        (utc("2026-10-23T16:00"), "dave", "erin"),
        (utc("2026-10-26T08:00"), "alice", "bob"),
    ]


def test_the_weekend_rotation_hands_off_inside_its_layer(noc: Team) -> None:
    assert changes(noc, utc("2026-01-08T00:00"), utc("2026-01-20T00:00")) == [
        (utc("2026-01-08T00:00"), "alice", "bob"),
        (utc("2026-01-09T17:00"), "erin", "dave"),  # one week after the weekend rotation began: shift 1
        (utc("2026-01-12T08:00"), "bob", "carol"),
        (utc("2026-01-16T17:00"), "dave", "erin"),
        (utc("2026-01-19T08:00"), "carol", "alice"),
    ]


def test_a_one_person_layer_takes_the_secondary_from_the_layers_below(noc: Team) -> None:
    # Thursday 2026-12-24: the holiday layer over the weekday rotation; Saturday the 26th: over the weekend one.
    assert pair(noc, utc("2026-12-23T22:59:59")) == ("carol", "alice")
    thursday = who_is_on_call(noc, utc("2026-12-23T23:00"))  # midnight in Berlin
    assert (thursday.primary, thursday.secondary) == ("frank", "carol")  # the weekday layer's primary
    assert thursday.until == utc("2026-12-25T17:00")  # the weekend layer below starts: another secondary
    assert pair(noc, utc("2026-12-26T12:00")) == ("frank", "erin")
    assert changes(noc, utc("2026-12-23T12:00"), utc("2026-12-29T00:00")) == [
        (utc("2026-12-23T12:00"), "carol", "alice"),
        (utc("2026-12-23T23:00"), "frank", "carol"),
        (utc("2026-12-25T17:00"), "frank", "erin"),
        (utc("2026-12-26T23:00"), "erin", "dave"),
        (utc("2026-12-28T08:00"), "alice", "bob"),
    ]


def test_a_layer_whose_windows_do_not_change_soon_is_asked_again_within_the_horizon(noc: Team) -> None:
    # No handoff, and the holiday window far away: the answer says when to ask again, not "never".
    alone = Team(id="x", members=noc.members, rotation=None, layers=(noc.layers[2],))
    answer = who_is_on_call(alone, utc("2026-06-01T00:00"))
    assert (answer.primary, answer.secondary, answer.until) == (None, None, utc("2026-06-01T00:00") + HORIZON)
    assert pair(alone, utc("2026-12-25T12:00")) == ("frank", None)


def test_answers_do_not_depend_on_what_was_asked_before(noc: Team) -> None:
    """The windows' last answers are remembered (callers mostly walk forward): asked in any order, each answer
    is the one worked out afresh."""
    rng = random.Random(5)
    start = utc("2026-03-20T00:00")
    moments = [start + timedelta(minutes=rng.randrange(0, 60 * 24 * 21)) for _ in range(300)]
    moments += [start + timedelta(minutes=13 * n) for n in range(300)]  # forward, as the scheduler asks
    rng.shuffle(moments)
    for at in moments:
        remembered = who_is_on_call(noc, at)
        layers._known.clear()
        assert who_is_on_call(noc, at) == remembered, at


def test_until_is_never_past_a_change_across_the_night_the_clocks_go_back(noc: Team) -> None:
    """Every minute of the weekend Berlin goes back to CET (02:00-03:00 comes twice on 2026-10-25), under a
    night layer whose window ends and whose rotation hands off inside that hour, with an override: asked in
    random order, no answer changes before the ``until`` given with it."""
    late = TimeWindow(name="late", time_zone="Europe/Berlin",
                      weekly=(WeeklyRange(days=frozenset(range(7)), start=time(22), end=time(2, 30)),))
    nightly = Rotation(kind="daily", shift=timedelta(days=1), start=date(2026, 1, 1), handoff=time(2, 15),
                       time_zone="Europe/Berlin")
    team = Team(id="noc", members=noc.members, rotation=None, layers=(
        noc.layers[0], noc.layers[1], Layer(name="late", members=("bob", "frank"), rotation=nightly, when=(late,)),
    ), overrides=(Override(start=utc("2026-10-25T01:10"), end=utc("2026-10-25T01:40"), role="secondary",
                           engineer="alice"),))
    start = utc("2026-10-24T12:00")
    minutes = [start + timedelta(minutes=n) for n in range(48 * 60)]
    answers = [pair(team, moment) for moment in minutes]
    assert len(set(answers)) > 4  # the scenario does change hands
    rng = random.Random(7)
    for _ in range(400):
        index = rng.randrange(len(minutes))
        at = minutes[index] + timedelta(seconds=rng.randrange(60))
        until = who_is_on_call(team, at).until
        assert until is not None and until > at
        for later in range(index + 1, len(minutes)):
            if minutes[later] >= until:
                break
            assert answers[later] == answers[index], (at, until, minutes[later])


def test_the_remembered_window_changes_stay_bounded(noc: Team) -> None:
    # Each config loaded brings new windows (the entries keep them alive): the memory is emptied, not grown.
    at = utc("2026-03-20T00:00")
    for _ in range(layers._KNOWN_MAX + 10):
        fresh = replace(noc.layers[1], when=tuple(replace(window) for window in noc.layers[1].when))
        layers.next_window_change(fresh, at, at + HORIZON)
    assert len(layers._known) <= layers._KNOWN_MAX
    assert layers.next_window_change(noc.layers[1], at, at + HORIZON) == utc("2026-03-20T17:00")


def test_an_override_beats_every_layer(noc: Team) -> None:
    covered = Team(id=noc.id, members=noc.members, rotation=None, layers=noc.layers, overrides=(
        Override(start=utc("2026-03-28T10:00"), end=utc("2026-03-28T20:00"), role="primary", engineer="carol"),
        Override(start=utc("2026-03-28T10:00"), end=utc("2026-03-29T10:00"), role="secondary", engineer="alice"),
    ))
    answer = who_is_on_call(covered, utc("2026-03-28T12:00"))
    assert (answer.primary, answer.secondary, answer.until) == ("carol", "alice", utc("2026-03-28T20:00"))
    assert changes(covered, utc("2026-03-27T12:00"), utc("2026-03-31T00:00")) == [
        (utc("2026-03-27T12:00"), "carol", "alice"),
        (utc("2026-03-27T17:00"), "dave", "erin"),
        (utc("2026-03-28T10:00"), "carol", "alice"),
        (utc("2026-03-28T20:00"), "dave", "alice"),
        (utc("2026-03-29T10:00"), "dave", "erin"),
        (utc("2026-03-30T07:00"), "alice", "bob"),
    ]


def test_the_console_picture_follows_the_layers(noc: Team, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, LAYERED))
    now = utc("2026-03-25T12:00")
    drawn = picture(config, noc, now.timestamp())
    primary = next(lane for lane in drawn.lanes if lane.role == "primary")
    assert [(datetime.fromtimestamp(b.start, UTC), b.engineer, b.layer) for b in primary.shifts][:4] == [
        (now, "carol", "weekdays"),
        (utc("2026-03-27T17:00"), "dave", "weekend"),
        (utc("2026-03-30T07:00"), "alice", "weekdays"),
        (utc("2026-04-03T16:00"), "erin", "weekend"),
    ]
    for lane in drawn.lanes:
        for bar in lane.shifts:
            middle = datetime.fromtimestamp((bar.start + bar.end) / 2, UTC)
            answer = who_is_on_call(noc, middle)
            assert bar.engineer == (answer.primary if lane.role == "primary" else answer.secondary), (lane, bar)


async def test_the_api_and_the_console_page_name_the_layer(tmp_path: Path,
                                                           aiohttp_client: Callable[..., Any]) -> None:
    clock = FakeClock(start=utc("2026-03-28T12:00").timestamp())  # a Saturday
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, LAYERED)), clock=clock))
    answer = await client.get("/api/v1/oncall", headers=AUTH)
    teams = {team["team"]: team for team in (await answer.json())["teams"]}
    assert teams["noc"]["primary"]["id"] == "dave" and teams["noc"]["secondary"]["id"] == "erin"
    assert teams["noc"]["layer"] == "weekend" and teams["noc"]["until"] == "2026-03-30T07:00:00Z"
    assert teams["sre"]["layer"] is None  # members and rotation: no layers to name
    answer = await client.get("/api/v1/oncall?team=noc&at=2026-03-30T07:00:00Z", headers=AUTH)
    assert (await answer.json())["teams"][0]["layer"] == "weekdays"

    assert (await client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)).status == 303
    html = await (await client.get("/console/oncall")).text()
    section = html[html.index('id="team-noc"'):html.index('id="team-sre"')]
    assert re.search(r'class="primary-now">Dave<', section) and "layer weekend" in section
    assert 'data-layer="weekend"' in section and 'data-layer="weekdays"' in section
    assert re.search(r'title="Alice \(weekdays\): ', section)


async def test_an_alert_pages_the_weekday_layer_before_friday_evening_and_the_weekend_layer_after(
        tmp_path: Path, aiohttp_client: Callable[..., Any]) -> None:
    clock = FakeClock(start=utc("2026-03-27T16:59:00").timestamp())  # Friday 17:59 in Berlin
    gateway = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, LAYERED)), clock=clock)),
                      clock)
    status, weekday = await gateway.post("/api/v1/alerts", {"summary": "before the weekend", "team": "noc"})
    assert status == 202, weekday
    await gateway.ringing(CAROL)  # the weekday layer's primary
    await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/press", {"digits": "1"})
    await gateway.alert_where(weekday["id"], lambda alert: alert["status"] == "acknowledged")

    await clock.advance(60)  # 18:00: the weekend layer takes over
    status, weekend = await gateway.post("/api/v1/alerts", {"summary": "on the weekend", "team": "noc"})
    assert status == 202, weekend
    await gateway.ringing(DAVE)
    await clock.advance(20)  # no answer: the policy's next step pages the secondary, of the weekend layer too
    await gateway.ringing(ERIN)
    alert = await gateway.alert(weekend["id"])
    assert [page["engineer"] for page in alert["pages"]] == ["dave", "erin"]


async def test_a_moment_no_layer_covers_is_nobody_everywhere(tmp_path: Path,
                                                            aiohttp_client: Callable[..., Any]) -> None:
    # Only the weekend and holiday layers: on a Wednesday nobody is on call. The scheduler skips each step and
    # says why; the API, a direct call to the team and the console say nobody; the calendar has a hole there.
    windowed = WEEKEND_ONLY
    clock = FakeClock(start=utc("2026-03-25T12:00").timestamp())  # a Wednesday
    gateway = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, windowed)), clock=clock)),
                      clock)
    status, alert = await gateway.post("/api/v1/alerts", {"summary": "midweek", "team": "noc"})
    assert status == 202, alert
    done = await gateway.alert_where(alert["id"], lambda found: found["escalation"]["next_due"] is None)
    notes = [entry["message"] for entry in done["timeline"]]
    assert "step 1 of 2: nobody is primary on call for team noc (no layer is active); skipped" in notes, notes
    assert "step 2 of 2: nobody is secondary on call for team noc (no layer is active); skipped" in notes, notes
    assert done["pages"] == []

    status, body = await gateway.get("/api/v1/oncall?team=noc")
    assert status == 200
    assert body["teams"] == [{"team": "noc", "primary": None, "secondary": None, "layer": None,
                              "until": "2026-03-27T17:00:00Z"}]
    status, body = await gateway.post("/api/v1/calls", {"team": "noc", "message": "anyone?"})
    assert (status, body["error"]) == (409, "nobody_on_call")

    assert (await gateway.client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)).status == 303
    html = await (await gateway.client.get("/console/oncall")).text()
    section = html[html.index('id="team-noc"'):html.index('id="team-sre"')]
    assert 'class="primary-now">nobody<' in section and "layer-now" not in section

    status, feed = await gateway.post("/api/v1/calendar-feeds", {"team": "noc"})
    assert status == 201, feed
    async with gateway.client.get(feed["url"].removeprefix("http://127.0.0.1:8080")) as response:
        assert response.status == 200
        text = (await response.read()).decode()
    assert "DTSTART:20260327T170000Z" in text and "DTEND:20260330T070000Z" in text  # the weekend, then a hole
    assert "DTSTART:20260330T070000Z" not in text


async def test_a_hotline_call_when_no_layer_is_active_goes_to_voicemail_and_the_team_is_texted(
        tmp_path: Path, aiohttp_client: Callable[..., Any]) -> None:
    windowed = WEEKEND_ONLY + """
hotlines:
  - name: ops
    number: "+15557770000"
    team: noc
    policy: default
"""
    clock = FakeClock(start=utc("2026-03-25T12:00").timestamp())  # a Wednesday: no layer is active
    gateway = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, windowed)), clock=clock)),
                      clock)
    caller = "+15557770001"
    status, _ = await gateway.post(f"/api/v1/sandbox/phones/{caller}/dial", {"to": "+15557770000"})
    assert status == 200

    async def recording() -> dict[str, Any] | None:
        phone = await gateway.phone(caller)
        return phone if phone["call"]["recording"] else None

    assert "leave a message after the beep" in (await eventually(recording))["call"]["hearing"]
    await gateway.post(f"/api/v1/sandbox/phones/{caller}/hangup")
    _, listed = await gateway.get("/api/v1/alerts")
    alert = await gateway.alert_where(listed["alerts"][0]["id"], lambda found: found["status"] == "resolved")
    assert any("(no layer is active); skipped" in entry["message"] for entry in alert["timeline"])
    for number in (DAVE, ERIN):  # the team is every layer's engineers
        assert len((await gateway.phone(number))["sms"]) == 1


def test_gateway_oncall_shows_the_layer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    path = write_config(tmp_path, LAYERED)
    assert main(["oncall", str(path), "--config-only", "--at", "2026-03-28T12:00Z"]) == 0
    rows = [re.split(r"\s{2,}", line.strip()) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["TEAM", "PRIMARY", "SECONDARY", "UNTIL", "LAYER"]
    assert rows[1] == ["noc", "Dave (+1555***0004)", "Erin (+1555***0005)", "2026-03-30 09:00 CEST", "weekend"]
    assert rows[2][0] == "sre" and rows[2][-1] == "-"


def test_a_moment_no_layer_covers_is_found_and_check_config_warns(
        noc: Team, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    windowed = Team(id="w", members=noc.members, rotation=None, layers=noc.layers[1:])
    saturday = utc("2026-03-28T12:00")
    assert layers.first_gap(windowed, saturday, saturday + timedelta(days=30)) == utc("2026-03-30T07:00")
    assert layers.first_gap(windowed, saturday, utc("2026-03-30T06:00")) is None
    assert layers.first_gap(noc, saturday, saturday + timedelta(days=400)) is None  # weekdays has no when
    assert who_is_on_call(windowed, utc("2026-03-30T07:00")).primary is None

    night_and_day = LAYERED.replace("        rotation: {kind: weekly, start: 2026-01-05, handoff: \"09:00\", "
                                    "time_zone: Europe/Berlin}\n",
                                    "        rotation: {kind: weekly, start: 2026-01-05, handoff: \"09:00\", "
                                    "time_zone: Europe/Berlin}\n        when: [not_weekends]\n") \
        + "  not_weekends: {not: weekends}\n"
    team = load_config(write_config(tmp_path, night_and_day)).teams["noc"]
    assert all(layer.when for layer in team.layers)
    assert layers.first_gap(team, saturday, saturday + timedelta(days=400)) is None  # together they cover it all
    assert main(["check-config", str(write_config(tmp_path, night_and_day))]) == 0
    assert "warning" not in capsys.readouterr().err

    gaps = night_and_day.replace("  not_weekends: {not: weekends}\n",
                                 "  not_weekends: {weekly: [{days: tue-thu, from: \"00:00\", to: \"24:00\"}]}\n")
    assert main(["check-config", str(write_config(tmp_path, gaps))]) == 0  # a warning, not an error
    err = capsys.readouterr().err
    assert re.search(r"warning: .*gateway.yaml: teams\.noc\.layers: no layer is active at \d{4}-\d\d-\d\d "
                     r"\d\d:\d\d CES?T \(nobody is on call then but overrides\)", err), err


def problems(tmp_path: Path, teams: str, windows: str = WINDOWS) -> list[str]:
    config = BASE_CONFIG.replace("teams:\n", "teams:\n" + textwrap.indent(textwrap.dedent(teams), "  ")) \
        .replace("engineers:\n", "engineers:\n" + ENGINEERS) + windows
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, config))
    return [problem.split(": ", 1)[1] for problem in caught.value.problems]


def test_bad_layers_are_reported_with_key_paths(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
      noc:
        members: [alice]
        layers:
          - {name: day, members: [], rotation: {kind: weekly, start: 2026-01-05}}
          - {name: night, members: [alice, nobody, alice], when: [nights, weekends]}
          - {name: day, members: [bob], when: []}
          - {members: [carol], bogus: 1}
          - just-a-name
      ops:
        layers: []
    """)
    assert found == [
        "teams.noc.members: set either layers or members and rotation, not both (members and rotation are a team "
        "of one layer)",
        "teams.noc.layers[0].members: at least one entry is required",
        "teams.noc.layers[1].members[1]: unknown engineer 'nobody'",
        "teams.noc.layers[1].members[2]: engineer 'alice' is listed twice",
        "teams.noc.layers[1].when[0]: unknown time window 'nights' (known: weekends, holidays)",
        "teams.noc.layers[2].when: at least one entry is required",
        "teams.noc.layers[3].bogus: unknown key (expected one of: name, members, rotation, when)",
        "teams.noc.layers[3].name: is required",
        "teams.noc.layers[4]: expected a mapping, got the text 'just-a-name'",
        "teams.noc.layers[2].name: layer name 'day' is listed twice",
        "teams.ops.layers: at least one entry is required",
    ]


def test_a_directory_team_with_layers_is_refused_with_its_key_path(tmp_path: Path) -> None:
    # A directory team's members come from its group, in one rotation: layers of configured engineers beside it
    # would say two things about who is on call.
    found = problems(tmp_path, """\
      noc:
        directory: {name: corp, group: /sre}
        layers:
          - {name: day, members: [alice]}
    """)
    assert found == ["teams.noc: set either directory or layers, not both"]


def test_a_layer_rotation_is_checked_like_a_team_rotation(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
      noc:
        layers:
          - {name: day, members: [alice], rotation: {kind: hourly, start: 2026-01-05}}
          - {name: night, members: [bob], when: weekends, rotation: {kind: weekly, time_zone: Mars/Olympus}}
    """)
    assert found == [
        "teams.noc.layers[0].rotation.kind: 'hourly' is not one of: daily, weekly, custom",
        "teams.noc.layers[1].rotation.start: is required",
        "teams.noc.layers[1].rotation.time_zone: 'Mars/Olympus' is not a known IANA time zone (e.g. Europe/Berlin)",
    ]


def test_naive_override_times_of_a_layered_team_are_read_in_its_first_rotations_zone(tmp_path: Path) -> None:
    config = LAYERED.replace(
        "        when: holidays\n",
        "        when: holidays\n    overrides:\n      - {start: \"2026-05-01T09:00\", end: \"2026-05-01T10:00\", "
        "engineer: frank}\n")
    team = load_config(write_config(tmp_path, config)).teams["noc"]
    assert team.overrides[0].start == utc("2026-05-01T07:00")  # 09:00 CEST
    assert pair(team, utc("2026-05-01T07:30")) == ("frank", "carol")  # a Friday morning: weekday rotation


def test_the_team_form_without_layers_is_one_layer_as_before(tmp_path: Path) -> None:
    sre = load_config(write_config(tmp_path, LAYERED)).teams["sre"]
    assert sre.layers == () and active_layer(sre, utc("2026-01-10T00:00")) is None
    assert who_is_on_call(sre, utc("2026-01-10T00:00")).until == utc("2026-01-12T09:00")  # no horizon cut
    dba = load_config(write_config(tmp_path, LAYERED)).teams["dba"]
    assert who_is_on_call(dba, utc("2026-01-10T00:00")).until is None


def test_the_weekend_window_is_what_the_layer_follows() -> None:
    # a guard on the scenario itself: 2026-03-27 and 2026-10-23 are Fridays, the DST changes on the Sundays after
    assert date(2026, 3, 27).weekday() == 4 and date(2026, 10, 23).weekday() == 4
    assert date(2026, 1, 2).weekday() == 4 and date(2026, 1, 5).weekday() == 0
