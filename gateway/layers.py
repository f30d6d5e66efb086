"""Layered schedules: a team's on-call as a stack of rotations, each optionally limited to time windows.

``layers:`` lists a team's layers bottom first: each later layer sits above the earlier ones. A layer is
active at a moment when it has no ``when`` or the moment lies in one of its windows; the highest active
layer gives the primary (and the secondary, the next in its rotation). When that layer has one member,
the secondary falls through to the active layers below it, top down: each offers its primary, then its
secondary, and the first one who is not the primary becomes the secondary. A moment no layer covers has
nobody on call (overrides still apply). Overrides sit above every layer, as for a team of one rotation.

A team written with ``members`` and ``rotation`` is one layer with no windows (``layers_of``).

``gateway.oncall.who_is_on_call`` walks the stack; this module holds what the layers add: whether one is
active, and when that next changes, looked for no further than ``HORIZON`` (the scheduler asks for every
step it plans, so a window that does not change for months must not cost a year of candidates per answer).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway import time_windows
from gateway.config import Config, Layer, Team, TimeWindow

#: how far ahead a layer's windows are looked at: with a window among the layers looked at, an answer's
#: ``until`` is never further ahead than this (the same answer may then come again)
HORIZON = timedelta(days=7)


def layers_of(team: Team) -> tuple[Layer, ...]:
    """The team's layers, bottom first; a team without ``layers:`` is its one rotation."""
    if team.layers:
        return team.layers
    return (Layer(name="", members=team.members, rotation=team.rotation),)


def is_active(layer: Layer, at: datetime) -> bool:
    return not layer.when or any(time_windows.contains(window, at) for window in layer.when)


def next_window_change(layer: Layer, at: datetime, limit: datetime) -> datetime:
    """The first moment after ``at`` at which ``layer`` may become active or stop being so, or ``limit`` when
    that is not before ``limit`` (a moment worth asking again)."""
    return min([*(_next_change(window, at, limit) for window in layer.when), limit])


#: per window (by id, the window itself kept so the id is not reused): the last stretch found without a change,
#: [start, end), and whether ``end`` is a change (else only the end of what was looked at). Each entry is one
#: tuple, read and replaced whole, so the calendar feeds (built in a worker thread) and the event loop can share
#: it; emptied when it holds ``_KNOWN_MAX`` windows (each config loaded brings new ones: tests, check-config)
_known: dict[int, tuple[TimeWindow, datetime, datetime, bool]] = {}
_KNOWN_MAX = 1024


def _next_change(window: TimeWindow, at: datetime, limit: datetime) -> datetime:
    """``time_windows.next_change`` cut at ``limit``. The scheduler asks again and again as time moves forward,
    so the last answer per window mostly answers the next question too: a window does not change between the
    moment asked about and the change found (nor, when none was found, up to the end of what was looked at)."""
    known = _known.get(id(window))
    if known is not None and known[0] is window and known[1] <= at < known[2] and (known[3] or limit <= known[2]):
        return min(known[2], limit)
    change = time_windows.next_change(window, at, horizon=limit - at)
    if len(_known) >= _KNOWN_MAX:
        _known.clear()
    _known[id(window)] = (window, at, change if change is not None else limit, change is not None)
    return min(change, limit) if change is not None else limit


def active_layer(team: Team, at: datetime) -> Layer | None:
    """The layer of a layered team that gives the answer at ``at`` (before overrides); None for a team
    without ``layers:`` or when no layer is active."""
    return next((layer for layer in reversed(team.layers) if is_active(layer, at)), None)


def why_nobody(team: Team, at: datetime) -> str:
    """Said after "nobody is on call": " (no layer is active)" for a layered team none of whose layers covers
    ``at``, else nothing."""
    return " (no layer is active)" if team.layers and active_layer(team, at) is None else ""


def time_zone(team: Team, default: str) -> str:
    """The zone to show a team's times in: its (first) rotation's, else ``default``."""
    return next((layer.rotation.time_zone for layer in layers_of(team) if layer.rotation is not None), default)


def first_gap(team: Team, start: datetime, end: datetime) -> datetime | None:
    """The first moment from ``start`` to ``end`` at which no layer of ``team`` is active (nobody is on call
    but overrides), or None. Only a team whose every layer has ``when`` can have one."""
    if not team.layers or any(not layer.when for layer in team.layers):
        return None
    at = start
    while at < end:
        if not any(is_active(layer, at) for layer in team.layers):
            return at
        limit = min(at + HORIZON, end)
        at = min(next_window_change(layer, at, limit) for layer in team.layers)
    return None


def layer_gaps(config: Config, now: datetime, ahead: timedelta = timedelta(days=400)) -> list[str]:
    """Warnings for ``gateway check-config``: teams whose layers leave a moment uncovered within ``ahead``."""
    found = []
    for team in config.teams.values():
        gap = first_gap(team, now.astimezone(UTC), now.astimezone(UTC) + ahead)
        if gap is not None:
            local = gap.astimezone(ZoneInfo(time_zone(team, config.time_zone)))
            found.append(f"teams.{team.id}.layers: no layer is active at {local:%Y-%m-%d %H:%M %Z} (nobody is on "
                         "call then but overrides); give the bottom layer no when: to cover every moment")
    return found
