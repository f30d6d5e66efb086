"""Injected time: the engine, the sandbox phones and timeouts read and wait on a Clock,
so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.time()))


class FakeClock:
    """A clock that only moves when told to; ``advance`` wakes every sleeper now due."""

    def __init__(self, start: float = 1_767_787_200.0) -> None:  # 2026-01-07T12:00:00Z
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking sleepers in deadline order and letting them run."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            await settle()
        self._now = target
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run (a few loop turns), e.g. after waking sleepers."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def sleep_until_woken(clock: Clock, wake: asyncio.Event, until: float | None) -> None:
    """Sleep until ``until`` on ``clock`` (None or infinity: no deadline) or until ``wake`` is set, whichever
    comes first: how the gateway's services wait for their next due moment without polling."""
    waiters: list[asyncio.Future[object]] = [asyncio.ensure_future(wake.wait())]
    if until is not None and until < float("inf"):
        waiters.append(asyncio.ensure_future(clock.sleep_until(until)))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def iso(ts: float | None) -> str | None:
    return None if ts is None else to_datetime(ts).isoformat().replace("+00:00", "Z")
