"""The Twilio provider alone: a loopback Twilio API, and webhooks posted like Twilio over real HTTP."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr_flows import AlertCallFlow, HotlineCallerFlow, ScreeningFlow
from ivr_flows.model import EngineerConnected, Flow, FlowOutcome, NobodyAccepted
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    CallRequest,
    CallResult,
    InboundCall,
    InboundSms,
    ProviderError,
    Reply,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
)
from providers.twilio import RetryPolicy, TwilioProvider, conference_name
from providers.twilio.settings import TwilioSettings
from providers.twilio.twiml import DEFAULT_HOLD_MUSIC_URL
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.peers.twilio_driver import CallLeg, TwilioDriver
from tests.support import eventually

PUBLIC = "https://oncall.example.com"
FROM = "+15559990000"
ALICE = "+15550000001"
HOTLINE = "+15557770000"
CALLER = "+15557770001"


@dataclass
class RecordingEvents:
    """The gateway's side, reduced to a list of what the provider reported."""

    hotline: Flow[Any] | None = None
    reply: str = ""
    reported: list[Any] = field(default_factory=list)
    answering: asyncio.Event | None = None  # when set, inbound_call waits for it (a slow gateway)

    async def call_ended(self, event: CallResult) -> None:
        self.reported.append(event)

    async def inbound_call(self, call: InboundCall) -> Flow[Any] | None:
        self.reported.append(call)
        if self.answering is not None:
            await self.answering.wait()
        return self.hotline

    async def caller_waiting(self, event: CallerWaiting) -> None:
        self.reported.append(event)

    async def caller_finished(self, event: CallerFinished) -> None:
        self.reported.append(event)

    async def sms_status(self, event: SmsStatusChanged) -> None:
        self.reported.append(event)

    async def sms_received(self, sms: InboundSms) -> Reply:
        self.reported.append(sms)
        return Reply(text=self.reply)


@dataclass
class Rig:
    provider: TwilioProvider
    events: RecordingEvents
    api: FakeTwilioApi
    twilio: TwilioDriver

    async def place(self, flow: Flow[Any], *, call_id: str = "page-1", to: str = ALICE) -> CallLeg:
        await self.provider.place_call(CallRequest(call_id=call_id, to=to, caller_id=None, flow=flow,
                                                   ring_timeout_s=25))
        return CallLeg(from_=FROM, to=to, sid=self.api.call_sids[-1])

    async def dial_in(self, *, from_: str = CALLER) -> tuple[CallLeg, str]:
        leg = CallLeg(from_=from_, to=HOTLINE, direction="inbound")
        self.api.incoming(leg.sid, from_=from_, to=HOTLINE)
        status, twiml = await self.twilio.incoming_call("/twilio/voice/inbound", leg)
        assert status == 200, twiml
        return leg, twiml


@asynccontextmanager
async def make_rig(api: FakeTwilioApi | None = None, *, auth_token: str = DEFAULT_AUTH_TOKEN,
                   settled: bool = True, **provider_options: Any) -> AsyncIterator[Rig]:
    """The provider open on its webhooks, against ``api`` (a fresh one by default).

    ``settled``: the start-up credential check is over and its request is off ``api.requests``.
    """
    async with FakeTwilioApi() if api is None else _running(api) as api:
        config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=auth_token, from_number=FROM,
                              api_base_url=api.base_url, max_concurrent_calls=4, calls_per_second=2.0)
        options: dict[str, Any] = {"retry": RetryPolicy(attempts=3, base_s=0, cap_s=0), **provider_options}
        provider = TwilioProvider(config, public_url=PUBLIC + "/", **options)
        app = web.Application()
        app.router.add_routes(provider.routes())
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        events = RecordingEvents()
        await provider.open(events)
        try:
            if settled:
                check = provider.account_check
                assert check is not None
                await eventually(lambda: _async(check.checks > 0))
                api.requests.clear()
            async with TwilioDriver(base_url=str(server.make_url("/")), public_base_url=PUBLIC) as twilio:
                yield Rig(provider=provider, events=events, api=api, twilio=twilio)
        finally:
            await provider.close()
            await server.close()


