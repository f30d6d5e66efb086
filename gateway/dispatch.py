"""Outbound call dispatch: a high and a low priority queue sharing one provider's capacity.

High is always taken first and has a reserved share of the capacity that low
never uses, so an emergency is never stuck behind routine calls. With several
gateways on one database, each dial also takes a line from the ledger they share
(``gateway.cluster.Lines``), so capacity, pace and priority hold across all of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from core.enums import Priority
from core.phone import mask
from gateway import failpoints
from gateway.cluster import Lines
from gateway.send_gate import SendGate
from providers.base import CallRequest, ProviderError, VoiceProvider

log = logging.getLogger(__name__)

PRIORITIES = (Priority.HIGH, Priority.LOW)  # the order queues are served in
#: how long an engineer's leg bridged to a hotline caller may keep its line in the shared ledger
BRIDGED_HOLD_S = 4 * 3600.0


@dataclass(frozen=True, kw_only=True)
class QueueStats:
    priority: str
    depth: int
    oldest_wait_s: float | None
    waiting_too_long: int  # entries waiting longer than the low-priority bound


class RateLimiter:
    """At most ``rate`` starts per second on average, bursts up to ``rate`` (real time: it paces a trunk)."""

    def __init__(self, rate: float) -> None:
        self.rate = max(rate, 0.001)
        self.burst = max(1.0, rate)
        self._tokens = self.burst
        self._last = time.monotonic()

    def delay(self) -> float:
        """Seconds to wait before the next start may go (0 when it may go now)."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    def take(self) -> None:
        self._tokens -= 1


