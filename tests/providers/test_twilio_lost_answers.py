"""A Twilio API that takes a create and never answers: bounded, looked up, never placed twice.

The loopback API leaves chosen creates hanging (the connection accepted, no
answer ever), either before it places the call or after (only the answer is
lost). Each request is bounded by the provider's ``request_timeout_s``, set
to 1 s here so that the hung requests end quickly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from providers.base import CallOutcome, CallRequest, ProviderError, SmsRequest
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, FakeTwilioApi
from tests.peers.twilio_driver import CallLeg
from tests.providers.test_twilio_provider import ALICE, FROM, Rig, _async, alert_flow, make_rig, results, voice
from tests.support import eventually

CALLS = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls.json"
MESSAGES = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with make_rig(request_timeout_s=1.0) as rig:
        yield rig


def request(call_id: str = "page-1", to: str = ALICE) -> CallRequest:
    return CallRequest(call_id=call_id, to=to, caller_id=None, flow=alert_flow(), ring_timeout_s=25)


def lookups(api: FakeTwilioApi) -> int:
    return api.requests.count(("GET", CALLS))


async def test_a_hung_create_costs_one_attempt_and_is_transient(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE)

    with pytest.raises(ProviderError) as caught:
        await rig.provider.place_call(request())

    assert caught.value.permanent is False  # the dispatcher tries again later, with the line free meanwhile
    assert len(rig.api.create_attempts) == 1  # not 4 tries of 10 s each
    assert lookups(rig.api) == 1 and rig.api.calls == []
    await rig.provider.place_call(request("page-2", "+15550000002"))  # other numbers are unaffected


async def test_a_create_that_did_not_place_the_call_is_sent_again_on_the_next_attempt(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE, times=1)
    with pytest.raises(ProviderError):
        await rig.provider.place_call(request())

    await rig.provider.place_call(request())  # the dispatcher's retry: looked up again, then created

    assert len(rig.api.create_attempts) == 2 and len(rig.api.calls) == 1
    assert lookups(rig.api) == 2
    leg = CallLeg(from_=FROM, to=ALICE, sid=rig.api.call_sids[0])
    _, twiml = await rig.twilio.pick_up(rig.api.calls[0], leg)
    await rig.twilio.follow(twiml, leg=leg, digits=["1"])
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]


async def test_a_call_placed_whose_answer_was_lost_is_adopted_not_created_twice(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE, place=True, times=1)

    await rig.provider.place_call(request())  # no error: the lookup found it

    assert len(rig.api.create_attempts) == 1 and len(rig.api.calls) == 1
    leg = CallLeg(from_=FROM, to=ALICE, sid=rig.api.call_sids[0])
    _, twiml = await rig.twilio.pick_up(rig.api.calls[0], leg)
    await rig.twilio.follow(twiml, leg=leg, digits=["1"])
    assert results(rig.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]
    await rig.provider.cancel_call("page-1")  # and it is known by its sid: reported once, nothing to cancel


async def test_when_the_lookup_fails_too_the_next_attempt_looks_again_before_creating(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE, place=True, times=1)
    placing = asyncio.ensure_future(rig.provider.place_call(request()))
    await eventually(lambda: _async(rig.api.hung == 1))
    rig.api.fail_next(503, 20503, times=3)  # the lookup that follows the lost answer fails, every try
    with pytest.raises(ProviderError) as caught:
        await placing
    assert caught.value.permanent is False

    await rig.provider.place_call(request())  # the dispatcher's retry

    assert len(rig.api.create_attempts) == 1  # found by the second lookup: never created twice
    assert len(rig.api.calls) == 1


async def test_a_webhook_carrying_the_call_sid_settles_it_without_a_lookup(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE, place=True, times=1)
    placing = asyncio.ensure_future(rig.provider.place_call(request()))
    await eventually(lambda: _async(rig.api.hung == 1))
    leg = CallLeg(from_=FROM, to=ALICE, sid=rig.api.call_sids[0])
    status, _ = await rig.twilio.status_callback(voice("page-1", "status"), leg, "ringing")
    assert status == 200

    await placing

    assert lookups(rig.api) == 0 and len(rig.api.create_attempts) == 1


async def test_a_call_of_ours_to_the_same_number_is_not_taken_for_the_lost_one(rig: Rig) -> None:
    await rig.provider.place_call(request("page-1"))  # a call of ours to Alice, in the log
    rig.api.hang_creates_to(ALICE, times=1)

    with pytest.raises(ProviderError):
        await rig.provider.place_call(request("page-2"))

    assert lookups(rig.api) == 1
    await rig.provider.place_call(request("page-2"))  # not found: created on the next attempt
    assert len(rig.api.calls) == 2


async def test_a_lost_answer_before_a_cancel_still_hangs_up_the_call_once_found(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE, times=1, place=True)
    placing = asyncio.ensure_future(rig.provider.place_call(request()))
    await eventually(lambda: _async(rig.api.hung == 1))
    await rig.provider.cancel_call("page-1")  # the alert was acknowledged elsewhere meanwhile

    await placing

    sid = rig.api.call_sids[0]
    await eventually(lambda: _async(any(s == sid and f.get("Status") == "canceled" for s, f in rig.api.updates)))


# --------------------------------------------------------------------------- SMS


async def test_an_sms_whose_answer_was_lost_but_was_sent_is_not_sent_twice(rig: Rig) -> None:
    rig.api.hang_creates_to(ALICE, place=True, times=1)

    await rig.provider.send_sms(SmsRequest(sms_id="page-5", to=ALICE, body="Disk full on db-1"))

    assert len(rig.api.message_attempts) == 1 and len(rig.api.messages) == 1
    assert rig.api.requests.count(("GET", MESSAGES)) == 1


async def test_an_sms_whose_answer_was_lost_and_was_not_sent_is_transient(rig: Rig) -> None:
    await rig.provider.send_sms(SmsRequest(sms_id="page-4", to=ALICE, body="Another alert"))
    rig.api.hang_creates_to(ALICE, times=1)

    with pytest.raises(ProviderError) as caught:
        await rig.provider.send_sms(SmsRequest(sms_id="page-5", to=ALICE, body="Disk full on db-1"))

    assert caught.value.permanent is False
    assert len(rig.api.message_attempts) == 2 and len(rig.api.messages) == 1
