"""The directory's last answers, per group: in-process by default, in Redis when several gateways share them.

An entry is kept beyond its TTL (it is the last-known copy used while the directory is down); whether it is
fresh is decided by the reader from ``fetched_at``. Redis keys never expire for the same reason: each group
has one key, overwritten at every refresh.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from gateway.directory import GroupMembers, IgnoredNumber, Person, Unpageable

KEY_PREFIX = "oncall-gateway:directory:"


@dataclass(frozen=True, kw_only=True)
class Entry:
    members: GroupMembers
    fetched_at: float  # epoch seconds, when the directory answered


class GroupCache(Protocol):
    async def get(self, directory: str, group: str) -> Entry | None: ...

    async def put(self, directory: str, group: str, entry: Entry) -> None: ...

    async def close(self) -> None: ...

    def describe(self) -> str: ...


class MemoryCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}

    async def get(self, directory: str, group: str) -> Entry | None:
        return self._entries.get((directory, group))

    async def put(self, directory: str, group: str, entry: Entry) -> None:
        self._entries[(directory, group)] = entry

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return "in-process"


class RedisCache:
    """One JSON value per group (``oncall-gateway:directory:<directory>@<digest>:<group path>``; the roster
    names the directory with a digest of its source), over redis.asyncio."""

    def __init__(self, url: str, *, password: str | None = None, timeout_s: float = 2.0) -> None:
        import redis.asyncio as redis

        self._url = url
        self._redis = redis.Redis.from_url(url, password=password, socket_timeout=timeout_s,
                                           socket_connect_timeout=timeout_s)

    async def get(self, directory: str, group: str) -> Entry | None:
        raw = await self._redis.get(_key(directory, group))
        return None if raw is None else decode(raw)

    async def put(self, directory: str, group: str, entry: Entry) -> None:
        await self._redis.set(_key(directory, group), encode(entry))

    async def close(self) -> None:
        await self._redis.aclose()

    def describe(self) -> str:
        return "redis"


def _key(directory: str, group: str) -> str:
    return f"{KEY_PREFIX}{directory}:{group}"


def encode(entry: Entry) -> str:
    return json.dumps({"fetched_at": entry.fetched_at, "people": [asdict(p) for p in entry.members.people],
                       "unpageable": [asdict(u) for u in entry.members.unpageable],
                       "ignored": [asdict(i) for i in entry.members.ignored]})


def decode(raw: bytes | str) -> Entry | None:
    """The entry, or None for a value this version cannot read (written by another version: fetched again)."""
    try:
        data: Any = json.loads(raw)
        people = tuple(Person(id=p["id"], username=p["username"], name=p["name"], phones=tuple(p["phones"]),
                              email=p.get("email")) for p in data["people"])
        unpageable = tuple(Unpageable(username=u["username"], reason=u["reason"]) for u in data["unpageable"])
        if not all(p.phones and all(isinstance(n, str) and n.startswith("+") for n in p.phones) for p in people):
            return None  # a person is paged on phones[0]: never one without an E.164 number
        ignored = tuple(IgnoredNumber(username=i["username"], reason=i["reason"]) for i in data.get("ignored", []))
        return Entry(members=GroupMembers(people=people, unpageable=unpageable, ignored=ignored),
                     fetched_at=float(data["fetched_at"]))
    except (ValueError, KeyError, TypeError):
        return None
