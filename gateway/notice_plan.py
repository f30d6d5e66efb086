"""When handoff notices and on-call summaries fall due, and what they say. Pure: no I/O, no clock.

Who is on call comes only from ``who_is_on_call(team, at)`` and its ``until`` (the next moment the answer can
change), handed in as ``who``: walking from one ``until`` to the next visits every moment a role can change
hands, whatever the schedule is made of (a rotation, layers, overrides).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from core.sms_segments import segments
from gateway.config import OnCallSummary
from gateway.oncall import OnCall

#: the team's answer at a moment (aware): ``lambda at: who_is_on_call(team, at)``
Who = Callable[[datetime], OnCall]

ROLES = ("primary", "secondary")
#: answers walked at most in one look ahead: a schedule of many tiny overrides cannot stall the planner
MAX_STEPS = 2000
#: how far ahead a handoff is looked for, and a role's end after it
HORIZON = timedelta(days=90)
#: a notice's or summary's length: two SMS segments (306 GSM characters; 134 when a character, say in an alert's
#: title, makes the text UCS-2)
MAX_SEGMENTS = 2
TITLES = 3  # open alerts named in a handoff notice (the count says how many there are)
TITLE_LENGTH = 40


@dataclass(frozen=True, kw_only=True)
class Handoff:
    """``engineer`` takes ``role`` at ``at`` (UTC) and holds it until ``until`` (None: no change in sight)."""

    role: str
    engineer: str
    at: datetime
    until: datetime | None


def holder(answer: OnCall, role: str) -> str | None:
    return answer.primary if role == "primary" else answer.secondary


def _answers(who: Who, start: datetime, end: datetime) -> Iterator[OnCall]:
    """The answer at ``start``, then at each moment it can change, up to ``end`` (at most MAX_STEPS)."""
    answer = who(start)
    yield answer
    for _ in range(MAX_STEPS):
        if answer.until is None or answer.until > end:
            return
        answer = who(answer.until)
        yield answer


def _moment(previous: OnCall) -> datetime:
    assert previous.until is not None  # _answers only moves on through an until
    return previous.until


def handoffs(who: Who, *, after: datetime, roles: tuple[str, ...]) -> Iterator[Handoff]:
    """The handoffs after ``after``, in time order: the moments a role passes to someone else.

    A moment where the role stays with the same person (an override that changes nothing for it) is none.
    """
    previous: OnCall | None = None
    for answer in _answers(who, after, after + HORIZON):
        if previous is not None:
            at = _moment(previous)
            for role in roles:
                incoming = holder(answer, role)
                if incoming is not None and incoming != holder(previous, role):
                    yield Handoff(role=role, engineer=incoming, at=at, until=_held_until(who, at, role))
        previous = answer


def _held_until(who: Who, at: datetime, role: str) -> datetime | None:
    """The first moment after ``at`` that ``role`` passes from its holder at ``at`` to anyone else."""
    previous: OnCall | None = None
    for answer in _answers(who, at, at + HORIZON):
        if previous is not None and holder(answer, role) != holder(previous, role):
            return _moment(previous)
        previous = answer
    return None


def changes(who: Who, *, after: datetime, limit: int) -> list[tuple[datetime, OnCall]]:
    """The next ``limit`` moments after ``after`` where the primary or secondary changes, with the new answer."""
    found: list[tuple[datetime, OnCall]] = []
    previous: OnCall | None = None
    for answer in _answers(who, after, after + HORIZON):
        if previous is not None and (answer.primary, answer.secondary) != (previous.primary, previous.secondary):
            found.append((_moment(previous), answer))
            if len(found) == limit:
                break
        previous = answer
    return found


# ---------------------------------------------------------------- summaries


def _scheduled_on(summary: OnCallSummary, day: date) -> datetime | None:
    if summary.every == "weekly" and day.weekday() != summary.day:
        return None
    return datetime.combine(day, summary.at, tzinfo=ZoneInfo(summary.time_zone)).astimezone(UTC)


def summary_times(summary: OnCallSummary, now: datetime) -> tuple[datetime, datetime]:
    """The summary's latest scheduled moment at or before ``now``, and its next one after."""
    today = now.astimezone(ZoneInfo(summary.time_zone)).date()
    moments = [moment for offset in range(-8, 9)
               if (moment := _scheduled_on(summary, today + timedelta(days=offset))) is not None]
    return max(m for m in moments if m <= now), min(m for m in moments if m > now)


# ---------------------------------------------------------------------- texts


def when(moment: datetime, zone: str) -> str:
    """``Thu 8 Jan 09:00`` in ``zone``."""
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%a} {local.day} {local:%b %H:%M}"


def fit(text: str) -> str:
    """At most MAX_SEGMENTS SMS segments: a longer text is cut at a word and ends with '...'."""
    if segments(text) <= MAX_SEGMENTS:
        return text
    cut = text[:153 * MAX_SEGMENTS]  # a longer one never fits
    while segments(cut + "...") > MAX_SEGMENTS:
        cut = cut[:-1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."


def handoff_text(*, team: str, handoff: Handoff, zone: str, open_alerts: int, titles: list[str],
                 at_least: bool = False) -> str:
    """The SMS: team, role, from when to when (in the team's zone) and the team's open alerts (``at_least``:
    there may be more than ``open_alerts``, the count read)."""
    zone_name = handoff.at.astimezone(ZoneInfo(zone)).tzname() or zone
    until = f"to {when(handoff.until, zone)}" if handoff.until is not None else "until further notice"
    text = f"On call: you are {handoff.role} for {team} from {when(handoff.at, zone)} {until} ({zone_name})."
    if not open_alerts:
        return fit(f"{text} No open alerts.")
    named = "; ".join(_short(title) for title in titles[:TITLES])
    return fit(f"{text} Open alerts: {open_alerts}{'+' if at_least else ''}: {named}")


def _short(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= TITLE_LENGTH else title[:TITLE_LENGTH - 3].rstrip() + "..."


def summary_text(*, team: str, at: datetime, now: OnCall, coming: list[tuple[datetime, OnCall]], zone: str,
                 name: Callable[[str | None], str]) -> str:
    """Who is on call now and the coming changes, in the team's zone."""
    zone_name = at.astimezone(ZoneInfo(zone)).tzname() or zone
    text = f"On call for {team}, {when(at, zone)} ({zone_name}): {_pair(now, name)}."
    if coming:
        text += " Next: " + "; ".join(f"{when(moment, zone)} {_pair(answer, name)}" for moment, answer in coming)
    else:
        text += " No change ahead."
    return fit(text)


def _pair(answer: OnCall, name: Callable[[str | None], str]) -> str:
    pair = f"primary {name(answer.primary)}"
    return pair + (f", secondary {name(answer.secondary)}" if answer.secondary is not None else "")
