"""On-call shifts as an iCalendar feed (RFC 5545), per team or per engineer, generated with ``icalendar``.

What a feed holds: every stretch of one person in one role (primary or secondary) of a team that overlaps
the window from one week before now to twelve weeks after, overrides included (an override splits a shift
in three: before, the override, after). Each stretch is one VEVENT with its whole extent, even where it
reaches outside the window: its end as far as the span looked at (eight weeks more on each side), cut
there; its start as far back as it goes (below).

UIDs are stable across fetches: made from the team, role, engineer and start, so a calendar app updates an
event in place when only its end moves (an override added later shortens it). A stretch that began before
the span is looked for further back, so it keeps its real start (and UID) as the window slides; one that
began before the rotation's first handoff (the earliest of its layers'; or 2000) starts "open" in its UID, a
fixed point as well.
(An override added at run time is forgotten nine weeks after it ended, ``gateway.overrides``: a stretch it
bounded then begins earlier, once.)

Cost: only the overrides overlapping a stretch of time can change the answers in it, so the span is
looked at in chunks of ``CHUNK`` override edges, each with those overrides alone: about n x CHUNK
comparisons for n overrides rather than n squared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import icalendar

from gateway.config import Config, Engineer, Team
from gateway.layers import layers_of
from gateway.oncall import handoff_at, who_is_on_call

PAST = timedelta(weeks=1)
AHEAD = timedelta(weeks=12)
MARGIN = timedelta(weeks=8)  # looked at beyond the window on each side, so stretches keep their real edges
ROLES = ("primary", "secondary")
MAX_STEPS = 20_000  # answers looked up per team and fetch: a rotation of one-minute shifts is cut short, not slow
CHUNK = 64  # override edges per chunk of the span (see the cost, above)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)  # a stretch's real start is not looked for before this


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

    edges = sorted({moment for item in team.overrides for moment in (item.start, item.end) if start < moment < end})
    steps = 0
    for cut in [*edges[CHUNK::CHUNK], end]:
        # The answers before ``cut`` depend only on the overrides overlapping [at, cut), and their next
        # change is the same, cut there (the same answer on both sides of a cut keeps one stretch).
        part = replace(team, overrides=tuple(item for item in team.overrides if item.start < cut and item.end > at))
        while at < cut and steps < MAX_STEPS:
            steps += 1
            answer = who_is_on_call(part, at)
            for role, who in (("primary", answer.primary), ("secondary", answer.secondary)):
                held = current[role]
                if held is not None and held[0] == who:
                    continue
                close(role, at, open_end=False)
                if who is not None:
                    current[role] = (who, at)
            at = min(answer.until, cut) if answer.until is not None else cut
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
                chosen.append(_with_real_start(team, item) if item.open_start else item)
    return sorted(chosen, key=lambda s: (s.start, s.team, ROLES.index(s.role)))


def _with_real_start(team: Team, item: Stretch) -> Stretch:
    """``item`` (cut at the span's edge) from when it really began, looked for back to a fixed floor."""
    rotations = [layer.rotation for layer in layers_of(team)]
    floor = LONG_AGO if None in rotations else max(LONG_AGO, min(handoff_at(r, 0) for r in rotations if r))
    if floor >= item.start:
        return item
    earlier = [s for s in stretches(team, floor, item.start) if s.role == item.role]
    if not earlier or earlier[-1].end != item.start:  # too many changes to look through: left open
        return item
    if earlier[-1].engineer != item.engineer:  # it did begin right at the edge
        return replace(item, open_start=False)
    if earlier[-1].open_start:  # on since before the floor
        return replace(item, start=floor)
    return replace(item, start=earlier[-1].start, open_start=False)


def uid(item: Stretch, domain: str) -> str:
    start = "open" if item.open_start else item.start.strftime("%Y%m%dT%H%M%SZ")
    key = "\x1f".join((item.team, item.role, item.engineer, start))
    return f"{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}"


def summary(config: Config, item: Stretch, engineer_by_id: Callable[[str], Engineer | None] | None = None) -> str:
    engineer = (engineer_by_id or config.engineers.get)(item.engineer)
    name = engineer.name if engineer is not None else item.engineer
    return f"{item.role.capitalize()} on call: {name} ({item.team})"


def ics(config: Config, items: Sequence[Stretch], *, name: str, now: datetime, domain: str,
        engineer_by_id: Callable[[str], Engineer | None] | None = None) -> bytes:
    """The feed as iCalendar bytes (CRLF lines, folded, as RFC 5545 wants); ``engineer_by_id`` also knows
    directory people (gateway.directory.roster.Roster.engineer)."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//oncall-gateway//on-call shifts//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    # No METHOD: a subscribed feed is a calendar, not an iTIP message (RFC 5546). METHOD:PUBLISH would call
    # for an ORGANIZER in every event, and Outlook treats a file with METHOD as an invitation to act on;
    # Google, Apple and Outlook subscribe to feeds without it alike (RFC 5545 makes it optional).
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
        event.add("summary", summary(config, item, engineer_by_id))
        event.add("categories", [item.role, item.team])
        event.add("transp", "TRANSPARENT")  # being on call is not busy time
        calendar.add_component(event)
    return bytes(calendar.to_ical())