class Dispatcher:
    def __init__(
        self,
        provider: VoiceProvider,
        *,
        now: Callable[[], float],
        reserved_share: float = 0.2,
        low_wait_warning_s: float = 60.0,
        is_wanted: Callable[[str], Awaitable[bool]],
        on_placed: Callable[[str], Awaitable[None]],
        on_failed: Callable[[str, str], Awaitable[None]],
        retry_delays_s: tuple[float, ...] = (1, 2, 4, 8, 16),
        outcome_grace_s: float = 300.0,
        lines: Lines | None = None,
    ) -> None:
        self.provider = provider
        # A placed call that reports nothing within its ring timeout plus this grace (real time) frees its
        # line and fails its page, so a provider whose callbacks never arrive cannot stall all paging.
        self.outcome_grace_s = outcome_grace_s
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        # A transient provider error (Asterisk reconnecting, Twilio 5xx after its own retries) puts the
        # call back at the front of its queue after each of these delays before it counts as failed.
        self.retry_delays_s = retry_delays_s
        self._attempts: dict[str, int] = {}
        self.capacity = max(1, provider.capabilities.max_concurrent_calls)
        # Low never takes the reserved slots; with one slot in all nothing can be reserved.
        self.reserved_for_high = min(self.capacity - 1, round(self.capacity * reserved_share))
        self.low_wait_warning_s = low_wait_warning_s
        self.low_waited_too_long = 0  # counter: low calls that waited past the bound before dialling
        self._pace = RateLimiter(provider.capabilities.calls_per_second)
        self._now = now
        self._is_wanted = is_wanted
        self._on_placed = on_placed
        self._on_failed = on_failed
        self._queues: dict[str, deque[tuple[float, CallRequest]]] = {p: deque() for p in PRIORITIES}
        self._queued: set[str] = set()  # the call ids in the queues (``holds`` is asked for every submit)
        self._in_flight: set[str] = set()
        self._changed = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self._placing: set[asyncio.Task[None]] = set()
        # Dial requests in flight per number, at most a quarter of the lines (one on a small trunk): a
        # destination (or a provider request) that hangs holds a few lines, never all of them, and other
        # pages go on, while an alert storm to one engineer still dials in parallel.
        self._dialling: Counter[str] = Counter()
        self.per_number = max(1, self.capacity // 4)
        self._gate = SendGate()
        # The shared ledger (several gateways). When it refuses a call, nothing is dialled until a line is
        # freed anywhere, a high call arrives, or the wait it asked for is over (at most 1 s, so this
        # gateway's demand for a line stays fresh there).
        self._lines = lines
        self._blocked_until = 0.0  # event loop time

    # ----------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        for deadline in self._deadlines.values():
            deadline.cancel()
        self._deadlines.clear()
        tasks = [t for t in (self._worker, *self._placing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None

    # ----------------------------------------------------------------- API

    async def submit(self, request: CallRequest) -> None:
        priority = Priority(request.priority) if request.priority in PRIORITIES else Priority.LOW
        async with self._changed:
            if self.holds(request.call_id):
                return  # already queued or in progress here (a page sent again after a takeover)
            self._queues[priority].append((self._now(), request))
            self._queued.add(request.call_id)
            if priority == Priority.HIGH:
                self._blocked_until = 0.0  # a low call waiting for the shared ledger yields to it at once
            self._changed.notify_all()

    async def finished(self, call_id: str) -> None:
        """A call ended (any outcome): its capacity slot is free again (placed here or by another gateway)."""
        self.keep(call_id)
        async with self._changed:
            self._in_flight.discard(call_id)
            self._blocked_until = 0.0
            self._changed.notify_all()
        if self._lines is not None:
            try:
                await self._lines.free(call_id)
            except Exception as exc:  # never into a provider's report; the line stays counted as taken
                log.error("call %s: could not free its line in the shared ledger: %s", call_id, exc)

    async def line_freed(self, call_id: str, *, placed_here: bool) -> None:
        """Another gateway freed a line: when this one placed the call (its outcome reached the other
        gateway), the call is over here too; either way a call waiting for a line may try again."""
        if placed_here:
            self.keep(call_id)
        async with self._changed:
            if placed_here:
                self._in_flight.discard(call_id)
            self._blocked_until = 0.0
            self._changed.notify_all()

    def calls_here(self) -> list[str]:
        """The calls queued or in progress here."""
        return [*self._in_flight, *self._queued]

    def holds(self, call_id: str) -> bool:
        """The call is queued or in progress here (this gateway placed it and it has not ended)."""
        return call_id in self._in_flight or call_id in self._queued

    def keep(self, call_id: str) -> None:
        """The call reported its outcome: no deadline for it any more."""
        deadline = self._deadlines.pop(call_id, None)
        if deadline is not None:
            deadline.cancel()

    async def bridged(self, call_id: str) -> None:
        """The call reported its outcome but holds its line (an accepted leg, bridged to a caller) until
        it is hung up (``finished``)."""
        self.keep(call_id)
        if self._lines is not None:
            try:
                await self._lines.keep(call_id, BRIDGED_HOLD_S)
            except Exception as exc:
                log.error("call %s: could not keep its line in the shared ledger: %s", call_id, exc)

    def _outcome_lost(self, request: CallRequest) -> None:
        self._deadlines.pop(request.call_id, None)
        if request.call_id not in self._in_flight:
            return
        limit = request.ring_timeout_s + self.outcome_grace_s
        log.warning("call %s to %s: no outcome from the %s provider within %.0f s; counting it as failed "
                    "(are the provider's callbacks reaching the gateway?)", request.call_id, mask(request.to),
                    self.provider.name, limit)

        async def fail() -> None:
            await self.finished(request.call_id)
            try:  # hang it up, wherever it is: the provider (and the manager's line count) forget it too
                await self.provider.cancel_call(request.call_id)
            except ProviderError as exc:
                log.warning("call %s: could not hang it up: %s", request.call_id, exc)
            await self._on_failed(request.call_id, f"no outcome from the provider within {limit:.0f} s")

        self._spawn(fail(), f"lost {request.call_id}")

    async def withdraw(self, call_id: str) -> bool:
        """Stop a call that is no longer wanted: True when it was still queued and never reaches the provider.

        False when it may have reached the provider: a placement in progress is waited for first, so when
        this returns no new dial of the call can reach the provider any more; cancel it there.
        """
        async with self._changed:
            for queue in self._queues.values():
                for item in queue:
                    if item[1].call_id == call_id:
                        queue.remove(item)
                        self._queued.discard(call_id)
                        return True
        await self._gate.withdraw(call_id)
        return False

    async def raise_priority(self, call_ids: set[str]) -> int:
        """Move queued low-priority calls to the high queue (keeping their order); returns how many."""
        async with self._changed:
            moved = [item for item in self._queues[Priority.LOW] if item[1].call_id in call_ids]
            for item in moved:
                self._queues[Priority.LOW].remove(item)
                self._queues[Priority.HIGH].append((item[0], dataclasses.replace(item[1], priority=Priority.HIGH)))
            if moved:
                self._changed.notify_all()
        return len(moved)

    def stats(self) -> list[QueueStats]:
        now = self._now()
        return [
            QueueStats(
                priority=p,
                depth=len(q),
                oldest_wait_s=(now - q[0][0]) if q else None,
                waiting_too_long=sum(1 for at, _ in q if now - at > self.low_wait_warning_s),
            )
            for p, q in self._queues.items()
        ]

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # ------------------------------------------------------------- worker

    def _eligible(self, priority: Priority) -> tuple[float, CallRequest] | None:
        """The first call of the queue whose number has no dial request in flight."""
        return next((item for item in self._queues[priority] if not self._busy(item[1].to)), None)

    def _busy(self, number: str) -> bool:
        return self._dialling[number] >= self.per_number

    def _held_back_for_high(self) -> int:
        """Lines low may not take: the reserved share, plus one for each high call that waits only because
        a dial to its number is in flight (it gets the line as soon as that request returns)."""
        waiting = {request.to for _, request in self._queues[Priority.HIGH] if self._busy(request.to)}
        return self.reserved_for_high + len(waiting)

    def _next(self) -> tuple[Priority, float, CallRequest] | None:
        free = self.capacity - len(self._in_flight)
        if free > 0 and (item := self._eligible(Priority.HIGH)) is not None:
            self._queues[Priority.HIGH].remove(item)
            self._queued.discard(item[1].call_id)
            return Priority.HIGH, *item
        if free > self._held_back_for_high() and (item := self._eligible(Priority.LOW)) is not None:
            self._queues[Priority.LOW].remove(item)
            self._queued.discard(item[1].call_id)
            return Priority.LOW, *item
        return None

    def _note_low_wait(self, queued_at: float, request: CallRequest) -> None:
        waited = self._now() - queued_at
        if waited > self.low_wait_warning_s:
            self.low_waited_too_long += 1
            log.warning("low-priority call %s waited %.0f s for a free line (bound %.0f s)",
                        request.call_id, waited, self.low_wait_warning_s)

    def _ready(self) -> bool:
        if self._blocked_until and asyncio.get_running_loop().time() < self._blocked_until:
            return False
        free = self.capacity - len(self._in_flight)
        return bool((free > 0 and self._eligible(Priority.HIGH))
                    or (free > self._held_back_for_high() and self._eligible(Priority.LOW)))

    async def _run(self) -> None:
        while True:
            async with self._changed:
                await self._changed.wait_for(self._ready)
                delay = self._pace.delay()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: the next start picks the best call then
                continue
            async with self._changed:
                picked = self._next()
                if picked is None:
                    continue
                priority, queued_at, request = picked
                self._in_flight.add(request.call_id)
                self._dialling[request.to] += 1
            self._pace.take()
            self._spawn(self._place(request, priority, queued_at), f"place {request.call_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` in the background, kept until done and cancelled by ``stop``."""
        task = asyncio.create_task(work, name=name)
        self._placing.add(task)
        task.add_done_callback(self._placing.discard)

    def _dial_over(self, number: str) -> None:
        """A dial request to ``number`` is no longer in flight (call with ``_changed`` held)."""
        self._dialling[number] -= 1
        if self._dialling[number] <= 0:
            del self._dialling[number]

    async def _take_line(self, priority: Priority, queued_at: float, request: CallRequest) -> bool:
        """Take a line in the ledger shared with other gateways (several takes run at once, one per call
        being placed). When there is none, or the shared pace says not yet, the call goes back first in
        its queue and dialling pauses (see ``_blocked_until``)."""
        if self._lines is None:
            return True
        try:
            wait = await self._lines.take(
                request.call_id, priority, capacity=self.capacity, reserved=self.reserved_for_high,
                rate=self._pace.rate, high_waiting=len(self._queues[Priority.HIGH]),
                hold_s=request.ring_timeout_s + self.outcome_grace_s)
        except Exception as exc:  # the database is away or slow: dial anyway rather than page nobody
            log.error("call %s: could not take a line in the shared ledger (%s); dialling without it",
                      request.call_id, exc or type(exc).__name__)
            return True
        if wait == 0:
            return True
        pause = wait if wait > 0 else 1.0
        async with self._changed:
            self._in_flight.discard(request.call_id)
            self._dial_over(request.to)
            self._queues[priority].appendleft((queued_at, request))
            self._queued.add(request.call_id)
            loop = asyncio.get_running_loop()
            self._blocked_until = max(self._blocked_until, loop.time() + pause)
            loop.call_later(pause, self._unblock)
        return False

    def _unblock(self) -> None:
        if self._blocked_until and asyncio.get_running_loop().time() >= self._blocked_until:
            self._blocked_until = 0.0
            self._spawn(self._poke(), "dispatcher unblocked")

    async def _poke(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _place(self, request: CallRequest, priority: Priority, queued_at: float) -> None:
        if not await self._take_line(priority, queued_at, request):
            return
        if priority == Priority.LOW:
            self._note_low_wait(queued_at, request)
        self._gate.begin(request.call_id)
        try:
            try:
                if not await self._is_wanted(request.call_id) or self._gate.withdrawn(request.call_id):
                    log.info("call %s to %s dropped before dialling: no longer needed",
                             request.call_id, mask(request.to))
                    self._attempts.pop(request.call_id, None)
                    await self.finished(request.call_id)
                    return
                await self.provider.place_call(request)
                if self._gate.withdrawn(request.call_id):
                    # Withdrawn while the provider took its time: hang it up now that it exists.
                    log.info("call %s to %s placed after its alert closed; hanging it up", request.call_id,
                             mask(request.to))
                    self._attempts.pop(request.call_id, None)
                    await self.provider.cancel_call(request.call_id)
                    await self.finished(request.call_id)
                    return
            finally:
                self._gate.end(request.call_id)
                async with self._changed:
                    self._dial_over(request.to)
                    self._changed.notify_all()
        except ProviderError as exc:
            await self.finished(request.call_id)
            attempt = self._attempts.get(request.call_id, 0)
            if not exc.permanent and attempt < len(self.retry_delays_s):
                self._attempts[request.call_id] = attempt + 1
                delay = self.retry_delays_s[attempt]
                log.warning("call %s to %s could not start (%s); trying again in %g s",
                            request.call_id, mask(request.to), exc, delay)
                self._spawn(self._retry(request, delay), f"retry {request.call_id}")
                return
            self._attempts.pop(request.call_id, None)
            log.warning("call %s to %s failed to start: %s", request.call_id, mask(request.to), exc)
            await self._on_failed(request.call_id, str(exc))
            return
        except Exception as exc:  # a provider bug must not take the dispatcher down
            log.exception("call %s to %s: provider error", request.call_id, mask(request.to))
            self._attempts.pop(request.call_id, None)
            await self.finished(request.call_id)
            await self._on_failed(request.call_id, f"provider error: {exc}")
            return
        failpoints.reached("page-placed")
        self._attempts.pop(request.call_id, None)
        if request.call_id in self._in_flight:  # not already over (a provider may report before returning)
            self._deadlines[request.call_id] = asyncio.get_running_loop().call_later(
                request.ring_timeout_s + self.outcome_grace_s, self._outcome_lost, request)
        log.info("call %s to %s placed (%s priority)", request.call_id, mask(request.to), request.priority)
        await self._on_placed(request.call_id)

    async def _retry(self, request: CallRequest, delay: float) -> None:
        await asyncio.sleep(delay)  # real time: the provider recovers in real time
        async with self._changed:
            self._queues[Priority(request.priority) if request.priority in PRIORITIES else Priority.LOW].appendleft(
                (self._now(), request))
            self._queued.add(request.call_id)
            self._changed.notify_all()