@asynccontextmanager
async def _running(api: FakeTwilioApi) -> AsyncIterator[FakeTwilioApi]:
    yield api  # started and closed by its owner


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as rig:
        yield rig


def alert_flow(**kwargs: Any) -> AlertCallFlow:
    return AlertCallFlow(message="Disk full on db-1.", **kwargs)


def verbs(twiml: str) -> list[str]:
    return [element.tag for element in ET.fromstring(twiml)]


def results(events: RecordingEvents) -> list[tuple[str, CallOutcome]]:
    return [(e.call_id, e.outcome) for e in events.reported if isinstance(e, CallResult)]


def voice(call_id: str, what: str) -> str:
    return f"{PUBLIC}/twilio/voice/{call_id}/{what}"


# ------------------------------------------------------------------ outbound calls


async def test_alert_call_is_placed_with_our_urls_and_acknowledged_once(rig: Rig) -> None:
    leg = await rig.place(alert_flow())

    sent = rig.api.calls[0]
    assert (sent["To"], sent["From"], sent["Timeout"]) == (ALICE, FROM, "25")
    assert sent["Url"] == voice("page-1", "answer") and sent["Method"] == "POST"
    assert sent["StatusCallback"] == voice("page-1", "status")
    assert (sent["MachineDetection"], sent["AsyncAmd"]) == ("Enable", "true")
    assert rig.provider.capabilities.max_concurrent_calls == 4 and rig.provider.capabilities.inbound_voice

    _, twiml = await rig.twilio.pick_up(sent, leg)
    await rig.twilio.amd_verdict(sent, leg, "human")
    transcript = await rig.twilio.follow(twiml, leg=leg, digits=["1"], url=sent["Url"])

    assert ("say", "Disk full on db-1.") in transcript
    assert transcript[-2:] == [("say", "Acknowledged. Thank you."), ("hangup", "")]
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]
    status, _ = await rig.twilio.status_callback(voice("page-1", "status"), leg, "completed")
    assert status == 200
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]


