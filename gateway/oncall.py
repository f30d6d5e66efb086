"""Who is on call for a team at a given moment: the rotation (or the stack of layers), then the overrides on top."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.config import Override, Rotation, Team
from gateway.layers import HORIZON, is_active, layers_of, next_window_change


@dataclass(frozen=True, kw_only=True)
class OnCall:
    team: str
    primary: str | None  # engineer id
    secondary: str | None  # engineer id; None for a one-person team
    until: datetime | None  # aware UTC: the next moment the answer can change; None if never


def handoff_at(rotation: Rotation, shift: int) -> datetime:
    """The start of shift number ``shift`` (0 is the first handoff), in UTC.

    Daily and weekly shifts count local calendar days, so the handoff stays at
    the same wall-clock time across DST changes; custom shifts are exact durations.
    """
    zone = ZoneInfo(rotation.time_zone)
    if rotation.kind in ("daily", "weekly"):
        day = rotation.start + timedelta(days=shift * rotation.shift.days)
        return datetime.combine(day, rotation.handoff, tzinfo=zone).astimezone(UTC)
    first = datetime.combine(rotation.start, rotation.handoff, tzinfo=zone).astimezone(UTC)
    return first + shift * rotation.shift


def shift_index(rotation: Rotation, at: datetime) -> int:
    """How many whole shifts have begun since the first handoff (negative before it)."""
    at = at.astimezone(UTC)  # compare in UTC: same-zone aware datetimes compare by wall time
    if rotation.kind in ("daily", "weekly"):
        local_day = at.astimezone(ZoneInfo(rotation.time_zone)).date()
        shift = (local_day - rotation.start).days // rotation.shift.days
    else:
        shift = (at - handoff_at(rotation, 0)) // rotation.shift
    while handoff_at(rotation, shift) > at:
        shift -= 1
    while handoff_at(rotation, shift + 1) <= at:
        shift += 1
    return shift


def _latest(overrides: tuple[Override, ...], role: str, at: datetime) -> Override | None:
    active = [o for o in overrides if o.role == role and o.start <= at < o.end]
    return active[-1] if active else None


def who_is_on_call(team: Team, at: datetime) -> OnCall:
    """Primary and secondary of ``team`` at ``at`` (aware), and until when that holds.

    The rotation's answer is that of the highest active layer for a layered team
    (``gateway.layers``). Overrides replace it while they last; the latest-listed
    wins when several cover ``at``. Replacing the primary with the current
    secondary swaps the two (likewise for the secondary). When a primary and a
    secondary override name the same engineer, the primary override wins.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("who_is_on_call needs an aware datetime")
    at = at.astimezone(UTC)
    edges = [moment for item in team.overrides for moment in (item.start, item.end) if moment > at]
    primary, secondary, boundaries = _from_layers(team, at, min(edges, default=None))

    override = _latest(team.overrides, "primary", at)
    if override is not None and override.engineer != primary:
        if override.engineer == secondary:
            secondary = primary
        primary = override.engineer
    override = _latest(team.overrides, "secondary", at)
    if override is not None and override.engineer != secondary:
        if override.engineer == primary:
            # A swap, unless a primary override put them there or nobody could take over.
            if _latest(team.overrides, "primary", at) is None and secondary is not None:
                primary, secondary = secondary, override.engineer
        else:
            secondary = override.engineer

    boundaries.extend(edges)
    return OnCall(team=team.id, primary=primary, secondary=secondary, until=min(boundaries, default=None))


def _rotation(members: tuple[str, ...], rotation: Rotation | None,
              at: datetime) -> tuple[str | None, str | None, datetime | None]:
    """Primary, secondary and next handoff of one rotation (None: nobody, or no handoff ever)."""
    shift = 0
    handoff = None
    if rotation is not None:
        shift = shift_index(rotation, at)
        handoff = handoff_at(rotation, shift + 1)
    count = len(members)
    primary = members[shift % count] if count else None
    secondary = members[(shift + 1) % count] if count > 1 else None
    return primary, secondary, handoff


def _from_layers(team: Team, at: datetime, soon: datetime | None) -> tuple[str | None, str | None, list[datetime]]:
    """Primary and secondary before overrides, and the moments that answer can change (handoffs and window
    changes of every layer looked at; a window change after ``soon`` or ``HORIZON`` is not looked for)."""
    primary: str | None = None
    secondary: str | None = None
    changes: list[datetime] = []
    looked_at = []
    for layer in reversed(layers_of(team)):  # the highest first
        looked_at.append(layer)
        if not is_active(layer, at):
            continue
        first, second, handoff = _rotation(layer.members, layer.rotation, at)
        if handoff is not None:
            changes.append(handoff)
        for who in (first, second):  # the highest layer's pair; below it, a secondary when that layer had none
            if who is None or who == primary:
                continue
            if primary is None:
                primary = who
            elif secondary is None:
                secondary = who
        if primary is not None and secondary is not None:
            break
    windowed = [layer for layer in looked_at if layer.when]
    if windowed:
        limit = min([*changes, *([soon] if soon is not None else []), at + HORIZON])
        changes.extend(next_window_change(layer, at, limit) for layer in windowed)
    return primary, secondary, changes
