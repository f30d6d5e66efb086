"""The dispatcher: high first, a reserved share for high, no call for a closed alert."""

from __future__ import annotations

import asyncio
import dataclasses

from core.clock import FakeClock, settle
from gateway.dispatch import Dispatcher
from ivr_flows.alert_call import AlertCallFlow
from providers.base import CallRequest, Capabilities, ProviderError
from tests.support import eventually


class RecordingProvider:
    name = "recording"

    def __init__(self, capacity: int, calls_per_second: float = 1000.0) -> None:
        self.capabilities = Capabilities(max_concurrent_calls=capacity, calls_per_second=calls_per_second)
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


async def _dispatcher(provider: RecordingProvider, share: float = 0.2, unwanted: set[str] | None = None,
                      clock: FakeClock | None = None) -> tuple[Dispatcher, list[tuple[str, str]]]:
    failed: list[tuple[str, str]] = []

    async def is_wanted(call_id: str) -> bool:
        return call_id not in (unwanted or set())

    async def on_placed(call_id: str) -> None:
        pass

    async def on_failed(call_id: str, reason: str) -> None:
        failed.append((call_id, reason))

    dispatcher = Dispatcher(provider, now=(clock or FakeClock()).now, reserved_share=share, low_wait_warning_s=60,
                            is_wanted=is_wanted, on_placed=on_placed, on_failed=on_failed)
    await dispatcher.start()
    return dispatcher, failed


async def test_high_priority_queued_after_many_low_is_dialled_first_when_a_slot_frees() -> None:
    provider = RecordingProvider(capacity=2)
    dispatcher, _ = await _dispatcher(provider, share=0)
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
    dispatcher, _ = await _dispatcher(provider, share=0.4)
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
        assert await dispatcher.withdraw("nope") is False
    finally:
        await dispatcher.stop()
        await asyncio.sleep(0)


async def test_operator_raises_priority_of_queued_calls() -> None:
    provider = RecordingProvider(capacity=1)
    dispatcher, _ = await _dispatcher(provider, share=0)
    try:
        for call_id in ("busy", "low-a", "low-b", "low-c"):
            await dispatcher.submit(_request(call_id, "low"))
        await settle()
        assert await dispatcher.raise_priority({"low-c"}) == 1
        await dispatcher.finished("busy")
        await settle()
        assert provider.placed == ["busy", "low-c"]
    finally:
        await dispatcher.stop()


async def test_low_calls_waiting_past_the_bound_are_counted_without_delaying_high() -> None:
    clock = FakeClock()
    provider = RecordingProvider(capacity=1)
    dispatcher, _ = await _dispatcher(provider, share=0, clock=clock)
    try:
        await dispatcher.submit(_request("busy", "high"))
        await dispatcher.submit(_request("low-1", "low"))
        await settle()
        await clock.advance(61)
        stats = {s.priority: s for s in dispatcher.stats()}
        assert stats["low"].waiting_too_long == 1 and stats["low"].oldest_wait_s == 61
        await dispatcher.submit(_request("high-2", "high"))
        await dispatcher.finished("busy")
        await settle()
        assert provider.placed == ["busy", "high-2"]  # high still first
        await dispatcher.finished("high-2")
        await settle()
        assert provider.placed[-1] == "low-1" and dispatcher.low_waited_too_long == 1
    finally:
        await dispatcher.stop()


async def test_calls_per_second_paces_starts() -> None:
    provider = RecordingProvider(capacity=10, calls_per_second=2)
    dispatcher, _ = await _dispatcher(provider, share=0)
    try:
        for i in range(3):
            await dispatcher.submit(_request(f"c{i}", "low"))
        await settle()
        assert provider.placed == ["c0", "c1"]  # a burst of 2, then one every half second
        await dispatcher.submit(_request("urgent", "high"))

        async def third_started() -> bool:
            return len(provider.placed) >= 3

        await eventually(third_started)
        assert provider.placed[2] == "urgent"  # the next paced start goes to high
    finally:
        await dispatcher.stop()


class FlakyProvider(RecordingProvider):
    """Transient failures for the first ``failures`` attempts of every call."""

    def __init__(self, failures: int) -> None:
        super().__init__(capacity=5)
        self.failures = failures
        self.attempts: dict[str, int] = {}

    async def place_call(self, request: CallRequest) -> None:
        self.attempts[request.call_id] = self.attempts.get(request.call_id, 0) + 1
        if self.attempts[request.call_id] <= self.failures:
            raise ProviderError("AMI not connected", permanent=False)
        self.placed.append(request.call_id)


