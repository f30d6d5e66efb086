"""Lookup latency of a directory team's members: uncached (Keycloak's admin API) and cached (Redis, in-process).

``python -m bench.directory [--members 20] [--rounds 500]`` runs the Keycloak peer of the tests
(tests/peers/keycloak.py) on loopback in this process, a throwaway redis-server, and prints p50/p99 of:

- uncached: ``KeycloakDirectory.members(group)`` with a valid token (group-by-path, then the members page);
  the first lookup (with the token) is printed apart;
- Redis: ``RedisCache.get`` of that group (what a gateway reads before asking Keycloak);
- in-process: ``Roster.members(team)`` plus an Engineer for each id (what a page waits on: nothing remote).

The peer shares this process's event loop, so the uncached figure holds both sides' work but no network.
Nothing here is a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.loadgen import percentile
from core.clock import SystemClock
from gateway.config import Config as GatewayConfig
from gateway.config import DirectoryGroup, DirectorySettings, Team
from gateway.directory.cache import Entry, RedisCache
from gateway.directory.keycloak import KeycloakDirectory
from gateway.directory.roster import Roster
from tests.peers.keycloak import KeycloakPeer
from tests.redis_server import redis_server

GROUP = "/sre/companyapp2"


def _line(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{name:<46} n={len(ms):<5} p50={percentile(ms, 50):8.3f} ms  p99={percentile(ms, 99):8.3f} ms"


async def main(members: int, rounds: int) -> None:
    peer = KeycloakPeer()
    for index in range(members):
        peer.add_user(f"user{index:03d}", first="User", last=str(index), phones=[f"+1555200{index:04d}"])
    peer.set_group(GROUP, [f"user{index:03d}" for index in range(members)])
    url = await peer.start()
    settings = DirectorySettings(name="corp", kind="keycloak", url=url, realm="company", client_id="oncall-gateway",
                                 client_secret="s3cret")
    directory = KeycloakDirectory(settings, region="US")
    print(f"group of {members} members, {rounds} rounds; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    try:
        started = time.perf_counter()
        found = await directory.members(GROUP)
        print(_line("uncached, first (token + group + members)", [time.perf_counter() - started]))
        uncached = []
        for _ in range(rounds):
            started = time.perf_counter()
            await directory.members(GROUP)
            uncached.append(time.perf_counter() - started)
        print(_line("uncached (Keycloak admin API)", uncached))

        with tempfile.TemporaryDirectory() as folder:
            async with redis_server(Path(folder)) as redis_url:
                cache = RedisCache(redis_url)
                await cache.put("corp", GROUP, Entry(members=found, fetched_at=time.time()))
                shared = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    await cache.get("corp", GROUP)
                    shared.append(time.perf_counter() - started)
                await cache.close()
                print(_line("cached in Redis (RedisCache.get)", shared))

        team = Team(id="t", members=(), rotation=None, directory=DirectoryGroup(directory="corp", group=GROUP))
        config = GatewayConfig(source=Path("bench.yaml"), directories={"corp": settings}, teams={"t": team})
        roster = Roster(config, directories={"corp": directory}, cache=_NoCache(), clock=SystemClock())
        await roster.load()
        local = []
        for _ in range(rounds):
            started = time.perf_counter()
            for engineer_id in roster.members("t"):
                roster.engineer(engineer_id)
            local.append(time.perf_counter() - started)
        print(_line("cached in-process (Roster, what a page uses)", local))
    finally:
        await directory.close()
        await peer.close()


class _NoCache:
    async def get(self, directory: str, group: str) -> Entry | None:
        return None

    async def put(self, directory: str, group: str, entry: Entry) -> None:
        return None

    async def close(self) -> None:
        return None

    def describe(self) -> str:
        return "none"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main(args.members, args.rounds))
