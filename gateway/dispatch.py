"""Outbound call dispatch: a high and a low priority queue sharing one provider's capacity.

High is always taken first and has a reserved share of the capacity that low
never uses, so an emergency is never stuck behind routine calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.phone import mask
from providers.base import CallRequest, ProviderError, VoiceProvider

log = logging.getLogger(__name__)

PRIORITIES = ("high", "low")


@dataclass(frozen=True, kw_only=True)
class QueueStats:
    priority: str
    depth: int
    oldest_wait_s: float | None


class Dispatcher:
    def __init__(
        self,
        provider: VoiceProvider,
        *,
        now: Callable[[], float],
        reserved_for_high: int | None = None,
        is_wanted: Callable[[str], Awaitable[bool]],
        on_placed: Callable[[str], Awaitable[None]],
        on_failed: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.provider = provider
        self.capacity = max(1, provider.capabilities.max_concurrent_calls)
        default_reserve = self.capacity // 5
        self.reserved_for_high = min(
            self.capacity - 1, default_reserve if reserved_for_high is None else reserved_for_high
        )
        self._now = now
        self._is_wanted = is_wanted
        self._on_placed = on_placed
        self._on_failed = on_failed
        self._queues: dict[str, deque[tuple[float, CallRequest]]] = {p: deque() for p in PRIORITIES}
        self._in_flight: set[str] = set()
        self._changed = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self._placing: set[asyncio.Task[None]] = set()

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        tasks = [t for t in (self._worker, *self._placing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None

    # ----------------------------------------------------------------- API

    async def submit(self, request: CallRequest) -> None:
        priority = request.priority if request.priority in PRIORITIES else "low"
        async with self._changed:
            self._queues[priority].append((self._now(), request))
            self._changed.notify_all()

    async def finished(self, call_id: str) -> None:
        """A call ended (any outcome): its capacity slot is free again."""
        async with self._changed:
            self._in_flight.discard(call_id)
            self._changed.notify_all()

    async def cancel_queued(self, call_id: str) -> bool:
        async with self._changed:
            for queue in self._queues.values():
                for item in queue:
                    if item[1].call_id == call_id:
                        queue.remove(item)
                        return True
        return False

    def stats(self) -> list[QueueStats]:
        now = self._now()
        return [
            QueueStats(priority=p, depth=len(q), oldest_wait_s=(now - q[0][0]) if q else None)
            for p, q in self._queues.items()
        ]

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # ------------------------------------------------------------- worker

    def _next(self) -> CallRequest | None:
        free = self.capacity - len(self._in_flight)
        if self._queues["high"] and free > 0:
            return self._queues["high"].popleft()[1]
        if self._queues["low"] and free > self.reserved_for_high:
            return self._queues["low"].popleft()[1]
        return None

    async def _run(self) -> None:
        while True:
            async with self._changed:
                request = self._next()
                while request is None:
                    await self._changed.wait()
                    request = self._next()
                self._in_flight.add(request.call_id)
            task = asyncio.create_task(self._place(request), name=f"place {request.call_id}")
            self._placing.add(task)
            task.add_done_callback(self._placing.discard)

    async def _place(self, request: CallRequest) -> None:
        try:
            if not await self._is_wanted(request.call_id):
                log.info("call %s to %s dropped before dialling: no longer needed", request.call_id, mask(request.to))
                await self.finished(request.call_id)
                return
            await self.provider.place_call(request)
        except ProviderError as exc:
            log.warning("call %s to %s failed to start: %s", request.call_id, mask(request.to), exc)
            await self.finished(request.call_id)
            await self._on_failed(request.call_id, str(exc))
            return
        except Exception as exc:  # a provider bug must not take the dispatcher down
            log.exception("call %s to %s: provider error", request.call_id, mask(request.to))
            await self.finished(request.call_id)
            await self._on_failed(request.call_id, f"provider error: {exc}")
            return
        log.info("call %s to %s placed (%s priority)", request.call_id, mask(request.to), request.priority)
        await self._on_placed(request.call_id)
