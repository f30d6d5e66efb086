"""On-call shifts as an iCalendar feed (RFC 5545), per team or per engineer, generated with ``icalendar``.

What a feed holds: every stretch of one person in one role (primary or secondary) of a team that overlaps
the window from one week before now to twelve weeks after, overrides included (an override splits a shift
in three: before, the override, after). Each stretch is one VEVENT with its whole extent, even where it
reaches outside the window, as far as the span looked at (eight weeks more on each side); a stretch longer
than that is cut at its edge.

UIDs are stable across fetches: made from the team, role, engineer and start, so a calendar app updates an
event in place when only its end moves (an override added later shortens it), and a start cut at the edge
of the span counts as "open" rather than as a moving time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import icalendar

from gateway.config import Config, Team
from gateway.oncall import who_is_on_call

PAST = timedelta(weeks=1)
AHEAD = timedelta(weeks=12)
MARGIN = timedelta(weeks=8)  # looked at beyond the window on each side, so stretches keep their real edges
ROLES = ("primary", "secondary")
MAX_STEPS = 20_000  # answers looked up per team and fetch: a rotation of one-minute shifts is cut short, not slow


@dataclass(frozen=True, kw_only=True)
class Stretch:
    """One person in one role of one team, without a break."""

    team: str
    role: str
    engineer: str
    start: datetime  # aware UTC
    end: datetime  # exclusive
    open_start: bool = False  # began before the span looked at: ``start`` is the span's edge
    open_end: bool = False


def stretches(team: Team, start: datetime, end: datetime) -> list[Stretch]:
    """Every stretch of ``team`` from ``start`` to ``end`` (aware), cut at those edges and marked so."""
    found: list[Stretch] = []
    current: dict[str, tuple[str, datetime] | None] = {role: None for role in ROLES}
    at = start

    def close(role: str, until: datetime, *, open_end: bool) -> None:
        held = current[role]
        if held is not None:
            found.append(Stretch(team=team.id, role=role, engineer=held[0], start=held[1], end=until,
                                 open_start=held[1] == start, open_end=open_end))
        current[role] = None

    steps = 0
    while at < end and steps < MAX_STEPS:
        steps += 1
        answer = who_is_on_call(team, at)
        for role, who in (("primary", answer.primary), ("secondary", answer.secondary)):
            held = current[role]
            if held is not None and held[0] == who:
                continue
            close(role, at, open_end=False)
            if who is not None:
                current[role] = (who, at)
        at = min(answer.until, end) if answer.until is not None else end
    for role in ROLES:
        close(role, min(at, end), open_end=True)
    return sorted(found, key=lambda s: (s.start, ROLES.index(s.role)))


def window(now: datetime) -> tuple[datetime, datetime]:
    """The stretches a feed lists overlap this: from a week ago to twelve weeks ahead."""
    return now - PAST, now + AHEAD


def feed_stretches(teams: Iterable[Team], now: datetime, *, engineer: str | None = None) -> list[Stretch]:
    """The stretches of ``teams`` (of one engineer, when given) that overlap the window around ``now``."""
    first, last = window(now)
    chosen: list[Stretch] = []
    for team in teams:
        for item in stretches(team, first - MARGIN, last + MARGIN):
            if item.end > first and item.start < last and (engineer is None or item.engineer == engineer):
                chosen.append(item)
    return sorted(chosen, key=lambda s: (s.start, s.team, ROLES.index(s.role)))


def uid(item: Stretch, domain: str) -> str:
    start = "open" if item.open_start else item.start.strftime("%Y%m%dT%H%M%SZ")
    key = "\x1f".join((item.team, item.role, item.engineer, start))
    return f"{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}"


def summary(config: Config, item: Stretch) -> str:
    engineer = config.engineers.get(item.engineer)
    name = engineer.name if engineer is not None else item.engineer
    return f"{item.role.capitalize()} on call: {name} ({item.team})"


def ics(config: Config, items: Sequence[Stretch], *, name: str, now: datetime, domain: str) -> bytes:
    """The feed as iCalendar bytes (CRLF lines, folded, as RFC 5545 wants)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//oncall-gateway//on-call shifts//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", name)
    calendar.add("refresh-interval", timedelta(hours=1), parameters={"VALUE": "DURATION"})
    calendar.add("x-published-ttl", "PT1H")
    stamp = now.astimezone(UTC)
    for item in items:
        event = icalendar.Event()
        event.add("uid", uid(item, domain))
        event.add("dtstamp", stamp)
        event.add("dtstart", item.start.astimezone(UTC))
        event.add("dtend", item.end.astimezone(UTC))
        event.add("summary", summary(config, item))
        event.add("categories", [item.role, item.team])
        event.add("transp", "TRANSPARENT")  # being on call is not busy time
        calendar.add_component(event)
    return bytes(calendar.to_ical())
