"""Directory-backed teams: a team names a directory group (Keycloak) instead of listing engineers.

``Directory`` is what a directory can do for us (the members of a group, as people with E.164 numbers);
``keycloak`` implements it over Keycloak's admin REST API; ``cache`` keeps the last answers (in-process or
in Redis, shared by several gateways); ``roster`` keeps the teams' members fresh in the background and gives
the rest of the gateway an Engineer for an id or a number, so a page never waits on the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Person:
    """A member of a directory group who can be paged."""

    id: str  # "<directory>:<username>": an engineer id like any other (pages, SMS replies, the timeline)
    username: str
    name: str
    phones: tuple[str, ...]  # E.164, at least one
    email: str | None = None


@dataclass(frozen=True, kw_only=True)
class Unpageable:
    """A member who cannot be paged (no valid number, or disabled): reported, never silently left out."""

    username: str
    reason: str  # e.g. "no phone number in attribute phoneNumber", "'+1 23' is not a phone number (too short)"


@dataclass(frozen=True, kw_only=True)
class IgnoredNumber:
    """A number of a member paged on their other numbers that is not a phone number: left out, and reported."""

    username: str
    reason: str  # e.g. "'***' is not a phone number (too short)"


@dataclass(frozen=True, kw_only=True)
class GroupMembers:
    people: tuple[Person, ...]  # in username order (the rotation's order)
    unpageable: tuple[Unpageable, ...] = ()
    ignored: tuple[IgnoredNumber, ...] = ()


class DirectoryError(Exception):
    """The directory could not answer; ``reason`` says why in plain words (no secrets)."""


class DirectoryUnavailable(DirectoryError):
    """Not reachable, timed out, or a server error: worth trying again later."""


class DirectoryAuthError(DirectoryError):
    """The directory refused our client credentials (wrong client_id or secret, no service account)."""


class GroupNotFound(DirectoryError):
    """The directory has no group at this path."""


class Directory(Protocol):
    name: str

    async def members(self, group: str) -> GroupMembers:
        """The members of the group at path ``group`` (e.g. ``/sre/companyapp2``); raises DirectoryError."""
        ...

    async def close(self) -> None: ...
