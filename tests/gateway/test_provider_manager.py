"""The provider manager: failover by channel and order, health with a bounded probe, routing by carrier."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.clock import FakeClock
from gateway.config import PROVIDER_CHANNELS, load_config
from gateway.provider_manager import ProviderManager
from gateway.provider_setup import build_providers
from gateway.web.json_body import read_json
from ivr_flows import AlertCallFlow
from ivr_flows.model import Event, NobodyAccepted
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    CallRequest,
    CallResult,
    Capabilities,
    InboundCall,
    InboundSms,
    ProviderError,
    Reply,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
)
from tests.support import BASE_CONFIG, write_config


class FakeProvider:
    """A voice and SMS provider that does what the test says; it reports through ``events``."""

    def __init__(self, name: str, *, lines: int = 10) -> None:
        self.name = name
        self.capabilities = Capabilities(voice=True, sms=True, max_concurrent_calls=lines)
        self.placed: list[str] = []
        self.sent: list[str] = []
        self.canceled: list[str] = []
        self.notified: list[tuple[str, Event]] = []
        self.refuse = False
        self.hold: asyncio.Event | None = None  # set: a dial request waits for it (a slow provider)
        self.events: Any = None

    async def place_call(self, request: CallRequest) -> None:
        if self.hold is not None:
            await self.hold.wait()
        if self.refuse:
            raise ProviderError(f"{self.name} is unreachable", permanent=False)
        self.placed.append(request.call_id)

    async def cancel_call(self, call_id: str) -> None:
        self.canceled.append(call_id)

    async def notify(self, call_id: str, event: Event) -> None:
        self.notified.append((call_id, event))

    async def send_sms(self, request: SmsRequest) -> None:
        if self.refuse:
            raise ProviderError(f"{self.name} rejected the SMS", permanent=True)
        self.sent.append(request.sms_id)


class Gateway:
    def __init__(self) -> None:
        self.results: list[CallResult] = []
        self.sms: list[SmsStatusChanged] = []

    async def call_ended(self, event: CallResult) -> None:
        self.results.append(event)

    async def sms_status(self, event: SmsStatusChanged) -> None:
        self.sms.append(event)

    async def inbound_call(self, call: InboundCall) -> None:
        return None

    async def caller_waiting(self, event: CallerWaiting) -> None:
        pass

    async def caller_finished(self, event: CallerFinished) -> None:
        pass

    async def sms_received(self, sms: InboundSms) -> Reply:
        return Reply()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _rig(*names: str, lines: int = 10) -> tuple[ProviderManager, list[FakeProvider], Gateway, list[tuple[str, ...]],
                                                Clock]:
    providers = [FakeProvider(n, lines=lines) for n in names]
    clock = Clock()
    manager = ProviderManager(voice=providers, sms=providers, down_after=3, first_backoff_s=30, now=clock)
    gateway = Gateway()
    manager.events = gateway
    for p in providers:
        p.events = manager.events_for(p.name)
    carried: list[tuple[str, ...]] = []

    async def carried_by(page: str, provider: str, detail: str) -> None:
        carried.append((page, provider, detail))

    manager.carried_by = carried_by
    return manager, providers, gateway, carried, clock


def _call(call_id: str) -> CallRequest:
    return CallRequest(call_id=call_id, to="+15550000001", caller_id=None, flow=AlertCallFlow(message="m"))


async def test_a_call_the_first_provider_cannot_place_is_placed_by_the_next() -> None:
    manager, (asterisk, twilio), _gateway, carried, _ = _rig("asterisk", "twilio")
    asterisk.refuse = True
    await manager.place_call(_call("page-1"))
    assert twilio.placed == ["page-1"]
    assert carried == [("page-1", "twilio", "after asterisk: asterisk is unreachable")]


async def test_a_call_the_first_provider_reports_failed_is_placed_again_by_the_next() -> None:
    manager, (asterisk, twilio), gateway, carried, _ = _rig("asterisk", "twilio")
    await manager.place_call(_call("page-1"))
    assert asterisk.placed == ["page-1"] and twilio.placed == []
    await asterisk.events.call_ended(CallResult(call_id="page-1", outcome=CallOutcome.FAILED, detail="congestion"))
    assert twilio.placed == ["page-1"]
    assert gateway.results == []  # the failure was not the page's result: another provider carries it
    await twilio.events.call_ended(CallResult(call_id="page-1", outcome=CallOutcome.ACKNOWLEDGED))
    assert gateway.results == [CallResult(call_id="page-1", outcome=CallOutcome.ACKNOWLEDGED)]
    assert carried[-1] == ("page-1", "twilio", "after asterisk: congestion")


async def test_a_persons_answer_never_fails_over() -> None:
    manager, (asterisk, twilio), gateway, _, _ = _rig("asterisk", "twilio")
    for outcome in (CallOutcome.BUSY, CallOutcome.DECLINED, CallOutcome.NO_ANSWER):
        await manager.place_call(_call(f"page-{outcome}"))
        await asterisk.events.call_ended(CallResult(call_id=f"page-{outcome}", outcome=outcome))
    assert twilio.placed == []
    assert [r.outcome for r in gateway.results] == [CallOutcome.BUSY, CallOutcome.DECLINED, CallOutcome.NO_ANSWER]


async def test_when_every_provider_fails_the_page_fails_with_every_reason() -> None:
    manager, providers, _gateway, _, _ = _rig("asterisk", "twilio")
    for p in providers:
        p.refuse = True
    try:
        await manager.place_call(_call("page-1"))
    except ProviderError as exc:
        assert "asterisk is unreachable" in str(exc) and "twilio is unreachable" in str(exc)
        assert not exc.permanent
    else:
        raise AssertionError("expected a ProviderError")


async def test_a_provider_that_keeps_failing_is_skipped_until_one_probe_finds_it_back() -> None:
    manager, (asterisk, twilio), _gateway, _, clock = _rig("asterisk", "twilio")
    asterisk.refuse = True
    for i in range(3):
        await manager.place_call(_call(f"page-{i}"))
    assert manager.readiness()["provider:asterisk"].startswith("down: 3 failures in a row")
    assert manager.readiness()["provider:twilio"] == "ok"
    await manager.place_call(_call("page-skip"))
    assert "page-skip" in twilio.placed and len(asterisk.placed) == 0  # asterisk not even tried
    # After the back-off one call probes it; a second call while that probe is in flight does not.
    clock.t += 31
    asterisk.refuse, asterisk.hold = False, asyncio.Event()
    probe = asyncio.create_task(manager.place_call(_call("page-probe")))
    await asyncio.sleep(0)
    await manager.place_call(_call("page-meanwhile"))
    assert "page-meanwhile" in twilio.placed
    asterisk.hold.set()
    await probe
    assert asterisk.placed == ["page-probe"]
    assert manager.readiness()["provider:asterisk"] == "ok"  # the probe went through: back in use
    await manager.place_call(_call("page-back"))
    assert asterisk.placed[-1] == "page-back"


async def test_a_probe_that_is_never_sent_or_ends_canceled_does_not_leave_the_provider_probing() -> None:
    manager, (twilio, _asterisk), _, _, clock = _rig("twilio", "asterisk")
    twilio.refuse = True
    for i in range(3):
        await manager.place_call(_call(f"page-{i}"))  # twilio fails, asterisk carries them
    assert manager.is_down("twilio")
    clock.t += 31
    twilio.refuse = False
    await manager.cancel_call("page-0")  # frees asterisk's line; twilio was never probed by it
    await manager.place_call(_call("page-probe"))
    assert twilio.placed == ["page-probe"] and not manager.is_down("twilio")


async def test_a_canceled_call_frees_its_line() -> None:
    manager, (asterisk, twilio), _, _, _ = _rig("asterisk", "twilio", lines=1)
    await manager.place_call(_call("page-1"))
    await manager.cancel_call("page-1")  # acknowledged elsewhere: the provider reports nothing for it
    await manager.place_call(_call("page-2"))
    assert asterisk.placed == ["page-1", "page-2"] and twilio.placed == []


async def test_a_report_from_a_provider_that_no_longer_carries_the_call_is_not_the_result() -> None:
    manager, (asterisk, _twilio), gateway, _, _ = _rig("asterisk", "twilio")
    asterisk.refuse = True
    await manager.place_call(_call("page-1"))  # asterisk's answer was lost (transient): twilio carries it
    await asterisk.events.call_ended(CallResult(call_id="page-1", outcome=CallOutcome.NO_ANSWER))
    assert gateway.results == []
    await asyncio.sleep(0)
    assert "page-1" in asterisk.canceled  # that late copy is hung up


async def test_no_failover_for_a_page_no_longer_wanted() -> None:
    manager, (asterisk, twilio), gateway, _, _ = _rig("asterisk", "twilio")

    async def closed(page_id: str) -> bool:
        return False

    manager.wanted = closed
    await manager.place_call(_call("page-1"))
    await asterisk.events.call_ended(CallResult(call_id="page-1", outcome=CallOutcome.FAILED, detail="congestion"))
    assert twilio.placed == []
    assert [r.outcome for r in gateway.results] == [CallOutcome.FAILED]


async def test_the_last_provider_gets_no_more_calls_than_its_lines() -> None:
    manager, (asterisk, twilio), _, _, clock = _rig("asterisk", "twilio", lines=1)
    manager.health["twilio"].failures, manager.health["twilio"].down_until = 3, clock.t + 100  # twilio is down
    await manager.place_call(_call("page-0"))
    try:
        await manager.place_call(_call("page-1"))  # asterisk's one line is taken, twilio is skipped
    except ProviderError as exc:
        assert "lines are in use" in str(exc) and not exc.permanent
    else:
        raise AssertionError("a call beyond every usable line must wait in its queue")
    assert asterisk.placed == ["page-0"] and twilio.placed == []


async def test_a_provider_whose_lines_are_full_passes_the_call_to_the_next() -> None:
    manager, (asterisk, twilio), _, _, _ = _rig("asterisk", "twilio", lines=1)
    await manager.place_call(_call("page-1"))
    await manager.place_call(_call("page-2"))
    assert asterisk.placed == ["page-1"] and twilio.placed == ["page-2"]
    assert manager.capabilities.max_concurrent_calls == 2


async def test_cancel_and_notify_reach_the_provider_carrying_the_call() -> None:
    manager, (asterisk, twilio), _, _, _ = _rig("asterisk", "twilio")
    asterisk.refuse = True
    await manager.place_call(_call("page-1"))
    await manager.cancel_call("page-1")
    await manager.notify("page-1", NobodyAccepted())
    assert twilio.canceled == ["page-1"] and asterisk.canceled == []
    assert twilio.notified == [("page-1", NobodyAccepted())]


async def test_a_cancel_for_a_call_placed_before_a_restart_reaches_every_provider() -> None:
    manager, (asterisk, twilio), _, _, _ = _rig("asterisk", "twilio")
    await manager.cancel_call("page-41")  # this manager never placed it: the previous process did
    assert asterisk.canceled == ["page-41"] and twilio.canceled == ["page-41"]


async def test_an_sms_fails_over_when_refused_and_when_its_delivery_fails() -> None:
    manager, (twilio, kavenegar), gateway, carried, _ = _rig("twilio", "kavenegar")
    twilio.refuse = True
    await manager.send_sms(SmsRequest(sms_id="page-1", to="+15550000001", body="hi"))
    assert kavenegar.sent == ["page-1"]
    twilio.refuse = False
    await manager.send_sms(SmsRequest(sms_id="page-2", to="+15550000001", body="hi"))
    assert twilio.sent == ["page-2"]
    await twilio.events.sms_status(SmsStatusChanged(sms_id="page-2", status=SmsStatus.FAILED, detail="30034"))
    assert kavenegar.sent == ["page-1", "page-2"]
    assert gateway.sms == []
    await kavenegar.events.sms_status(SmsStatusChanged(sms_id="page-2", status=SmsStatus.DELIVERED))
    assert gateway.sms == [SmsStatusChanged(sms_id="page-2", status=SmsStatus.DELIVERED)]
    assert ("page-2", "kavenegar", "after twilio: 30034") in carried


async def test_an_sms_refused_after_its_alert_was_closed_is_not_sent_by_the_next_provider() -> None:
    manager, (twilio, kavenegar), _, _, _ = _rig("twilio", "kavenegar")

    async def closed(page_id: str) -> bool:
        return False  # acknowledged while twilio was still trying

    manager.wanted = closed
    twilio.refuse = True
    try:
        await manager.send_sms(SmsRequest(sms_id="page-1", to="+15550000001", body="hi"))
    except ProviderError as exc:
        assert "closed meanwhile" in str(exc)
    else:
        raise AssertionError("an SMS nobody wants any more must not be sent")
    assert kavenegar.sent == []


def test_the_config_knows_what_each_provider_carries(tmp_path: Path) -> None:
    """config.PROVIDER_CHANNELS (what check-config accepts under providers:) matches what the plugins declare."""
    config = load_config(write_config(tmp_path, BASE_CONFIG + """
twilio: {account_sid: AC1, auth_token: t, from_number: "+15559990000"}
asterisk: {username: gw, secret: s, caller_id: "+15559990000"}
sandbox: {enabled: true}
kavenegar: {api_key: k, sender: "10004346"}
providers: {voice: [asterisk, twilio, sandbox], sms: [twilio, sandbox, kavenegar]}
"""))
    providers = build_providers(config, FakeClock(), read_json=read_json)
    for plugin in providers.plugins:
        declared = ("voice",) * plugin.capabilities.voice + ("sms",) * plugin.capabilities.sms
        assert PROVIDER_CHANNELS[plugin.name] == declared, plugin.name
    assert sorted(p.name for p in providers.plugins) == sorted(PROVIDER_CHANNELS)
