"""TwilioRest against a loopback Twilio-compatible API over real HTTP: fields, retries, errors."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from providers.base import ProviderError
from providers.twilio import mask_number
from providers.twilio.rest import RetryPolicy, TwilioRest, TwilioRestError
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi

TO = "+15550000001"
FROM = "+15557770002"
VOICE_URL = "https://oncall.example.com/twilio/voice?call=page-1"
STATUS_URL = "https://oncall.example.com/twilio/status?call=page-1"


class Sleeps:
    """Records back-off delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def api() -> AsyncIterator[FakeTwilioApi]:
    async with FakeTwilioApi() as api:
        yield api


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def make_rest(
    base_url: str,
    sleeps: Sleeps,
    *,
    account_sid: str = DEFAULT_ACCOUNT_SID,
    auth_token: str = DEFAULT_AUTH_TOKEN,
    attempts: int = 4,
    request_timeout_s: float = 5.0,
) -> TwilioRest:
    return TwilioRest(
        account_sid=account_sid,
        auth_token=auth_token,
        api_base_url=base_url,
        retry=RetryPolicy(attempts=attempts, base_s=0.5, cap_s=8.0),
        request_timeout_s=request_timeout_s,
        sleep=sleeps,
        jitter=lambda: 1.0,
    )


@pytest.fixture
async def rest(api: FakeTwilioApi, sleeps: Sleeps) -> AsyncIterator[TwilioRest]:
    async with make_rest(api.base_url, sleeps) as rest:
        yield rest


async def create(rest: TwilioRest, *, to: str = TO, machine_detection: bool = True) -> str:
    return await rest.create_call(
        to=to,
        from_=FROM,
        url=VOICE_URL,
        status_callback=STATUS_URL,
        timeout_s=25,
        machine_detection=machine_detection,
    )


# ------------------------------------------------------------------- happy paths


async def test_create_call_sends_twilio_the_fields_it_needs(
    rest: TwilioRest, api: FakeTwilioApi
) -> None:
    sid = await create(rest)

    assert re.fullmatch(r"CA[0-9a-f]{32}", sid)
    assert api.call_status[sid] == "queued"
    assert api.requests == [("POST", f"/2010-04-01/Accounts/{api.account_sid}/Calls.json")]
    [form] = api.calls
    assert form["To"] == TO
    assert form["From"] == FROM
    assert form["Url"] == VOICE_URL
    assert form["Method"] == "POST"
    assert form["StatusCallback"] == STATUS_URL
    assert form["StatusCallbackMethod"] == "POST"
    assert form.getall("StatusCallbackEvent") == ["answered", "completed"]
    assert form["MachineDetection"] == "Enable"
    assert form["Timeout"] == "25"


async def test_machine_detection_can_be_left_off(rest: TwilioRest, api: FakeTwilioApi) -> None:
    await create(rest, machine_detection=False)

    assert "MachineDetection" not in api.calls[0]
    assert "AsyncAmd" not in api.calls[0]


async def test_asynchronous_machine_detection_names_its_callback(rest: TwilioRest, api: FakeTwilioApi) -> None:
    amd_url = "https://oncall.example.com/twilio/voice/page-1/amd"
    await rest.create_call(to=TO, from_=FROM, url=VOICE_URL, status_callback=STATUS_URL, timeout_s=25,
                           amd_status_callback=amd_url)

    [form] = api.calls
    assert (form["MachineDetection"], form["AsyncAmd"]) == ("Enable", "true")
    assert (form["AsyncAmdStatusCallback"], form["AsyncAmdStatusCallbackMethod"]) == (amd_url, "POST")


