"""Who is on call for a team at a given moment: the rotation, then the overrides on top."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.config import Override, Rotation, Team


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

    Overrides replace the rotation's answer while they last; the latest-listed
    wins when several cover ``at``. Replacing the primary with the current
    secondary swaps the two (likewise for the secondary). When a primary and a
    secondary override name the same engineer, the primary override wins.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("who_is_on_call needs an aware datetime")
    at = at.astimezone(UTC)
    members = team.members
    boundaries: list[datetime] = []
    shift = 0
    if team.rotation is not None:
        shift = shift_index(team.rotation, at)
        boundaries.append(handoff_at(team.rotation, shift + 1))
    count = len(members)
    primary = members[shift % count] if count else None
    secondary = members[(shift + 1) % count] if count > 1 else None

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

    for item in team.overrides:
        boundaries.extend(moment for moment in (item.start, item.end) if moment > at)
    return OnCall(team=team.id, primary=primary, secondary=secondary, until=min(boundaries, default=None))
