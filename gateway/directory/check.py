"""For the CLI: the directory teams' members fetched once (``gateway oncall``, ``gateway check-directory``)."""

from __future__ import annotations

import asyncio
import sys

from core.clock import SystemClock
from core.phone import mask
from gateway.config import Config, DirectoryGroup
from gateway.directory.roster import Roster


async def fetched(config: Config) -> Roster:
    """A roster with every directory group fetched once (or read from the shared cache), then closed."""
    roster = Roster.build(config, SystemClock())
    try:
        await roster.load()
    finally:
        await roster.close()
    return roster


def check_directory(config: Config) -> int:
    """Print each directory group's members (numbers masked) and who cannot be paged; 1 if a group failed.

    Every group the config names: a directory team's, and a policy step's (``notify: directory:<name>:<path>``).
    """
    named = any(team.directory is not None for team in config.teams.values()) or any(
        step.group is not None for policy in config.policies.values() for step in policy.steps)
    if not named:
        print("no directory groups configured")
        return 0
    roster = asyncio.run(fetched(config))
    failed = False
    for detail in roster.details():
        used_by = f"team {', '.join(detail['teams'])}" if detail["teams"] else "policy steps"
        where = f"{detail['directory']} {detail['group']} ({used_by})"
        if detail["status"] != "ok":
            failed = True
            print(f"error: {where}: {detail['error']}", file=sys.stderr)
            if detail["fetched_at"] is None:
                continue
            print(f"  using the copy in the {detail['cache']} cache fetched at {detail['fetched_at']}")
        print(f"{where}: {detail['members']} member(s) to page")
        for engineer in roster.group(DirectoryGroup(directory=detail["directory"], group=detail["group"])):
            print(f"  {engineer.id}  {engineer.name}  {', '.join(mask(p) for p in engineer.phones)}")
        for problem in detail["unpageable"]:
            print(f"warning: {where}: {problem['username']} cannot be paged: {problem['reason']}", file=sys.stderr)
        for ignored in detail["ignored_numbers"]:
            print(f"warning: {where}: a number of {ignored['username']} is left out: {ignored['reason']}",
                  file=sys.stderr)
    return 1 if failed else 0
