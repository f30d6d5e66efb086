"""Answering-machine detection: asynchronous on alert calls, none on screening calls."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ivr_flows import ScreeningFlow
from providers.base import CallOutcome, CallRequest
from providers.twilio import TwilioProvider
from providers.twilio.settings import TwilioSettings
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.peers.twilio_driver import DriverError, TwilioDriver
from tests.providers.test_twilio_provider import (
    FROM,
    PUBLIC,
    Rig,
    _updates_of,
    alert_flow,
    make_rig,
    results,
    verbs,
    voice,
)
from tests.support import eventually


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig() as rig:
        yield rig


async def test_a_screening_call_has_no_machine_detection(rig: Rig) -> None:
    leg = await rig.place(ScreeningFlow(caller="+1 555-777-0001"), call_id="page-7")
    sent = rig.api.calls[0]
    assert "MachineDetection" not in sent and "AsyncAmd" not in sent

    _, twiml = await rig.twilio.pick_up(sent, leg)  # no detector: the prompt is fetched at once
    transcript = await rig.twilio.follow(twiml, leg=leg, digits=["1"], url=sent["Url"])
    assert ("say", "Connecting you now.") in transcript
    assert results(rig.events) == [("page-7", CallOutcome.ACCEPTED)]
    with pytest.raises(DriverError):
        await rig.twilio.amd_verdict(sent, leg, "machine_start")  # nothing to send a verdict to


async def test_an_alert_call_uses_asynchronous_detection_with_a_signed_callback(rig: Rig) -> None:
    await rig.place(alert_flow())
    sent = rig.api.calls[0]
    assert (sent["MachineDetection"], sent["AsyncAmd"]) == ("Enable", "true")
    assert sent["AsyncAmdStatusCallback"] == voice("page-1", "amd")
    assert sent["AsyncAmdStatusCallbackMethod"] == "POST"


async def test_machine_detection_off_in_the_config_means_none_at_all(rig: Rig) -> None:
    config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, from_number=FROM,
                          api_base_url=rig.api.base_url, machine_detection=False)
    provider = TwilioProvider(config, public_url=PUBLIC)
    await provider.open(rig.events)
    try:
        await provider.place_call(CallRequest(call_id="page-2", to="+15550000002", caller_id=None,
                                              flow=alert_flow()))
    finally:
        await provider.close()
    assert "MachineDetection" not in rig.api.calls[-1] and "AsyncAmd" not in rig.api.calls[-1]


@pytest.mark.parametrize("answered_by", ["human", "unknown"])
async def test_a_human_or_unknown_verdict_changes_nothing(rig: Rig, answered_by: str) -> None:
    leg = await rig.place(alert_flow())
    sent = rig.api.calls[0]
    _, twiml = await rig.twilio.pick_up(sent, leg)
    status, body = await rig.twilio.amd_verdict(sent, leg, answered_by)
    assert status == 200 and verbs(body) == []
    transcript = await rig.twilio.follow(twiml, leg=leg, digits=["1"], url=sent["Url"])
    assert transcript[-2:] == [("say", "Acknowledged. Thank you."), ("hangup", "")]
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]
    assert rig.api.updates == []


async def test_a_press_of_1_before_a_machine_verdict_stands(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    sent = rig.api.calls[0]
    _, twiml = await rig.twilio.pick_up(sent, leg)
    await rig.twilio.follow(twiml, leg=leg, digits=["1"], url=sent["Url"])
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]

    await rig.twilio.amd_verdict(sent, leg, "machine_end_beep")  # the detector was slower than the person
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]
    assert rig.api.updates == []  # and the call is not cut short


async def test_a_press_of_1_after_a_machine_verdict_does_not_acknowledge(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    sent = rig.api.calls[0]
    rig.api.set_call_status(leg.sid, "in-progress")
    _, twiml = await rig.twilio.pick_up(sent, leg)
    await rig.twilio.amd_verdict(sent, leg, "machine_start")

    transcript = await rig.twilio.follow(twiml, leg=leg, digits=["1"], url=sent["Url"])
    assert transcript[-1] == ("hangup", "")
    assert ("say", "Acknowledged. Thank you.") not in transcript
    assert results(rig.events) == [("page-1", CallOutcome.MACHINE)]
    assert await eventually(lambda: _updates_of(rig.api, leg.sid)) == [{"Status": "completed"}]
    assert rig.api.call_status[leg.sid] == "completed"


async def test_the_verdict_webhook_is_signature_checked(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    sent = rig.api.calls[0]
    await rig.twilio.pick_up(sent, leg)
    params = {"AccountSid": DEFAULT_ACCOUNT_SID, "CallSid": leg.sid, "AnsweredBy": "machine_start"}
    forged = TwilioDriver(base_url=rig.twilio.base_url, public_base_url=PUBLIC, auth_token="someone-elses")
    async with forged:
        status, _ = await forged.post(sent["AsyncAmdStatusCallback"], params)
    assert status == 403
    status, _ = await rig.twilio.post(sent["AsyncAmdStatusCallback"], params, signed=False)
    assert status == 403
    assert results(rig.events) == []


async def test_a_verdict_for_another_call_sid_or_an_unknown_call_changes_nothing(rig: Rig) -> None:
    leg = await rig.place(alert_flow())
    sent = rig.api.calls[0]
    await rig.twilio.pick_up(sent, leg)
    params = {"AccountSid": DEFAULT_ACCOUNT_SID, "CallSid": "CA" + "f" * 32, "AnsweredBy": "machine_start"}
    for url in (sent["AsyncAmdStatusCallback"], voice("page-404", "amd")):
        status, _ = await rig.twilio.post(url, params)
        assert status == 200
    assert results(rig.events) == []
    assert rig.api.updates == []