async def _flaky_dispatcher(provider: RecordingProvider) -> tuple[Dispatcher, list[tuple[str, str]]]:
    failed: list[tuple[str, str]] = []

    async def is_wanted(call_id: str) -> bool:
        return True

    async def on_placed(call_id: str) -> None:
        pass

    async def on_failed(call_id: str, reason: str) -> None:
        failed.append((call_id, reason))

    dispatcher = Dispatcher(provider, now=FakeClock().now, is_wanted=is_wanted, on_placed=on_placed,
                            on_failed=on_failed, retry_delays_s=(0.01, 0.01, 0.01))
    await dispatcher.start()
    return dispatcher, failed


async def test_a_transient_provider_error_is_retried_before_the_page_fails() -> None:
    provider = FlakyProvider(failures=2)
    dispatcher, failed = await _flaky_dispatcher(provider)
    try:
        await dispatcher.submit(_request("c1", "high"))

        async def placed() -> bool:
            return provider.placed == ["c1"]

        await eventually(placed)
        assert provider.attempts["c1"] == 3 and failed == []
    finally:
        await dispatcher.stop()


async def test_a_provider_down_for_longer_than_the_retries_fails_the_page() -> None:
    provider = FlakyProvider(failures=100)
    dispatcher, failed = await _flaky_dispatcher(provider)
    try:
        await dispatcher.submit(_request("c1", "high"))

        async def gave_up() -> bool:
            return bool(failed)

        await eventually(gave_up)
        assert failed == [("c1", "AMI not connected")] and provider.attempts["c1"] == 4
        assert dispatcher.in_flight == 0
    finally:
        await dispatcher.stop()


async def test_a_call_whose_outcome_never_comes_frees_its_line_and_fails() -> None:
    provider = RecordingProvider(capacity=1)
    failed: list[tuple[str, str]] = []

    async def is_wanted(call_id: str) -> bool:
        return True

    async def on_placed(call_id: str) -> None:
        pass

    async def on_failed(call_id: str, reason: str) -> None:
        failed.append((call_id, reason))

    dispatcher = Dispatcher(provider, now=FakeClock().now, is_wanted=is_wanted, on_placed=on_placed,
                            on_failed=on_failed, outcome_grace_s=0.05)
    await dispatcher.start()
    try:
        silent = dataclasses.replace(_request("silent", "high"), ring_timeout_s=0)
        kept = dataclasses.replace(_request("kept", "high"), ring_timeout_s=0)
        await dispatcher.submit(silent)
        await dispatcher.submit(kept)

        async def gave_up() -> bool:
            return bool(failed)

        await eventually(gave_up)
        assert failed == [("silent", "no outcome from the provider within 0 s")]
        # Its line went to the next call; that one reports an accepted, bridged leg and keeps its line.

        async def second_placed() -> bool:
            return provider.placed == ["silent", "kept"]

        await eventually(second_placed)
        dispatcher.keep("kept")
        await asyncio.sleep(0.2)
        assert len(failed) == 1 and dispatcher.in_flight == 1
    finally:
        await dispatcher.stop()


class GatedProvider(RecordingProvider):
    """A provider whose dial request is in flight until released (a slow REST call)."""

    def __init__(self) -> None:
        super().__init__(capacity=5)
        self.in_flight = asyncio.Event()
        self.release = asyncio.Event()
        self.events: list[str] = []

    async def place_call(self, request: CallRequest) -> None:
        self.in_flight.set()
        await self.release.wait()
        self.placed.append(request.call_id)
        self.events.append(f"placed {request.call_id}")


async def test_a_call_still_being_checked_when_its_alert_closes_never_reaches_the_provider() -> None:
    provider = RecordingProvider(capacity=5)
    checking, answer = asyncio.Event(), asyncio.Event()

    async def is_wanted(call_id: str) -> bool:
        checking.set()
        await answer.wait()
        return True  # the store read happened before the acknowledgement committed

    async def ignore(*_: object) -> None:
        pass

    dispatcher = Dispatcher(provider, now=FakeClock().now, is_wanted=is_wanted, on_placed=ignore, on_failed=ignore)
    await dispatcher.start()
    try:
        await dispatcher.submit(_request("page-1", "high"))
        await asyncio.wait_for(checking.wait(), 30)
        # The acknowledgement withdraws the call while its "still wanted?" read is in flight; it returns only
        # once that dial attempt is over, and the attempt then drops the call.
        withdraw = asyncio.create_task(dispatcher.withdraw("page-1"))
        await settle()
        assert not withdraw.done()
        answer.set()
        assert await asyncio.wait_for(withdraw, 30) is False
        await settle()
        assert provider.placed == []
        assert dispatcher.in_flight == 0
    finally:
        await dispatcher.stop()


