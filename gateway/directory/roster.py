"""The people of the directory teams, kept fresh in the background: one seam for the rest of the gateway.

``Roster.members(team)`` answers at once from what was last fetched (never waits on the directory), and
``Roster.engineer(id)`` / ``Roster.by_number(number)`` give an Engineer for a configured engineer or a directory
person (id ``<directory>:<username>``), so pages, SMS replies and the timeline treat both alike.

Each group is fetched at start (waiting at most a few request timeouts), then again when its ``cache_ttl`` has
passed. Before asking the directory, the shared cache is read: with Redis, a copy another gateway fetched within
the TTL is used as is. When the directory cannot answer, the last-known members stay in use (from this process
or from the cache, however old), the log says so, and ``/readyz`` shows it in its details; only a group never
fetched at all makes the gateway not ready.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.clock import Clock, iso
from gateway.config import Config, DirectoryGroup, DirectorySettings, Engineer
from gateway.directory import Directory, GroupMembers
from gateway.directory.cache import Entry, GroupCache, MemoryCache, RedisCache

log = logging.getLogger(__name__)

RETRY_S = 30.0  # after a failed refresh, the next try (or sooner, with a shorter cache_ttl)


@dataclass(kw_only=True)
class _Group:
    directory: str
    group: str
    teams: tuple[str, ...]
    entry: Entry | None = None
    error: str | None = None  # why the last refresh failed; None after a success
    failing_since: float | None = None
    next_at: float = 0.0


class Roster:
    def __init__(self, config: Config, *, directories: Mapping[str, Directory], cache: GroupCache,
                 clock: Clock) -> None:
        self.config = config
        self.directories = directories
        self.cache = cache
        self.clock = clock
        self.on_change: Callable[[str], None] | None = None  # a team's members changed (Schedule.rebuild)
        groups: dict[tuple[str, str], list[str]] = {}
        for team in config.teams.values():
            if team.directory is not None:
                groups.setdefault((team.directory.directory, team.directory.group), []).append(team.id)
        for policy in config.policies.values():  # steps that page a whole group (notify: directory:<name>:<path>)
            for step in policy.steps:
                if step.group is not None:
                    groups.setdefault((step.group.directory, step.group.group), [])
        self._groups = {key: _Group(directory=key[0], group=key[1], teams=tuple(teams))
                        for key, teams in groups.items()}
        self._team_group = {team: key for key, state in self._groups.items() for team in state.teams}
        self._people: dict[str, Engineer] = {}
        self._by_number: dict[str, Engineer] = {}
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []  # one per group: a directory that hangs holds up no other

    @classmethod
    def build(cls, config: Config, clock: Clock) -> Roster:
        from gateway.directory.keycloak import KeycloakDirectory

        directories = {name: KeycloakDirectory(settings, region=config.default_region, clock=clock)
                       for name, settings in config.directories.items()}
        cache: GroupCache = (RedisCache(config.cache_url, password=config.cache_password)
                             if config.cache_url is not None else MemoryCache())
        return cls(config, directories=directories, cache=cache, clock=clock)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Fetch every group once (each waits at most a few request timeouts), then keep them fresh."""
        await self.load()
        self._tasks = [asyncio.create_task(self._keep_fresh(state), name=f"directory {state.directory} {state.group}")
                       for state in self._groups.values()]

    async def load(self) -> None:
        await asyncio.gather(*(self.refresh(state) for state in self._groups.values()))

    async def close(self) -> None:
        self._closing = True  # a refresh that finishes anyway does not start another
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for directory in self.directories.values():
            await directory.close()
        await self.cache.close()

    async def _keep_fresh(self, state: _Group) -> None:
        """Refresh one group when it is due, one refresh at a time (they never overlap or pile up)."""
        while not self._closing:
            await self.clock.sleep_until(state.next_at)
            now = self.clock.now()
            try:
                await self.refresh(state)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not the directory: keep trying
                log.exception("directory %s: refreshing group %s failed", state.directory, state.group)
                state.next_at = now + RETRY_S

    # ------------------------------------------------------------ refresh

    async def refresh(self, state: _Group) -> None:
        settings = self.config.directories[state.directory]
        ttl = settings.cache_ttl_s
        now = self.clock.now()
        shared = await self._cached(state)
        if shared is not None and now - shared.fetched_at < ttl:
            if state.entry is None or shared.fetched_at > state.entry.fetched_at:
                self._adopt(state, shared)
            self._succeeded(state)
            state.next_at = shared.fetched_at + ttl
            return
        try:
            # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancel that comes as the answer
            # arrives, and close() would then wait for a refresh that goes on sleeping.
            async with asyncio.timeout(settings.timeout_s * 3):
                members = await self.directories[state.directory].members(state.group)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # DirectoryError, a timeout, or anything the client did not foresee
            self._failed(state, settings, shared, exc)
            return
        entry = Entry(members=members, fetched_at=now)
        try:
            await self.cache.put(self._cache_name(state.directory), state.group, entry)
        except Exception as exc:
            log.warning("directory cache (%s): could not store group %s: %s", self.cache.describe(), state.group,
                        str(exc) or type(exc).__name__)
        self._adopt(state, entry)
        self._succeeded(state)
        state.next_at = now + ttl

    async def _cached(self, state: _Group) -> Entry | None:
        try:
            return await self.cache.get(self._cache_name(state.directory), state.group)
        except Exception as exc:
            log.warning("directory cache (%s): could not read group %s: %s", self.cache.describe(), state.group,
                        str(exc) or type(exc).__name__)
            return None

    def _cache_name(self, directory: str) -> str:
        """The directory's name in the shared cache: with a digest of where and how its people are read, so
        gateways that share a Redis but not a Keycloak, a realm or a phone attribute never share answers."""
        settings = self.config.directories[directory]
        source = "\n".join((settings.url, settings.realm, settings.phone_attribute, settings.email_attribute,
                            self.config.default_region))
        return f"{directory}@{hashlib.sha256(source.encode()).hexdigest()[:12]}"

    def _failed(self, state: _Group, settings: DirectorySettings, shared: Entry | None, exc: BaseException) -> None:
        now = self.clock.now()
        reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        if shared is not None and (state.entry is None or shared.fetched_at > state.entry.fetched_at):
            self._adopt(state, shared)
        state.error = reason
        state.failing_since = state.failing_since or now
        state.next_at = now + min(RETRY_S, settings.cache_ttl_s)
        if state.entry is not None:
            log.warning("directory %s unreachable (%s): group %s keeps its last-known %d member(s) fetched at %s",
                        state.directory, reason, state.group, len(state.entry.members.people),
                        iso(state.entry.fetched_at))
        else:
            who = f"team(s) {', '.join(state.teams)}" if state.teams else "the policy steps naming it"
            log.error("directory %s: group %s could not be fetched (%s) and no copy is known: %s have nobody "
                      "to page", state.directory, state.group, reason, who)

    def _succeeded(self, state: _Group) -> None:
        if state.error is not None:
            log.info("directory %s answers again for group %s", state.directory, state.group)
        state.error = None
        state.failing_since = None

    def _adopt(self, state: _Group, entry: Entry) -> None:
        before = state.entry.members if state.entry is not None else None
        state.entry = entry
        people: dict[str, Engineer] = {}
        for group in self._groups.values():
            if group.entry is None:
                continue
            for person in group.entry.members.people:
                people[person.id] = Engineer(id=person.id, name=person.name, phones=person.phones,
                                             language=self.config.default_language, email=person.email)
        self._people = people
        self._by_number = {number: engineer for engineer in people.values() for number in engineer.phones}
        if before is None or before.unpageable != entry.members.unpageable:  # once per change, not every refresh
            for problem in entry.members.unpageable:
                log.warning("directory %s: %s in group %s cannot be paged: %s", state.directory, problem.username,
                            state.group, problem.reason)
        if before is None or before.ignored != entry.members.ignored:
            for ignored in entry.members.ignored:
                log.warning("directory %s: %s in group %s is paged on their other number(s); one is left out: %s",
                            state.directory, ignored.username, state.group, ignored.reason)
        if (before is None or before.people != entry.members.people) and self.on_change is not None:
            for team in state.teams:
                self.on_change(team)

    # ------------------------------------------------------------ answers

    def members(self, team_id: str) -> tuple[str, ...]:
        """The engineer ids of a directory team, in username order; () before its group was ever fetched."""
        key = self._team_group.get(team_id)
        state = self._groups.get(key) if key is not None else None
        if state is None or state.entry is None:
            return ()
        return tuple(person.id for person in state.entry.members.people)

    def group(self, group: DirectoryGroup) -> list[Engineer]:
        """Every member of a directory group a policy step pages, as last fetched; [] before the first fetch."""
        state = self._groups.get((group.directory, group.group))
        if state is None or state.entry is None:
            return []
        return [self._people[person.id] for person in state.entry.members.people if person.id in self._people]

    def members_of(self, team_id: str) -> GroupMembers | None:
        key = self._team_group.get(team_id)
        state = self._groups.get(key) if key is not None else None
        return state.entry.members if state is not None and state.entry is not None else None

    def engineer(self, engineer_id: str) -> Engineer | None:
        """A configured engineer, or a directory person (``<directory>:<username>``) of any directory team."""
        return self.config.engineers.get(engineer_id) or self._people.get(engineer_id)

    def by_number(self, number: str) -> Engineer | None:
        for engineer in self.config.engineers.values():
            if number in engineer.phones:
                return engineer
        return self._by_number.get(number)

    # ------------------------------------------------------------ readiness

    def checks(self) -> dict[str, str]:
        """For /readyz: a group never fetched is an error; a last-known copy in use is not (see details)."""
        checks: dict[str, str] = {}
        for state in self._groups.values():
            key = f"directory {state.directory} {state.group}"
            checks[key] = "ok" if state.entry is not None else f"error: no members known ({state.error})"
        return checks

    def details(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for state in self._groups.values():
            entry = state.entry
            status = "ok" if state.error is None else "stale" if entry is not None else "unavailable"
            found.append({
                "directory": state.directory,
                "group": state.group,
                "teams": list(state.teams),
                "status": status,
                "error": state.error,
                "failing_since": iso(state.failing_since),
                "fetched_at": iso(entry.fetched_at) if entry is not None else None,
                "members": len(entry.members.people) if entry is not None else 0,
                "unpageable_count": len(entry.members.unpageable) if entry is not None else 0,
                "unpageable": [{"username": u.username, "reason": u.reason}
                               for u in (entry.members.unpageable if entry is not None else ())],
                "ignored_numbers": [{"username": i.username, "reason": i.reason}
                                    for i in (entry.members.ignored if entry is not None else ())],
                "cache": self.cache.describe(),
            })
        return found
