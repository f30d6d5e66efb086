"""Overrides added at run time, merged into the config's teams; kept in memory, reloaded on every change.

On-call resolution stays pure (``gateway.oncall.who_is_on_call(team, at)`` reads ``team.overrides``): this
module only builds the Team it is given. The YAML's overrides come first and the store's after them in
creation order, so the latest one added wins where they overlap, as the config documents.

With several gateways on one PostgreSQL, a change is pushed to every gateway (``{"overrides": team}`` on
channel 'gateway', in the transaction that makes it) and each reloads that team (``Schedule.reload``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from core.clock import Clock, SystemClock
from gateway import calendar_feed
from gateway.config import Config, Override, Team
from gateway.refresh import read_again_every
from gateway.store import NewOverride, Store, StoredOverride

log = logging.getLogger(__name__)

REFRESH_S = 60.0  # every team's overrides are read again this often, whatever the pushes said
FORGOTTEN_AFTER = calendar_feed.PAST + calendar_feed.MARGIN  # the calendar feeds' look-back: older ends unused


def as_override(stored: StoredOverride) -> Override:
    return Override(start=datetime.fromtimestamp(stored.start, UTC), end=datetime.fromtimestamp(stored.end, UTC),
                    role=stored.role, engineer=stored.engineer)


def merged(team: Team, stored: Sequence[StoredOverride], *, warned: set[int] | None = None) -> Team:
    """``team`` with the store's overrides after its own (creation order: the latest wins).

    An override naming an engineer who is no longer a member of the team (removed from the YAML since) is
    left out, with a warning (once per override when ``warned`` remembers them): nobody could page them.
    """
    ours = []
    for item in sorted(stored, key=lambda item: item.id):
        if item.team != team.id:
            continue
        if item.engineer not in team.members:
            if warned is None or item.id not in warned:
                log.warning("override %d of team %s ignored: %s is not a member of the team (any more)",
                            item.id, team.id, item.engineer)
                if warned is not None:
                    warned.add(item.id)
            continue
        ours.append(as_override(item))
    return replace(team, overrides=team.overrides + tuple(ours)) if ours else team


class Schedule:
    """The teams as they stand now: the config's, with the store's overrides merged in."""

    def __init__(self, config: Config, store: Store, clock: Clock | None = None,
                 directory_members: Callable[[str], tuple[str, ...]] | None = None) -> None:
        self.config = config
        # A directory team's members as last fetched (gateway.directory.roster.Roster.members)
        self.directory_members = directory_members
        self.store = store
        self.clock = clock or SystemClock()
        self._stored: dict[str, list[StoredOverride]] = {}
        self._teams: dict[str, Team] = dict(config.teams)
        self._lock = asyncio.Lock()  # one reload at a time: a slow read cannot overwrite a newer one
        self._warned: set[int] = set()  # overrides of former members, warned about once
        self._listeners: list[Callable[[str], None]] = []  # told a team's id when its overrides changed

    async def load(self) -> None:
        """Read every team's overrides (at start, and after being cut off from the other gateways)."""
        async with self._lock:
            everything = await self.store.list_overrides()
            for team_id in self.config.teams:
                self._set(team_id, [item for item in everything if item.team == team_id])

    async def reload(self, team_id: str) -> None:
        """Read one team's overrides again (after a change here or on another gateway)."""
        if team_id not in self.config.teams:
            return
        async with self._lock:
            self._set(team_id, await self.store.list_overrides(team_id))

    async def keep_fresh(self) -> None:
        """Read every team's overrides again every ``REFRESH_S`` (one query): a safety net for a change pushed
        by another gateway and lost (the push is the fast path); runs until cancelled."""
        await read_again_every(REFRESH_S, self.load, what="overrides")

    def _set(self, team_id: str, stored: list[StoredOverride]) -> None:
        self._stored[team_id] = stored
        # Overrides long over are left out: every answer and calendar fetch would pay for them (the teams are
        # built again at every reload, at least every REFRESH_S). An answer for a moment that long ago
        # (/api/v1/oncall?at=) no longer shows them.
        recent = self.clock.now() - FORGOTTEN_AFTER.total_seconds()
        before = self._teams.get(team_id)
        self._teams[team_id] = merged(self._base(team_id), [item for item in stored if item.end > recent],
                                      warned=self._warned)
        if self._teams[team_id] != before:
            for listener in self._listeners:
                listener(team_id)

    def _base(self, team_id: str) -> Team:
        """The config's team; a directory team with its members as last fetched."""
        team = self.config.teams[team_id]
        if team.directory is not None and self.directory_members is not None:
            team = replace(team, members=self.directory_members(team_id))
        return team

    def rebuild(self, team_id: str) -> None:
        """A directory team's members changed: build the team again with the overrides already read."""
        if team_id in self.config.teams:
            self._set(team_id, self._stored.get(team_id, []))

    def team(self, team_id: str) -> Team | None:
        """The team with every override in force, or None when the config has no such team."""
        return self._teams.get(team_id)

    def teams(self) -> list[Team]:
        return [self._teams[team_id] for team_id in self.config.teams]

    def stored(self, team_id: str) -> list[StoredOverride]:
        """The team's overrides added at run time (live ones, creation order)."""
        return list(self._stored.get(team_id, ()))

    async def add(self, new: NewOverride, *, now: float) -> StoredOverride:
        added = await self.store.add_override(new, now=now)
        await self.reload(new.team)
        log.info("override %d added by %s: %s is %s of team %s from %s to %s", added.id, added.created_by,
                 added.engineer, added.role, added.team, _when(added.start), _when(added.end))
        return added

    async def delete(self, override_id: int, *, team: str, by: str, now: float) -> StoredOverride | None:
        deleted = await self.store.delete_override(override_id, team=team, by=by, now=now)
        if deleted is not None:
            await self.reload(team)
            log.info("override %d of team %s removed by %s", override_id, team, by)
        return deleted

    def on_change(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(team_id)`` whenever a team's overrides change (here, or pushed by another gateway)."""
        self._listeners.append(listener)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


# ------------------------------------------------------------ for the CLI


def read_stored_overrides(config: Config) -> list[StoredOverride]:
    """The store's live overrides, read without changing anything (``gateway oncall``).

    A SQLite file that does not exist yet, or predates the overrides table, has none; a store that cannot
    be read raises ``OSError``/``sqlite3.Error``/a driver error for the caller to report.
    """
    if config.store_url is not None:
        return asyncio.run(_read_postgres(config.store_url, config.store_password))
    if not config.store_path.exists():
        return []
    from gateway.sqlite_store import OVERRIDE_COLUMNS, override_from_row

    db = sqlite3.connect(f"{config.store_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'overrides'").fetchone() is None:
            return []
        rows = db.execute(f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE deleted_at IS NULL ORDER BY id")
        return [override_from_row(row) for row in rows]
    finally:
        db.close()


async def _read_postgres(url: str, password: str | None) -> list[StoredOverride]:
    import asyncpg

    from gateway.pg_store import OVERRIDE_COLUMNS, override_from_row

    db = await asyncpg.connect(url, password=password, timeout=10)
    try:
        if await db.fetchval("SELECT to_regclass('overrides') IS NULL"):
            return []
        rows = await db.fetch(f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE deleted_at IS NULL ORDER BY id")
        return [override_from_row(row) for row in rows]
    finally:
        await db.close()