async def test_withdrawing_a_call_whose_dial_is_in_flight_waits_until_the_provider_has_it() -> None:
    provider = GatedProvider()
    dispatcher, _ = await _dispatcher(provider)
    try:
        await dispatcher.submit(_request("page-1", "high"))
        await asyncio.wait_for(provider.in_flight.wait(), 30)

        async def acknowledge() -> None:
            await dispatcher.withdraw("page-1")
            provider.events.append("acknowledgement answered")

        ack = asyncio.create_task(acknowledge())
        await settle()
        assert provider.events == []
        provider.release.set()
        await asyncio.wait_for(ack, 30)
        # The call reached the provider before the acknowledgement answered (and is then cancelled there),
        # never after it.
        assert provider.events == ["placed page-1", "acknowledgement answered"]
    finally:
        await dispatcher.stop()


class HangingProvider(RecordingProvider):
    """A provider whose dial requests to one number never come back (Twilio accepting and never answering)."""

    def __init__(self, capacity: int, hung: str) -> None:
        super().__init__(capacity=capacity)
        self.hung = hung
        self.requests_to_hung = 0

    async def place_call(self, request: CallRequest) -> None:
        if request.to == self.hung:
            self.requests_to_hung += 1
            await asyncio.Event().wait()
        await super().place_call(request)


async def test_a_number_whose_dial_request_hangs_holds_one_line_and_other_pages_go_on() -> None:
    provider = HangingProvider(capacity=4, hung="+15550000666")
    dispatcher, _ = await _dispatcher(provider, share=0)
    try:
        for i in range(6):  # six alerts for the engineer whose number hangs, queued first
            await dispatcher.submit(dataclasses.replace(_request(f"hung-{i}", "high"), to="+15550000666"))
        for i in range(3):
            await dispatcher.submit(_request(f"other-{i}", "high"))
        await eventually(lambda: _async(len(provider.placed) == 3))
        assert provider.placed == ["other-0", "other-1", "other-2"]
        assert provider.requests_to_hung == 1  # one request in flight to that number, not one per line
    finally:
        await dispatcher.stop()


async def _async(value: object) -> object:
    return value


async def test_withdrawing_a_call_whose_dial_hangs_answers_soon_and_the_call_is_hung_up_once_placed() -> None:
    provider = GatedProvider()
    provider.canceled: list[str] = []  # type: ignore[misc]

    async def cancel_call(call_id: str) -> None:
        provider.canceled.append(call_id)  # type: ignore[attr-defined]

    provider.cancel_call = cancel_call  # type: ignore[method-assign]
    dispatcher, _ = await _dispatcher(provider)
    try:
        await dispatcher.submit(_request("page-1", "high"))
        await asyncio.wait_for(provider.in_flight.wait(), 30)
        # The provider never answers: the acknowledgement is answered after a bounded wait, not never.
        assert await asyncio.wait_for(dispatcher.withdraw("page-1"), 30) is False
        provider.release.set()  # the provider finally answers: the call exists, and is hung up at once
        await eventually(lambda: _async(provider.canceled == ["page-1"]))  # type: ignore[attr-defined]
        assert dispatcher.in_flight == 0
    finally:
        await dispatcher.stop()


async def test_a_low_call_does_not_take_the_line_a_waiting_high_call_gets_once_its_numbers_dial_returns() -> None:
    provider = HangingProvider(capacity=2, hung="+15550000666")
    dispatcher, _ = await _dispatcher(provider, share=0)
    try:
        await dispatcher.submit(dataclasses.replace(_request("high-0", "high"), to="+15550000666"))
        await eventually(lambda: _async(provider.requests_to_hung == 1))
        await dispatcher.submit(dataclasses.replace(_request("high-1", "high"), to="+15550000666"))
        await dispatcher.submit(_request("low-0", "low"))
        await settle()
        # One line is free, but the high call behind the dial in flight keeps it: low waits.
        assert provider.placed == []
    finally:
        await dispatcher.stop()


async def test_on_a_larger_trunk_one_number_may_have_a_quarter_of_the_lines_dialling_at_once() -> None:
    provider = HangingProvider(capacity=8, hung="+15550000666")
    dispatcher, _ = await _dispatcher(provider, share=0)
    try:
        for i in range(6):
            await dispatcher.submit(dataclasses.replace(_request(f"hung-{i}", "high"), to="+15550000666"))
        for i in range(5):
            await dispatcher.submit(_request(f"other-{i}", "high"))
        await eventually(lambda: _async(len(provider.placed) == 5))
        assert provider.requests_to_hung == 2  # 8 lines // 4: an alert storm to one phone still dials in parallel
    finally:
        await dispatcher.stop()
