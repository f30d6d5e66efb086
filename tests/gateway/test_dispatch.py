"""The dispatcher: high first, a reserved share for high, no call for a closed alert."""

from __future__ import annotations

import asyncio

from gateway.clock import FakeClock, settle
from gateway.dispatch import Dispatcher
from ivr_flows.alert_call import AlertCallFlow
from providers.base import Capabilities, CallRequest, ProviderError


class RecordingProvider:
    name = "recording"

    def __init__(self, capacity: int) -> None:
        self.capabilities = Capabilities(max_concurrent_calls=capacity)
        self.placed: list[str] = []
        self.fail: set[str] = set()

    async def place_call(self, request: CallRequest) -> None:
        if request.call_id in self.fail:
            raise ProviderError("invalid number")
        self.placed.append(request.call_id)

    async def cancel_call(self, call_id: str) -> None:
        pass


def _request(call_id: str, priority: str) -> CallRequest:
    return CallRequest(call_id=call_id, to="+15550000001", caller_id=None,
                       flow=AlertCallFlow(message="m"), priority=priority)


async def _dispatcher(provider: RecordingProvider, reserved: int | None = None,
                      unwanted: set[str] | None = None) -> tuple[Dispatcher, list[tuple[str, str]]]:
    failed: list[tuple[str, str]] = []

    async def is_wanted(call_id: str) -> bool:
        return call_id not in (unwanted or set())

    async def on_placed(call_id: str) -> None:
        pass

    async def on_failed(call_id: str, reason: str) -> None:
        failed.append((call_id, reason))

    dispatcher = Dispatcher(provider, now=FakeClock().now, reserved_for_high=reserved, is_wanted=is_wanted,
                            on_placed=on_placed, on_failed=on_failed)
    await dispatcher.start()
    return dispatcher, failed


async def test_high_priority_queued_after_many_low_is_dialled_first_when_a_slot_frees() -> None:
    provider = RecordingProvider(capacity=2)
    dispatcher, _ = await _dispatcher(provider, reserved=0)
    try:
        for i in range(2):
            await dispatcher.submit(_request(f"busy-{i}", "low"))
        await settle()
        assert provider.placed == ["busy-0", "busy-1"]  # capacity full
        for i in range(5):
            await dispatcher.submit(_request(f"low-{i}", "low"))
        await dispatcher.submit(_request("emergency", "high"))
        await settle()
        assert len(provider.placed) == 2
        await dispatcher.finished("busy-0")
        await settle()
        assert provider.placed[2] == "emergency"
        await dispatcher.finished("busy-1")
        await settle()
        assert provider.placed[3] == "low-0"
    finally:
        await dispatcher.stop()


async def test_reserved_share_is_never_used_by_low_priority() -> None:
    provider = RecordingProvider(capacity=5)
    dispatcher, _ = await _dispatcher(provider, reserved=2)
    try:
        for i in range(10):
            await dispatcher.submit(_request(f"low-{i}", "low"))
        await settle()
        assert provider.placed == ["low-0", "low-1", "low-2"]
        stats = {s.priority: s for s in dispatcher.stats()}
        assert stats["low"].depth == 7 and stats["high"].depth == 0
        await dispatcher.submit(_request("high-0", "high"))
        await dispatcher.submit(_request("high-1", "high"))
        await settle()
        assert provider.placed[3:] == ["high-0", "high-1"]
        assert dispatcher.in_flight == 5
    finally:
        await dispatcher.stop()


async def test_unwanted_calls_are_dropped_and_failures_reported() -> None:
    provider = RecordingProvider(capacity=3)
    provider.fail.add("bad")
    dispatcher, failed = await _dispatcher(provider, unwanted={"closed"})
    try:
        for call_id in ("closed", "bad", "good"):
            await dispatcher.submit(_request(call_id, "high"))
        await settle()
        assert provider.placed == ["good"]
        assert failed == [("bad", "invalid number")]
        assert dispatcher.in_flight == 1  # only the live call holds a slot
        assert await dispatcher.cancel_queued("nope") is False
    finally:
        await dispatcher.stop()
        await asyncio.sleep(0)