async def test_a_replayed_status_callback_is_ignored(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    for _ in range(2):
        status, twiml = await rig.twilio.status_callback(voice("page-1", "status"), leg, "no-answer")
        assert status == 200
    assert results(rig.events) == [("page-1", CallOutcome.NO_ANSWER)]
    assert verbs(twiml) == ["Hangup"]  # the replay is ended politely


@pytest.mark.parametrize(("status", "outcome"), [
    ("busy", CallOutcome.BUSY),
    ("no-answer", CallOutcome.NO_ANSWER),
    ("failed", CallOutcome.FAILED),
    ("canceled", CallOutcome.CANCELED),
])
async def test_unanswered_calls_are_reported_at_once(rig: Rig, status: str, outcome: CallOutcome) -> None:
    leg = await rig.place(alert_flow())
    for early in ("initiated", "ringing"):
        await rig.twilio.status_callback(voice("page-1", "status"), leg, early)
    assert results(rig.events) == []
    await rig.twilio.status_callback(voice("page-1", "status"), leg, status, sip_response_code="486")
    assert results(rig.events) == [("page-1", outcome)]


async def test_hanging_up_during_the_message_declines(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    await rig.twilio.answer(voice("page-1", "answer"), leg)
    await rig.twilio.status_callback(voice("page-1", "status"), leg, "completed", duration_s=4)
    assert results(rig.events) == [("page-1", CallOutcome.DECLINED)]


async def test_digits_missing_or_empty_are_no_input(rig: Rig) -> None:
    leg = await rig.place(alert_flow(max_attempts=3))
    await rig.twilio.answer(voice("page-1", "answer"), leg)
    params = leg.params("in-progress", DEFAULT_ACCOUNT_SID)

    _, missing = await rig.twilio.post(voice("page-1", "gather"), params)
    _, empty = await rig.twilio.post(voice("page-1", "gather"), {**params, "Digits": ""})
    assert verbs(missing) == verbs(empty) == ["Gather"]  # no "not an option": silence
    assert results(rig.events) == []
    _, last = await rig.twilio.post(voice("page-1", "gather"), {**params, "Digits": ""})
    assert verbs(last) == ["Say", "Hangup"]
    assert results(rig.events) == [("page-1", CallOutcome.NO_ANSWER)]


async def test_a_wrong_key_is_not_silence(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    await rig.twilio.answer(voice("page-1", "answer"), leg)
    _, twiml = await rig.twilio.post(voice("page-1", "gather"),
                                     {**leg.params("in-progress", DEFAULT_ACCOUNT_SID), "Digits": "7"})
    assert "Sorry, that is not an option." in twiml and verbs(twiml) == ["Say", "Gather"]


@pytest.mark.parametrize("answered_by", ["machine_start", "machine_end_beep", "machine_end_silence",
                                         "machine_end_other", "fax"])
async def test_an_answering_machine_never_acknowledges(rig: Rig, answered_by: str) -> None:
    leg = await rig.place(alert_flow())
    sent = rig.api.calls[0]
    rig.api.set_call_status(leg.sid, "in-progress")
    _, twiml = await rig.twilio.pick_up(sent, leg)
    assert verbs(twiml) == ["Gather"]  # asynchronous AMD: the message starts at once
    status, _ = await rig.twilio.amd_verdict(sent, leg, answered_by)
    assert status == 200
    assert results(rig.events) == [("page-1", CallOutcome.MACHINE)]
    assert await eventually(lambda: _updates_of(rig.api, leg.sid)) == [{"Status": "completed"}]

    _, late = await rig.twilio.post(voice("page-1", "gather"),
                                    {**leg.params("in-progress", DEFAULT_ACCOUNT_SID), "Digits": "1"})
    assert verbs(late) == ["Hangup"]
    await rig.twilio.status_callback(voice("page-1", "status"), leg, "completed")
    assert results(rig.events) == [("page-1", CallOutcome.MACHINE)]


async def test_a_machine_seen_only_by_the_status_callback(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    await rig.twilio.status_callback(voice("page-1", "status"), leg, "completed", answered_by="machine_start")
    assert results(rig.events) == [("page-1", CallOutcome.MACHINE)]


async def test_a_permanent_rest_error_fails_the_call_and_leaves_nothing_behind(rig: Rig) -> None:
    with pytest.raises(ProviderError) as caught:
        await rig.provider.place_call(CallRequest(call_id="page-1", to="+1", caller_id=None, flow=alert_flow()))
    assert caught.value.permanent is True
    assert len(rig.api.requests) == 1  # not retried
    leg = CallLeg(from_=FROM, to="+1")
    _, twiml = await rig.twilio.answer(voice("page-1", "answer"), leg)
    assert verbs(twiml) == ["Hangup"]
    assert rig.events.reported == []


async def test_transient_rest_errors_are_retried_then_reported_as_transient(rig: Rig) -> None:
    rig.api.fail_next(503, 20500, times=1)
    await rig.place(alert_flow(), call_id="page-1")
    assert len(rig.api.calls) == 1

    rig.api.fail_next(503, 20500, times=3)
    with pytest.raises(ProviderError) as caught:
        await rig.place(alert_flow(), call_id="page-2")
    assert caught.value.permanent is False
    assert len(rig.api.calls) == 1


# ------------------------------------------------------------------ webhook safety


async def test_a_bad_or_missing_signature_is_403_and_changes_nothing(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    url = voice("page-1", "answer")
    params = leg.params("in-progress", DEFAULT_ACCOUNT_SID)
    local = str(rig.twilio.base_url) + "/twilio/voice/page-1/answer"

    for kwargs in ({"signature": "bm90IGEgc2lnbmF0dXJl"}, {"signed": False},
                   {"signature": rig.twilio.sign(local, params)}):  # signed for the internal URL
        status, body = await rig.twilio.post(url, params, **kwargs)
        assert status == 403, body
    forged = TwilioDriver(base_url=rig.twilio.base_url, public_base_url=PUBLIC, auth_token="someone-elses")
    async with forged:
        status, _ = await forged.answer(url, leg)
        assert status == 403

    status, twiml = await rig.twilio.answer(url, leg)  # the call was untouched: it still answers
    assert status == 200 and verbs(twiml) == ["Gather"]


async def test_unknown_call_ids_and_foreign_call_sids_are_ended_politely(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    stranger = CallLeg(from_=FROM, to=ALICE)
    for url, who in ((voice("page-9", "answer"), leg), (voice("page-1", "answer"), stranger),
                     (voice("page-9", "status"), leg), (voice("page-9", "hold"), leg)):
        status, twiml = await rig.twilio.post(url, who.params("in-progress", DEFAULT_ACCOUNT_SID))
        assert status == 200 and verbs(twiml) == ["Hangup"], url
    assert rig.events.reported == []
    _, twiml = await rig.twilio.answer(voice("page-1", "answer"), leg)
    assert verbs(twiml) == ["Gather"]


async def test_a_gather_for_a_finished_flow_changes_nothing(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    _, twiml = await rig.twilio.answer(voice("page-1", "answer"), leg)
    await rig.twilio.follow(twiml, leg=leg, digits=["2"])
    params = {**leg.params("in-progress", DEFAULT_ACCOUNT_SID), "Digits": "1"}
    _, replay = await rig.twilio.post(voice("page-1", "gather"), params)
    assert verbs(replay) == ["Hangup"]
    assert results(rig.events) == [("page-1", CallOutcome.DECLINED)]


# ------------------------------------------------------------------ cancel


async def test_cancel_a_ringing_call(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    await rig.provider.cancel_call("page-1")
    await rig.provider.cancel_call("page-404")  # unknown: nothing happens
    assert [(sid, dict(form)) for sid, form in rig.api.updates] == [(leg.sid, {"Status": "canceled"})]
    assert rig.api.call_status[leg.sid] == "canceled"
    # Too late to answer, and the final callback only confirms it.
    _, twiml = await rig.twilio.answer(voice("page-1", "answer"), leg)
    assert verbs(twiml) == ["Hangup"]
    await rig.twilio.status_callback(voice("page-1", "status"), leg, "canceled")
    assert results(rig.events) == [("page-1", CallOutcome.CANCELED)]


async def test_cancel_an_answered_call_completes_it(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    rig.api.set_call_status(leg.sid, "in-progress")
    await rig.twilio.answer(voice("page-1", "answer"), leg)
    await rig.provider.cancel_call("page-1")
    assert [dict(form) for _, form in rig.api.updates] == [{"Status": "completed"}]


# ------------------------------------------------------------------ the hotline


async def test_caller_holds_then_is_bridged_with_the_engineer_who_accepts(rig: Rig) -> None:
    rig.events.hotline = HotlineCallerFlow(greeting="Ops hotline.", priority_menu=True)
    caller, twiml = await rig.dial_in()
    assert rig.events.reported[0] == InboundCall(call_id=f"tw-{caller.sid}", caller=CALLER, dialled=HOTLINE)
    held = await rig.twilio.follow(twiml, leg=caller, digits=["1"], max_redirects=1)
    assert held[-1] == ("parked", voice(f"tw-{caller.sid}", "hold"))
    assert held.count(("play", DEFAULT_HOLD_MUSIC_URL)) == 2  # looping through the hold URL
    assert rig.events.reported[1:] == [CallerWaiting(call_id=f"tw-{caller.sid}", priority="high")]

    engineer = await rig.place(ScreeningFlow(caller="+1 555-777-0001"), call_id="page-7")
    _, twiml = await rig.twilio.answer(voice("page-7", "answer"), engineer)
    accepted = await rig.twilio.follow(twiml, leg=engineer, digits=["1"])
    room = f"conference:{conference_name('page-7')}"
    assert accepted[-2:] == [("say", "Connecting you now."), ("dial", room)]
    assert results(rig.events) == [("page-7", CallOutcome.ACCEPTED)]

    await rig.provider.notify(f"tw-{caller.sid}", EngineerConnected(engineer_name="Alice", call_id="page-7"))
    redirect = await eventually(lambda: _updates_of(rig.api, caller.sid))
    assert redirect == [{"Url": voice(f"tw-{caller.sid}", "hold") + "?redirected=1", "Method": "POST"}]
    bridged = await rig.twilio.follow(await rig.twilio.fetch(redirect[0]["Url"], caller), leg=caller)
    assert bridged == [("say", "Connecting you to Alice."), ("dial", room)]

    # The caller leaves: the engineer's leg is hung up, and the caller is reported once.
    await rig.twilio.status_callback("/twilio/voice/status", caller, "completed")
    await rig.twilio.status_callback("/twilio/voice/status", caller, "completed")
    finished = [e for e in rig.events.reported if isinstance(e, CallerFinished)]
    assert finished == [CallerFinished(call_id=f"tw-{caller.sid}", outcome=FlowOutcome.CONNECTED)]
    assert await eventually(lambda: _updates_of(rig.api, engineer.sid)) == [{"Status": "completed"}]


async def test_the_hold_loop_delivers_what_a_lost_redirect_carried(rig: Rig) -> None:
    rig.events.hotline = HotlineCallerFlow(greeting="Ops hotline.")
    caller, twiml = await rig.dial_in()
    await rig.twilio.follow(twiml, leg=caller, max_redirects=0)
    rig.api.fail_next(400, 21220, message="Call is not in-progress. Cannot redirect.")

    await rig.provider.notify(f"tw-{caller.sid}", NobodyAccepted())
    await eventually(lambda: _async(len(rig.api.requests) == 1))
    assert rig.api.updates == []  # the redirect was refused

    looped = await rig.twilio.fetch(voice(f"tw-{caller.sid}", "hold"), caller)
    transcript = await rig.twilio.follow(looped, leg=caller, url=voice(f"tw-{caller.sid}", "hold"))
    assert [kind for kind, _ in transcript] == ["say", "record", "say", "hangup"]
    recording = transcript[1][1]
    finished = [e for e in rig.events.reported if isinstance(e, CallerFinished)]
    assert finished == [CallerFinished(call_id=f"tw-{caller.sid}", outcome=FlowOutcome.VOICEMAIL,
                                       recording_url=recording)]
    await rig.twilio.status_callback("/twilio/voice/status", caller, "completed")
    assert len([e for e in rig.events.reported if isinstance(e, CallerFinished)]) == 1


async def test_a_caller_hanging_up_on_hold_is_abandoned(rig: Rig) -> None:
    rig.events.hotline = HotlineCallerFlow(greeting="Ops hotline.")
    caller, twiml = await rig.dial_in()
    await rig.twilio.follow(twiml, leg=caller, max_redirects=0)
    await rig.twilio.status_callback("/twilio/voice/status", caller, "completed")
    assert rig.events.reported[-1] == CallerFinished(call_id=f"tw-{caller.sid}", outcome=FlowOutcome.ABANDONED)
    assert verbs(await rig.twilio.fetch(voice(f"tw-{caller.sid}", "hold"), caller)) == ["Hangup"]
    await rig.provider.notify(f"tw-{caller.sid}", NobodyAccepted())  # over: nothing happens
    assert rig.api.updates == []


async def test_a_number_that_is_not_a_hotline_is_not_in_service(rig: Rig) -> None:
    _, twiml = await rig.dial_in()
    assert verbs(twiml) == ["Say", "Hangup"] and "not in service" in twiml


@pytest.mark.parametrize(("sent", "seen"), [
    ("anonymous", ""), ("+266696687", ""), ("", ""), ("Restricted", ""),
    ("(555) 777-0001", CALLER), ("+15557770001", CALLER),
])
async def test_caller_numbers_become_e164_or_withheld(rig: Rig, sent: str, seen: str) -> None:
    await rig.dial_in(from_=sent)
    assert rig.events.reported[0].caller == seen


# ------------------------------------------------------------------ SMS


async def test_send_sms_and_map_its_status_callbacks(rig: Rig) -> None:
    await rig.provider.send_sms(SmsRequest(sms_id="page-5", to=ALICE, body="Disk full"))
    sent = rig.api.messages[0]
    assert (sent["To"], sent["From"], sent["Body"]) == (ALICE, FROM, "Disk full")
    assert sent["StatusCallback"] == f"{PUBLIC}/twilio/sms/page-5/status"

    url = sent["StatusCallback"]
    for status in ("queued", "sent", "sent", "delivered", "undelivered"):
        code, body = await rig.twilio.sms_status(url, message_sid="SM1", status=status, from_=FROM, to=ALICE)
        assert code == 200 and body.endswith("<Response />")
    assert rig.events.reported == [
        SmsStatusChanged(sms_id="page-5", status=SmsStatus.SENT),
        SmsStatusChanged(sms_id="page-5", status=SmsStatus.DELIVERED),
    ]


@pytest.mark.parametrize("status", ["failed", "undelivered"])
async def test_an_sms_that_cannot_be_delivered_is_failed(rig: Rig, status: str) -> None:
    await rig.twilio.sms_status(f"{PUBLIC}/twilio/sms/page-6/status", message_sid="SM2", status=status,
                                from_=FROM, to=ALICE, error_code="30003")
    assert rig.events.reported == [
        SmsStatusChanged(sms_id="page-6", status=SmsStatus.FAILED, detail="Twilio error 30003"),
    ]


async def test_an_inbound_sms_is_passed_on_and_answered(rig: Rig) -> None:
    rig.events.reply = "Alert #3 acknowledged."
    status, twiml = await rig.twilio.inbound_sms("/twilio/sms/inbound", from_=ALICE, to=FROM, body="ack 3")
    assert status == 200
    assert ET.fromstring(twiml).find("Message").text == "Alert #3 acknowledged."  # type: ignore[union-attr]
    assert rig.events.reported == [InboundSms(sender=ALICE, to=FROM, text="ack 3")]

    rig.events.reply = ""
    _, twiml = await rig.twilio.inbound_sms("/twilio/sms/inbound", from_="+15550000042", to=FROM, body="hi")
    assert verbs(twiml) == []


async def test_readiness() -> None:
    async with FakeTwilioApi() as api:
        config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, from_number=FROM,
                              api_base_url=api.base_url)
        provider = TwilioProvider(config, public_url=PUBLIC)
        assert provider.readiness() == {"voice:twilio": "not open"}
        with pytest.raises(ProviderError) as caught:
            await provider.send_sms(SmsRequest(sms_id="page-1", to=ALICE, body="x"))
        assert caught.value.permanent is False
        await provider.open(RecordingEvents())
        try:
            # Ready once the credentials have been checked.
            assert await eventually(lambda: _async(provider.readiness() == {"voice:twilio": "ok"}))
            assert ("GET", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json") in api.requests
        finally:
            await provider.close()


async def _updates_of(api: FakeTwilioApi, sid: str) -> list[dict[str, str]]:
    return [dict(form) for updated, form in api.updates if updated == sid]


async def _async(value: bool) -> bool:
    return value


async def test_a_separate_signing_key_is_what_webhooks_are_checked_against() -> None:
    async with FakeTwilioApi() as api:
        config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, from_number=FROM,
                              api_base_url=api.base_url, signing_key="the-signing-key")
        provider = TwilioProvider(config, public_url=PUBLIC)
        app = web.Application()
        app.router.add_routes(provider.routes())
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        await provider.open(RecordingEvents())
        try:
            leg = CallLeg(from_=CALLER, to=HOTLINE, direction="inbound")
            api.incoming(leg.sid, from_=CALLER, to=HOTLINE)
            base = str(server.make_url("/"))
            async with TwilioDriver(base_url=base, public_base_url=PUBLIC) as with_token:
                status, _ = await with_token.incoming_call("/twilio/voice/inbound", leg)
                assert status == 403  # signed with the auth token: not what this provider signs with
            async with TwilioDriver(base_url=base, public_base_url=PUBLIC, auth_token="the-signing-key") as signed:
                status, _ = await signed.incoming_call("/twilio/voice/inbound", leg)
                assert status == 200
        finally:
            await provider.close()
            await server.close()


def test_sms_only_routes_when_another_provider_carries_voice() -> None:
    config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, from_number=FROM)
    provider = TwilioProvider(config, public_url=PUBLIC)
    paths = {route.path for route in provider.routes(voice=False)}
    assert paths == {"/twilio/sms/inbound", "/twilio/sms/{sms_id}/status"}
    assert "/twilio/voice/inbound" in {route.path for route in provider.routes()}


# ------------------------------------------------- races between Twilio's requests


async def _waiting_caller(rig: Rig) -> tuple[CallLeg, str]:
    rig.events.hotline = HotlineCallerFlow(greeting="Ops hotline.")
    caller, twiml = await rig.dial_in()
    await rig.twilio.follow(twiml, leg=caller, max_redirects=0)
    return caller, f"tw-{caller.sid}"


async def test_the_hold_loop_keeps_holding_while_the_redirect_is_on_its_way(rig: Rig) -> None:
    caller, call_id = await _waiting_caller(rig)
    await rig.provider.notify(call_id, NobodyAccepted())
    # The loop's own <Redirect> comes first: it must not take what the redirect is coming for.
    assert verbs(await rig.twilio.fetch(voice(call_id, "hold"), caller)) == ["Play", "Redirect"]
    redirect = await eventually(lambda: _updates_of(rig.api, caller.sid))
    assert verbs(await rig.twilio.fetch(redirect[0]["Url"], caller)) == ["Say", "Record"]


async def _recording(rig: Rig) -> tuple[CallLeg, str]:
    caller, call_id = await _waiting_caller(rig)
    await rig.provider.notify(call_id, NobodyAccepted())
    redirect = await eventually(lambda: _updates_of(rig.api, caller.sid))
    assert verbs(await rig.twilio.fetch(redirect[0]["Url"], caller)) == ["Say", "Record"]
    return caller, call_id


def _finished(rig: Rig) -> list[CallerFinished]:
    return [e for e in rig.events.reported if isinstance(e, CallerFinished)]


async def test_the_voicemail_is_kept_when_the_final_status_beats_the_record_action(rig: Rig) -> None:
    caller, call_id = await _recording(rig)
    await rig.twilio.status_callback("/twilio/voice/status", caller, "completed")  # the caller hung up to end it
    assert _finished(rig) == []  # the status waits a moment for the recording
    params = {**caller.params("completed", DEFAULT_ACCOUNT_SID), "RecordingUrl": "https://api.twilio.com/rec/RE1",
              "RecordingDuration": "9"}
    status, _ = await rig.twilio.post(voice(call_id, "record"), params)
    assert status == 200
    assert _finished(rig) == [CallerFinished(call_id=call_id, outcome=FlowOutcome.VOICEMAIL,
                                             recording_url="https://api.twilio.com/rec/RE1")]


async def test_a_voicemail_with_no_recording_still_finishes_the_caller(rig: Rig) -> None:
    rig.provider.record_grace_s = 0.01
    caller, call_id = await _recording(rig)
    await rig.twilio.status_callback("/twilio/voice/status", caller, "completed")  # silent: Twilio sends no action
    await eventually(lambda: _async(bool(_finished(rig))))
    assert _finished(rig) == [CallerFinished(call_id=call_id, outcome=FlowOutcome.ABANDONED)]


async def test_a_caller_who_hangs_up_while_the_gateway_answers_is_not_held(rig: Rig) -> None:
    rig.events.hotline = HotlineCallerFlow(greeting="Ops hotline.")
    rig.events.answering = asyncio.Event()
    leg = CallLeg(from_=CALLER, to=HOTLINE, direction="inbound")
    rig.api.incoming(leg.sid, from_=CALLER, to=HOTLINE)
    arriving = asyncio.ensure_future(rig.twilio.incoming_call("/twilio/voice/inbound", leg))
    await eventually(lambda: _async(any(isinstance(e, InboundCall) for e in rig.events.reported)))
    await rig.twilio.status_callback("/twilio/voice/status", leg, "completed")
    rig.events.answering.set()
    status, twiml = await arriving
    assert status == 200 and verbs(twiml) == ["Hangup"]
    assert _finished(rig) == [CallerFinished(call_id=f"tw-{leg.sid}", outcome=FlowOutcome.ABANDONED)]
    assert not any(isinstance(e, CallerWaiting) for e in rig.events.reported)
