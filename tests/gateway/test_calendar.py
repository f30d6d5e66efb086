"""Calendar feeds: admin-only management, a secret URL that can be revoked, and an iCalendar body that a real
calendar library parses and whose events say what ``gateway oncall --at`` says, overrides included."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.support import AUTH, BASE_CONFIG, TOKEN, Gateway, write_config

# The clock starts at 2026-01-07T12:00Z (a Wednesday). sre: weekly from Monday 2026-01-05 09:00 UTC,
# alice then bob then carol; a YAML override puts carol on as primary for a day; dba has one member, always on.
CONFIG = BASE_CONFIG.replace(
    f"    token: {TOKEN}\n",
    f"    token: {TOKEN}\n  - {{name: pager, token: responder-token, role: responder}}\n",
).replace(
    "    members: [alice, bob]\n"
    '    rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: UTC}\n',
    "    members: [alice, bob, carol]\n"
    '    rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: UTC}\n'
    "    overrides:\n"
    '      - {start: "2026-01-20T00:00Z", end: "2026-01-21T00:00Z", engineer: carol, role: primary}\n',
)
START = datetime(2026, 1, 7, 12, tzinfo=UTC)
STORE_OVERRIDE = {"role": "secondary", "engineer": "alice", "start": "2026-01-08T06:00:00Z",
                  "end": "2026-01-09T18:00:00Z"}
NAMES = {"Alice": "alice", "Bob": "bob", "Carol": "carol", "Dave": "dave", "Erin": "erin"}
WEEK_START = datetime(2026, 1, 12, 9, tzinfo=UTC)


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, CONFIG)), clock=clock))
    yield Gateway(client, clock)


async def _feed(gateway: Gateway, body: dict[str, str]) -> dict[str, Any]:
    status, feed = await gateway.post("/api/v1/calendar-feeds", body)
    assert status == 201, feed
    assert isinstance(feed, dict)
    assert feed["url"].startswith("http://127.0.0.1:8080/calendar/") and feed["url"].endswith(".ics")
    return feed


async def _fetch(gateway: Gateway, url: str) -> tuple[int, str, bytes]:
    path = url.removeprefix("http://127.0.0.1:8080")
    async with gateway.client.get(path) as resp:  # no token: the secret alone
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def _events(gateway: Gateway, url: str) -> list[icalendar.Event]:
    status, kind, body = await _fetch(gateway, url)
    assert status == 200 and kind.startswith("text/calendar"), (status, kind, body[:200])
    calendar = icalendar.Calendar.from_ical(body)
    assert calendar["VERSION"] == "2.0" and calendar["PRODID"]
    return [event for event in calendar.walk("VEVENT") if isinstance(event, icalendar.Event)]


def _on_call(events: list[icalendar.Event], at: datetime) -> dict[tuple[str, str], str]:
    """(team, role) -> engineer id, from the events that cover ``at``."""
    found: dict[tuple[str, str], str] = {}
    for event in events:
        if event.decoded("dtstart") <= at < event.decoded("dtend"):
            match = re.fullmatch(r"(Primary|Secondary) on call: (\w+) \((\w+)\)", str(event["summary"]))
            assert match, event["summary"]
            key = (match[3], match[1].lower())
            assert key not in found, f"two {key} events at {at}"
            found[key] = NAMES[match[2]]
    return found


def _cli(config: Path, at: datetime) -> dict[tuple[str, str], str]:
    result = subprocess.run([sys.executable, "-m", "gateway", "oncall", str(config), "--at", at.isoformat()],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    found: dict[tuple[str, str], str] = {}
    for line in result.stdout.splitlines()[1:]:
        team, primary, secondary, *_ = re.split(r"\s{2,}", line)
        for role, cell in (("primary", primary), ("secondary", secondary)):
            if cell != "-":
                found[(team, role)] = NAMES[cell.split(" (")[0]]
    return found


async def test_only_an_admin_manages_feeds_and_the_list_holds_no_secret(gateway: Gateway) -> None:
    responder = {"Authorization": "Bearer responder-token"}
    status, body = await gateway.post("/api/v1/calendar-feeds", {"team": "sre"}, headers=responder)
    assert status == 403 and body["details"]["role_needed"] == "admin", body
    status, body = await gateway.get("/api/v1/calendar-feeds", headers=responder)
    assert status == 403, body
    feed = await _feed(gateway, {"team": "sre"})
    secret = feed["url"].rsplit("/", 1)[1].removesuffix(".ics")
    status, listed = await gateway.get("/api/v1/calendar-feeds")
    assert status == 200 and [f["id"] for f in listed["feeds"]] == [feed["id"]]
    assert secret not in str(listed) and "url" not in listed["feeds"][0]
    for bad in ({}, {"team": "sre", "engineer": "bob"}, {"team": "nope"}, {"engineer": "nobody"}, {"team": 3}):
        status, body = await gateway.post("/api/v1/calendar-feeds", bad)
        assert status == 422, (bad, body)


async def test_a_revoked_or_unknown_secret_is_404_and_a_feed_needs_no_token(gateway: Gateway) -> None:
    feed = await _feed(gateway, {"engineer": "bob"})
    assert (await _fetch(gateway, feed["url"]))[0] == 200
    assert (await _fetch(gateway, feed["url"].replace("/calendar/", "/calendar/x")))[0] == 404
    assert (await _fetch(gateway, "/calendar/../api.ics"))[0] == 404
    async with gateway.client.delete(f"/api/v1/calendar-feeds/{feed['id']}",
                                     headers={"Authorization": "Bearer responder-token"}) as resp:
        assert resp.status == 403
    async with gateway.client.delete(f"/api/v1/calendar-feeds/{feed['id']}", headers=AUTH) as resp:
        assert resp.status == 200 and (await resp.json())["revoked_by"] == "tests"
    status, _, body = await _fetch(gateway, feed["url"])
    assert status == 404 and b"not_found" in body
    async with gateway.client.delete(f"/api/v1/calendar-feeds/{feed['id']}", headers=AUTH) as resp:
        assert resp.status == 404


async def test_the_feed_says_what_gateway_oncall_says_with_overrides_in_yaml_and_in_the_store(
    gateway: Gateway, tmp_path: Path
) -> None:
    status, added = await gateway.post("/api/v1/teams/sre/overrides", STORE_OVERRIDE)
    assert status == 201, added
    team_events = await _events(gateway, (await _feed(gateway, {"team": "sre"}))["url"])
    carol_events = await _events(gateway, (await _feed(gateway, {"engineer": "carol"}))["url"])
    everyone = {engineer: await _events(gateway, (await _feed(gateway, {"engineer": engineer}))["url"])
                for engineer in ("alice", "bob")}
    dba_events = await _events(gateway, (await _feed(gateway, {"team": "dba"}))["url"])

    handoffs = [datetime(2026, 1, 5, 9, tzinfo=UTC) + timedelta(weeks=week) for week in range(-1, 12)]
    samples = [START, datetime(2026, 1, 8, 5, 59, tzinfo=UTC), datetime(2026, 1, 8, 6, tzinfo=UTC),
               datetime(2026, 1, 9, 17, 59, tzinfo=UTC), datetime(2026, 1, 9, 18, tzinfo=UTC),
               datetime(2026, 1, 20, 12, tzinfo=UTC), datetime(2026, 1, 21, 0, tzinfo=UTC),
               *(moment + delta for moment in handoffs[1:12:3] for delta in (-timedelta(minutes=1), timedelta(0))),
               START - timedelta(days=6), START + timedelta(weeks=11, days=6)]
    config = tmp_path / "gateway.yaml"
    for at in samples:
        expected = _cli(config, at)
        assert {k: v for k, v in _on_call(team_events, at).items()} == {
            k: v for k, v in expected.items() if k[0] == "sre"}, at
        assert _on_call(dba_events, at) == {("dba", "primary"): "carol"}, at
        mine = {**_on_call(carol_events, at), **_on_call(everyone["alice"], at), **_on_call(everyone["bob"], at)}
        assert mine == {k: v for k, v in expected.items() if k[0] == "sre"} | {("dba", "primary"): "carol"}, at
    assert _on_call(team_events, datetime(2026, 1, 8, 12, tzinfo=UTC)) == {
        ("sre", "primary"): "bob", ("sre", "secondary"): "alice"}  # the store's override, swapped in


async def test_an_override_splits_a_shift_and_uids_stay_stable(gateway: Gateway) -> None:
    url = (await _feed(gateway, {"team": "sre"}))["url"]
    before = await _events(gateway, url)
    # Week of 2026-01-12 09:00: bob primary. A store override puts carol on for a day in the middle.
    status, _ = await gateway.post("/api/v1/teams/sre/overrides", {
        "role": "primary", "engineer": "carol", "start": "2026-01-14T09:00:00Z", "end": "2026-01-15T09:00:00Z"})
    assert status == 201
    await gateway.clock.advance(3600)
    after = await _events(gateway, url)

    def primaries(events: list[icalendar.Event]) -> list[tuple[datetime, datetime, str, str]]:
        return sorted((e.decoded("dtstart"), e.decoded("dtend"), str(e["summary"]), str(e["uid"]))
                      for e in events if str(e["summary"]).startswith("Primary")
                      and WEEK_START <= e.decoded("dtstart") < WEEK_START + timedelta(days=7))

    week = primaries(before)
    assert [(s, e, summary) for s, e, summary, _ in week] == [
        (datetime(2026, 1, 12, 9, tzinfo=UTC), datetime(2026, 1, 19, 9, tzinfo=UTC), "Primary on call: Bob (sre)")]
    split = primaries(after)
    assert [(s, e, summary) for s, e, summary, _ in split] == [
        (datetime(2026, 1, 12, 9, tzinfo=UTC), datetime(2026, 1, 14, 9, tzinfo=UTC), "Primary on call: Bob (sre)"),
        (datetime(2026, 1, 14, 9, tzinfo=UTC), datetime(2026, 1, 15, 9, tzinfo=UTC), "Primary on call: Carol (sre)"),
        (datetime(2026, 1, 15, 9, tzinfo=UTC), datetime(2026, 1, 19, 9, tzinfo=UTC), "Primary on call: Bob (sre)"),
    ]
    assert split[0][3] == week[0][3]  # the shift's first part keeps its UID: calendar apps update it in place
    assert len({uid for *_, uid in split}) == 3
    # Unchanged events keep their UIDs from one fetch to the next; DTSTAMP is the (injected) clock's now.
    unchanged = {str(e["uid"]) for e in before} & {str(e["uid"]) for e in after}
    assert len(unchanged) >= len(before) - 2
    assert all(e.decoded("dtstamp") == START + timedelta(hours=1) for e in after)
    # The window: a week back and twelve weeks ahead, nothing entirely outside it.
    now = START + timedelta(hours=1)
    assert all(e.decoded("dtend") > now - timedelta(weeks=1) and e.decoded("dtstart") < now + timedelta(weeks=12)
               for e in after)
    assert min(e.decoded("dtstart") for e in after) <= now - timedelta(weeks=1)
    assert max(e.decoded("dtend") for e in after) >= now + timedelta(weeks=12)


def test_a_rotation_of_very_short_shifts_is_cut_short_not_slow() -> None:
    from gateway.calendar_feed import MAX_STEPS, stretches
    from gateway.config import Rotation, Team

    rotation = Rotation(kind="custom", shift=timedelta(seconds=1), start=START.date(), handoff=START.time(),
                        time_zone="UTC")
    team = Team(id="t", members=("a", "b"), rotation=rotation)
    found = stretches(team, START, START + timedelta(weeks=4))
    assert len(found) == 2 * MAX_STEPS
    assert found[-1].open_end and found[-1].end == START + timedelta(seconds=MAX_STEPS)


def test_many_overrides_are_looked_at_in_chunks_with_the_same_answers() -> None:
    """Stretches are computed chunk by chunk (each with the overrides overlapping it): the same answers as
    ``who_is_on_call`` on the whole team, overlapping and long overrides included."""
    from gateway.calendar_feed import CHUNK, feed_stretches
    from gateway.config import Override, Rotation, Team
    from gateway.oncall import who_is_on_call

    rng = random.Random(3)
    rotation = Rotation(kind="daily", shift=timedelta(days=1), start=START.date(), handoff=START.time(),
                        time_zone="Europe/Berlin")
    overrides = tuple(Override(start=START + timedelta(minutes=rng.randrange(-20_000, 130_000)),
                               end=START + timedelta(minutes=rng.randrange(130_000, 140_000)) if i % 50 == 0
                               else START + timedelta(minutes=rng.randrange(-20_000, 130_000) + 90_000),
                               role=rng.choice(("primary", "secondary")), engineer=rng.choice("abc"))
                      for i in range(CHUNK * 8))
    overrides = tuple(o if o.start < o.end else Override(start=o.end, end=o.start, role=o.role, engineer=o.engineer)
                      for o in overrides)
    team = Team(id="t", members=("a", "b", "c"), rotation=rotation, overrides=overrides)
    items = feed_stretches([team], START)
    edges = sorted({m for o in overrides for m in (o.start, o.end) if START - timedelta(weeks=1) <= m})
    moments = [START - timedelta(weeks=1) + timedelta(weeks=13) * rng.random() for _ in range(1000)]
    moments += [m for m in edges if m < START + timedelta(weeks=12)]  # the edges themselves, chunk cuts among them
    for at in moments:
        answer = who_is_on_call(team, at)
        held = {s.role: s.engineer for s in items if s.start <= at < s.end}
        expected = {role: who for role, who in (("primary", answer.primary), ("secondary", answer.secondary))}
        assert held == expected, at


def test_a_long_stretch_keeps_its_start_and_uid_as_the_window_slides() -> None:
    from gateway.calendar_feed import feed_stretches, uid
    from gateway.config import Override, Team

    team = Team(id="dba", members=("carol",), rotation=None, overrides=(
        Override(start=datetime(2026, 1, 10, tzinfo=UTC), end=datetime(2026, 1, 11, tzinfo=UTC), role="primary",
                 engineer="dave"),))
    early = [s for s in feed_stretches([team], datetime(2026, 1, 12, tzinfo=UTC)) if s.engineer == "carol"]
    later = [s for s in feed_stretches([team], datetime(2026, 3, 20, tzinfo=UTC)) if s.engineer == "carol"]
    since = [s for s in early if s.start == datetime(2026, 1, 11, tzinfo=UTC)]
    assert len(since) == 1
    assert [(s.start, uid(s, "x")) for s in later] == [(since[0].start, uid(since[0], "x"))]  # was "open" later
    much_later = feed_stretches([team], datetime(2027, 3, 20, tzinfo=UTC))
    assert [uid(s, "x") for s in much_later] == [uid(since[0], "x")]
    # Before the override: on since before anything is looked at, an "open" start that stays so.
    before = [s for s in early if s.start < datetime(2026, 1, 10, tzinfo=UTC)]
    assert len(before) == 1 and before[0].open_start
    assert uid(before[0], "x") == uid(feed_stretches([team], datetime(2026, 1, 2, tzinfo=UTC))[0], "x")


async def test_the_feed_is_built_off_the_event_loop_and_is_no_itip_message(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gateway.web.calendar as calendar_web

    threads: list[int] = []
    real = calendar_web.feed_stretches

    def recorded(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(calendar_web, "feed_stretches", recorded)
    status, _, body = await _fetch(gateway, (await _feed(gateway, {"team": "sre"}))["url"])
    assert status == 200 and threads and threads[0] != threading.get_ident()  # paging goes on meanwhile
    assert b"METHOD:" not in body  # a subscribed calendar, not an invitation (RFC 5546) to act on


# noc: a layered team in Berlin's time. Weekdays alice, bob, carol (weekly from Monday 2026-01-05 09:00); above
# them dave and erin, Friday 18:00 to Monday 09:00 (weekly from Friday 2026-01-02 18:00). The feed's window (from
# 2025-12-31 to 2026-04-01) holds the change to summer time on 2026-03-29.
LAYERED = BASE_CONFIG.replace("teams:\n", """teams:
  noc:
    layers:
      - name: weekdays
        members: [alice, bob, carol]
        rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: Europe/Berlin}
      - name: weekend
        members: [dave, erin]
        rotation: {kind: weekly, start: 2026-01-02, handoff: "18:00", time_zone: Europe/Berlin}
        when: [weekends]
