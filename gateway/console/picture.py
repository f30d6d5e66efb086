"""The on-call picture: who holds each role over the coming days, rotation shifts (each with its layer, for a
layered team) with overrides over them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.config import Config, Engineer, Override, Team
from gateway.layers import active_layer
from gateway.oncall import who_is_on_call

DAYS = 14


@dataclass(frozen=True, kw_only=True)
class Bar:
    engineer: str  # engineer id
    name: str
    start: float
    end: float
    left: float  # percent of the picture's width
    width: float
    override: bool = False
    layer: str = ""  # the layer in force (a layered team's shifts): a shift is cut where the layer changes


@dataclass(frozen=True, kw_only=True)
class Lane:
    role: str
    shifts: list[Bar]  # the rotation alone
    overrides: list[Bar]  # drawn over the shifts


@dataclass(frozen=True, kw_only=True)
class Picture:
    start: float
    end: float
    days: list[tuple[float, str]]  # (left %, label)
    lanes: list[Lane]


def _segments(team: Team, role: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime, str, str]]:
    out: list[tuple[datetime, datetime, str, str]] = []
    at = start
    while at < end:
        answer = who_is_on_call(team, at)
        until = min(answer.until or end, end)
        who = answer.primary if role == "primary" else answer.secondary
        layer = found.name if (found := active_layer(team, at)) is not None else ""
        if who is not None:
            if out and out[-1][2] == who and out[-1][3] == layer and out[-1][1] == at:
                out[-1] = (out[-1][0], until, who, layer)
            else:
                out.append((at, until, who, layer))
        at = until
    return out


def picture(config: Config, team: Team, now: float,
            engineer_by_id: Callable[[str], Engineer | None] | None = None) -> Picture:
    """``team`` (its overrides included) from ``now`` for :data:`DAYS` days; ``engineer_by_id`` also knows
    directory people (gateway.directory.roster.Roster.engineer)."""
    lookup = engineer_by_id if engineer_by_id is not None else config.engineers.get
    start = datetime.fromtimestamp(now, tz=UTC)
    end = start + timedelta(days=DAYS)
    span = (end - start).total_seconds()

    def bar(a: datetime, b: datetime, who: str, override: bool = False, layer: str = "") -> Bar:
        engineer = lookup(who)
        return Bar(engineer=who, name=engineer.name if engineer else who, start=a.timestamp(), end=b.timestamp(),
                   left=round((a - start).total_seconds() / span * 100, 3),
                   width=round((b - a).total_seconds() / span * 100, 3), override=override, layer=layer)

    plain = dataclasses.replace(team, overrides=())
    lanes = []
    for role in ("primary", "secondary"):
        shifts = [bar(a, b, who, layer=layer) for a, b, who, layer in _segments(plain, role, start, end)]
        overrides = [bar(max(o.start, start), min(o.end, end), o.engineer, True)
                     for o in _active(team.overrides, role, start, end)]
        if shifts or overrides:
            lanes.append(Lane(role=role, shifts=shifts, overrides=overrides))
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    for n in range(1, DAYS + 1):
        day = midnight + timedelta(days=n)
        if day < end:
            days.append((round((day - start).total_seconds() / span * 100, 3), f"{day:%a} {day.day}"))
    return Picture(start=start.timestamp(), end=end.timestamp(), days=days, lanes=lanes)


def _active(overrides: tuple[Override, ...], role: str, start: datetime, end: datetime) -> list[Override]:
    return [o for o in overrides if o.role == role and o.end > start and o.start < end]