async def test_fetch_account_reads_status_and_type_and_never_keeps_the_token(sleeps: Sleeps) -> None:
    async with FakeTwilioApi(account_type="Trial") as api, make_rest(api.base_url, sleeps) as rest:
        account = await rest.fetch_account()

    assert (account.sid, account.status, account.type) == (DEFAULT_ACCOUNT_SID, "active", "Trial")
    assert DEFAULT_AUTH_TOKEN not in repr(account)
    assert api.requests == [("GET", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json")]


async def test_fetch_account_with_a_wrong_token_is_20003_and_not_retried(api: FakeTwilioApi, sleeps: Sleeps) -> None:
    async with make_rest(api.base_url, sleeps, auth_token="wrong-token") as rest:
        with pytest.raises(TwilioRestError) as info:
            await rest.fetch_account()

    assert (info.value.status, info.value.code, info.value.permanent) == (401, 20003, True)
    assert len(api.requests) == 1


async def test_recent_calls_and_messages_list_one_number_newest_first(rest: TwilioRest, api: FakeTwilioApi) -> None:
    first, _, third = await create(rest), await create(rest, to="+15550000002"), await create(rest)
    await rest.send_sms(to=TO, from_=FROM, body="hello", status_callback=STATUS_URL)

    calls = await rest.recent_calls(to=TO, from_=FROM)
    assert [c.sid for c in calls] == [third, first]
    assert all(c.created is not None for c in calls)
    assert await rest.recent_calls(to=TO, from_="+15550009999") == []
    [message] = await rest.recent_messages(to=TO, from_=FROM)
    assert message.body == "hello" and message.sid.startswith("SM")
    assert ("GET", f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls.json") in api.requests


async def test_send_sms(rest: TwilioRest, api: FakeTwilioApi) -> None:
    sid = await rest.send_sms(
        to=TO, from_=FROM, body="Alert: disk full", status_callback=STATUS_URL
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    [form] = api.messages
    assert (form["To"], form["From"], form["Body"], form["StatusCallback"]) == (
        TO,
        FROM,
        "Alert: disk full",
        STATUS_URL,
    )


async def test_cancel_a_ringing_call_cancels_it(rest: TwilioRest, api: FakeTwilioApi) -> None:
    sid = await create(rest)
    api.set_call_status(sid, "ringing")

    await rest.cancel_call(sid)

    assert [(s, dict(form)) for s, form in api.updates] == [(sid, {"Status": "canceled"})]
    assert api.call_status[sid] == "canceled"


async def test_cancel_an_answered_call_completes_it(rest: TwilioRest, api: FakeTwilioApi) -> None:
    sid = await create(rest)
    api.set_call_status(sid, "in-progress")

    await rest.cancel_call(sid, answered=True)

    assert [dict(form) for _, form in api.updates] == [{"Status": "completed"}]
    assert api.call_status[sid] == "completed"


async def test_cancel_of_a_call_answered_a_moment_ago_still_ends_it(
    rest: TwilioRest, api: FakeTwilioApi
) -> None:
    sid = await create(rest)
    api.set_call_status(sid, "in-progress")  # answered, but we have not heard yet

    await rest.cancel_call(sid, answered=False)

    assert [form["Status"] for _, form in api.updates] == ["canceled", "completed"]
    assert api.call_status[sid] == "completed"


async def test_cancel_of_an_unknown_call_is_a_no_op(rest: TwilioRest, api: FakeTwilioApi) -> None:
    await rest.cancel_call("CA" + "f" * 32)

    assert len(api.requests) == 1


async def test_redirect_call_points_the_live_call_at_new_twiml(
    rest: TwilioRest, api: FakeTwilioApi
) -> None:
    sid = await create(rest)
    api.set_call_status(sid, "in-progress")

    await rest.redirect_call(sid, url="https://oncall.example.com/twilio/bridge?call=h-1")

    [(updated, form)] = api.updates
    assert updated == sid
    assert dict(form) == {
        "Url": "https://oncall.example.com/twilio/bridge?call=h-1",
        "Method": "POST",
    }


async def test_every_request_goes_under_a_base_url_with_a_path_prefix(sleeps: Sleeps) -> None:
    async with FakeTwilioApi(path_prefix="/api/laml") as api, make_rest(api.base_url + "/api/laml", sleeps) as rest:
        sid = await create(rest)
        await rest.cancel_call(sid)

    assert [path for _, path in api.requests] == [
        f"/api/laml/2010-04-01/Accounts/{api.account_sid}/Calls.json",
        f"/api/laml/2010-04-01/Accounts/{api.account_sid}/Calls/{sid}.json",
    ]


# --------------------------------------------------------------------- retries


async def test_503_twice_then_success_is_retried_with_growing_delays(
    rest: TwilioRest, api: FakeTwilioApi, sleeps: Sleeps
) -> None:
    api.fail_next(503, 20503, times=2)

    sid = await create(rest)

    assert api.call_status[sid] == "queued"
    assert len(api.requests) == 3
    assert len(api.calls) == 1
    assert sleeps.delays == [0.5, 1.0]


async def test_429_is_retried(rest: TwilioRest, api: FakeTwilioApi, sleeps: Sleeps) -> None:
    api.fail_next(429, 20429)

    sid = await rest.send_sms(to=TO, from_=FROM, body="hi", status_callback=STATUS_URL)

    assert sid.startswith("SM")
    assert len(api.requests) == 2
    assert sleeps.delays == [0.5]


async def test_invalid_to_number_is_permanent_and_not_retried(
    rest: TwilioRest, api: FakeTwilioApi, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "+05551234567"

    with pytest.raises(ProviderError) as info:
        await create(rest, to=bad)

    assert info.value.permanent is True
    assert isinstance(info.value, TwilioRestError)
    assert (info.value.status, info.value.code) == (400, 21211)
    assert "21211" in str(info.value)
    assert "is not a valid phone number" in str(info.value)
    assert len(api.requests) == 1
    assert sleeps.delays == []
    assert bad not in str(info.value)
    assert bad not in caplog.text
    assert mask_number(bad) in str(info.value)


async def test_wrong_credentials_are_permanent(
    api: FakeTwilioApi, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with make_rest(api.base_url, sleeps, auth_token="wrong-token-123456") as rest:
        with pytest.raises(ProviderError) as info:
            await create(rest)

    assert info.value.permanent is True
    assert "20003" in str(info.value)
    assert "Authenticate" in str(info.value)
    assert len(api.requests) == 1
    assert api.calls == []
    assert "wrong-token-123456" not in caplog.text
    assert TO not in caplog.text
    assert "wrong-token-123456" not in repr(rest)


async def test_exhausted_retries_raise_a_transient_error(
    api: FakeTwilioApi, sleeps: Sleeps
) -> None:
    api.fail_next(503, 20503, times=10)
    async with make_rest(api.base_url, sleeps, attempts=3) as rest:
        with pytest.raises(ProviderError) as info:
            await create(rest)

    assert info.value.permanent is False
    assert "503" in str(info.value)
    assert len(api.requests) == 3
    assert sleeps.delays == [0.5, 1.0]


async def test_connection_refused_is_transient(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with make_rest(f"http://127.0.0.1:{port}", sleeps, attempts=2) as rest:
        with pytest.raises(ProviderError) as info:
            await create(rest)

    assert info.value.permanent is False
    assert len(sleeps.delays) == 1


async def test_a_create_that_gets_no_answer_is_a_lost_answer_and_is_not_sent_again(sleeps: Sleeps) -> None:
    connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_rest(
            f"http://127.0.0.1:{port}", sleeps, attempts=2, request_timeout_s=0.05
        ) as rest:
            with pytest.raises(ProviderError) as info:
                await create(rest)
    finally:
        server.close()
        for writer in connections:
            writer.close()
        await server.wait_closed()

    assert info.value.permanent is False
    assert isinstance(info.value, TwilioRestError) and info.value.lost_answer
    assert "no answer within 0.05 s" in str(info.value)
    assert len(connections) == 1  # it may have placed the call: sent once, then looked up by the caller
    assert sleeps.delays == []


async def test_a_hung_create_costs_one_bounded_attempt(api: FakeTwilioApi, sleeps: Sleeps) -> None:
    api.hang_creates_to(TO)
    async with make_rest(api.base_url, sleeps, request_timeout_s=1.0) as rest:
        with pytest.raises(TwilioRestError) as info:
            await create(rest)
        assert info.value.lost_answer and not info.value.permanent
        assert len(api.create_attempts) == 1 and api.hung == 1
        await create(rest, to="+15550000002")  # other numbers are unaffected

    assert len(api.calls) == 1


async def test_an_update_that_gets_no_answer_is_retried(api: FakeTwilioApi, sleeps: Sleeps) -> None:
    async with make_rest(api.base_url, sleeps, request_timeout_s=1.0) as rest:
        sid = await create(rest)
        api.set_call_status(sid, "in-progress")
        api.hang_next()
        await rest.redirect_call(sid, url=VOICE_URL)  # an update is idempotent: sent again

    assert api.hung == 1 and len(api.updates) == 1 and len(sleeps.delays) == 1


async def test_an_unreadable_success_is_permanent_so_the_call_is_not_placed_twice(
    sleeps: Sleeps,
) -> None:
    hits = 0

    async def garbled(request: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=201, text="<html>proxy says hi</html>")

    app = web.Application()
    app.router.add_post("/{tail:.*}", garbled)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with make_rest(str(server.make_url("")), sleeps) as rest:
            with pytest.raises(ProviderError) as info:
                await create(rest)
    finally:
        await server.close()

    assert info.value.permanent is True
    assert hits == 1


# ------------------------------------------------------------------ small parts


def test_back_off_doubles_up_to_the_cap_and_jitter_scales_it() -> None:
    policy = RetryPolicy(attempts=7, base_s=0.5, cap_s=3.0)

    assert [policy.delay(n, 1.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.delay(2, 0.25) == 0.25


def test_mask_number_keeps_five_first_and_four_last_characters() -> None:
    assert mask_number("+15550000001") == "+1555***0001"
    assert mask_number("+4930123") == "+49***23"  # short numbers keep less


@pytest.mark.parametrize("base", ["api.twilio.com", "ftp://api.twilio.com", "https://"])
def test_a_bad_api_base_url_is_refused_at_construction(base: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        TwilioRest(account_sid=DEFAULT_ACCOUNT_SID, auth_token="token", api_base_url=base)


async def test_using_the_client_before_open_is_an_error() -> None:
    rest = TwilioRest(account_sid="AC" + "0" * 32, auth_token="token")

    with pytest.raises(RuntimeError):
        await rest.send_sms(to=TO, from_=FROM, body="x", status_callback=STATUS_URL)