""").replace("engineers:\n", """engineers:
  dave: {name: Dave, phones: ["+15550000004"]}
  erin: {name: Erin, phones: ["+15550000005"]}
""") + """
time_windows:
  weekends:
    time_zone: Europe/Berlin
    weekly:
      - {days: fri, from: "18:00", to: "24:00"}
      - {days: sat-sun, from: "00:00", to: "24:00"}
      - {days: mon, from: "00:00", to: "09:00"}
"""


async def test_a_layered_teams_feed_says_what_who_is_on_call_says(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    from zoneinfo import ZoneInfo

    from gateway.oncall import who_is_on_call

    config = load_config(write_config(tmp_path, LAYERED))
    clock = FakeClock()
    layered = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
    team_events = await _events(layered, (await _feed(layered, {"team": "noc"}))["url"])
    dave_events = await _events(layered, (await _feed(layered, {"engineer": "dave"}))["url"])
    berlin = ZoneInfo("Europe/Berlin")
    first, last = START - timedelta(weeks=1), START + timedelta(weeks=12)
    days = [(first + timedelta(days=n)).astimezone(berlin).date() for n in range((last - first).days + 1)]
    edges = [datetime(day.year, day.month, day.day, hour, tzinfo=berlin).astimezone(UTC)
             for day in days for weekday, hour in ((4, 18), (0, 9)) if day.weekday() == weekday]
    rng = random.Random(7)
    samples = [moment + delta for moment in edges for delta in (-timedelta(seconds=1), timedelta(0))]
    samples += [first + (last - first) * rng.random() for _ in range(300)]
    for at in samples:
        if not first <= at < last:
            continue
        answer = who_is_on_call(config.teams["noc"], at)
        expected = {("noc", role): who for role, who in (("primary", answer.primary),
                                                         ("secondary", answer.secondary)) if who is not None}
        assert _on_call(team_events, at) == expected, at
        assert _on_call(dave_events, at) == {key: who for key, who in expected.items() if who == "dave"}, at
    starts = {(event.decoded("dtstart"), str(event["summary"])) for event in team_events}
    # the weekend around the change to summer time: Friday 18:00 CET (17:00Z), Monday 09:00 CEST (07:00Z)
    assert (datetime(2026, 3, 27, 17, tzinfo=UTC), "Primary on call: Dave (noc)") in starts
    assert (datetime(2026, 3, 30, 7, tzinfo=UTC), "Primary on call: Alice (noc)") in starts
    assert len(edges) >= 24 and len([e for e in team_events if "Primary" in str(e["summary"])]) >= 24
