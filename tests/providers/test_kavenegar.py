"""The Kavenegar provider against the loopback Kavenegar API: numbers, sends, error codes, delivery polling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from core.clock import FakeClock
from providers.base import InboundSms, ProviderError, Reply, SmsRequest, SmsStatus, SmsStatusChanged
from providers.kavenegar import (
    CHECKING,
    INBOUND_PATH,
    KavenegarError,
    KavenegarProvider,
    KavenegarSettings,
    RetryPolicy,
    from_kavenegar,
    to_receptor,
)
from providers.kavenegar.provider import local_id
from tests.peers.kavenegar_api import DEFAULT_API_KEY, DEFAULT_LINE, FakeKavenegarApi
from tests.support import eventually

IRAN = "+989121234567"


class Events:
    """What the provider reports (the ProviderEvents it is given)."""

    def __init__(self) -> None:
        self.statuses: list[SmsStatusChanged] = []
        self.received: list[InboundSms] = []

    async def sms_status(self, event: SmsStatusChanged) -> None:
        self.statuses.append(event)

    async def sms_received(self, sms: InboundSms) -> Reply:
        self.received.append(sms)
        return Reply(text="")

    async def call_ended(self, event: Any) -> None: ...
    async def inbound_call(self, call: Any) -> None: ...
    async def caller_waiting(self, event: Any) -> None: ...
    async def caller_finished(self, event: Any) -> None: ...


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def api() -> AsyncIterator[FakeKavenegarApi]:
    async with FakeKavenegarApi() as peer:
        yield peer


@pytest.fixture
async def provider(api: FakeKavenegarApi) -> AsyncIterator[tuple[KavenegarProvider, Events]]:
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url)
    kavenegar = KavenegarProvider(settings, clock=FakeClock(), retry=RetryPolicy(attempts=3), sleep=_no_sleep)
    events = Events()
    await kavenegar.open(events)
    await _checked(kavenegar)  # the account check at open is done: the requests below are the tests' own
    yield kavenegar, events
    await kavenegar.close()


def _sends(api: FakeKavenegarApi) -> int:
    return sum(1 for _, path, _ in api.requests if path.endswith("/sms/send.json"))


def test_numbers_go_out_in_the_documented_forms_and_come_back_as_e164() -> None:
    assert to_receptor(IRAN) == "09121234567"
    assert to_receptor("+15550000001") == "0015550000001"
    for raw in ("09121234567", "+989121234567", "989121234567", "00989121234567", " 0912 123 4567 "):
        assert from_kavenegar(raw) == IRAN, raw
    assert from_kavenegar("0015550000001") == "+15550000001"
    assert from_kavenegar("") == "" and from_kavenegar("kavenegar") == ""


async def test_an_sms_goes_out_with_receptor_sender_and_message(
        api: FakeKavenegarApi, provider: tuple[KavenegarProvider, Events]) -> None:
    kavenegar, _ = provider
    await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="Alert #1: disk full"))
    assert [(m["receptor"], m["sender"], m["message"]) for m in api.messages] == [
        ("09121234567", DEFAULT_LINE, "Alert #1: disk full")]
    method, path, _ = api.requests[-1]
    assert (method, path) == ("POST", "/v1/{key}/sms/send.json")


@pytest.mark.parametrize(("code", "what"), [(403, "invalid API key"), (418, "not enough credit"),
                                            (401, "account disabled"), (412, "invalid sender"),
                                            (501, "test account")])
async def test_permanent_errors_are_not_retried(
        api: FakeKavenegarApi, provider: tuple[KavenegarProvider, Events], code: int, what: str) -> None:
    kavenegar, _ = provider
    api.fail_next(code, times=5)
    with pytest.raises(KavenegarError) as raised:
        await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="x"))
    assert raised.value.permanent and raised.value.code == code and what in str(raised.value)
    assert _sends(api) == 1 and api.messages == []


async def test_a_wrong_api_key_and_low_credit_are_what_the_api_says(api: FakeKavenegarApi) -> None:
    """Not injected: the peer checks the key and the credit itself, as Kavenegar does."""
    wrong = KavenegarProvider(KavenegarSettings(api_key="not-the-key", sender=DEFAULT_LINE, api_url=api.base_url),
                              clock=FakeClock(), sleep=_no_sleep)
    await wrong.open(Events())
    try:
        with pytest.raises(KavenegarError) as raised:
            await wrong.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="x"))
        assert (raised.value.code, raised.value.permanent) == (403, True)
    finally:
        await wrong.close()
    api.credit = 100
    poor = KavenegarProvider(KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url),
                             clock=FakeClock(), sleep=_no_sleep)
    await poor.open(Events())
    try:
        with pytest.raises(KavenegarError) as raised:
            await poor.send_sms(SmsRequest(sms_id="page-2", to=IRAN, body="x"))
        assert (raised.value.code, raised.value.permanent) == (418, True)
    finally:
        await poor.close()


@pytest.mark.parametrize("code", [409, 402, 451])
async def test_transient_errors_are_retried_and_then_given_up(
        api: FakeKavenegarApi, provider: tuple[KavenegarProvider, Events], code: int) -> None:
    kavenegar, _ = provider
    api.fail_next(code, times=2)
    await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="x"))  # the third attempt goes through
    assert len(api.messages) == 1 and _sends(api) == 3

    api.fail_next(code, times=3)
    with pytest.raises(KavenegarError) as raised:
        await kavenegar.send_sms(SmsRequest(sms_id="page-2", to=IRAN, body="x"))
    assert not raised.value.permanent and raised.value.code == code
    assert len(api.messages) == 1


async def test_an_unreachable_api_is_transient(provider: tuple[KavenegarProvider, Events]) -> None:
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url="http://127.0.0.1:9")
    kavenegar = KavenegarProvider(settings, clock=FakeClock(), retry=RetryPolicy(attempts=2), sleep=_no_sleep)
    await kavenegar.open(Events())
    try:
        with pytest.raises(KavenegarError) as raised:
            await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="x"))
        assert not raised.value.permanent and not raised.value.lost_answer
    finally:
        await kavenegar.close()


async def test_delivery_is_polled_and_reported_once(
        api: FakeKavenegarApi, provider: tuple[KavenegarProvider, Events]) -> None:
    kavenegar, events = provider
    await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="a"))
    await kavenegar.send_sms(SmsRequest(sms_id="page-2", to="+15550000001", body="b"))
    first, second = (m["messageid"] for m in api.messages)
    await kavenegar.poll_once()
    assert events.statuses == []  # both still queued

    api.set_status(first, 4)
    api.set_status(second, 11)
    await kavenegar.poll_once()
    assert events.statuses == [
        SmsStatusChanged(sms_id="page-1", status=SmsStatus.SENT, detail="Kavenegar status 4: sent to the operator"),
        SmsStatusChanged(sms_id="page-2", status=SmsStatus.FAILED,
                         detail="Kavenegar status 11: not delivered (phone off or out of reach)"),
    ]
    api.set_status(first, 5)  # also "sent to the operator": nothing new to say
    await kavenegar.poll_once()
    assert len(events.statuses) == 2
    api.set_status(first, 10)
    await kavenegar.poll_once()
    await kavenegar.poll_once()
    assert events.statuses[2:] == [SmsStatusChanged(sms_id="page-1", status=SmsStatus.DELIVERED)]
    status_requests = [fields for _, path, fields in api.requests if path.endswith("/sms/status.json")]
    assert status_requests[0]["messageid"] == f"{first},{second}"
    assert status_requests[-1]["messageid"] == str(first)  # the final ones are no longer asked about

    # An id Kavenegar says it does not know (status 100) is dropped without a verdict: no failover on a guess.
    await kavenegar.send_sms(SmsRequest(sms_id="page-3", to=IRAN, body="c"))
    api.set_status(api.messages[-1]["messageid"], 100)
    await kavenegar.poll_once()
    await kavenegar.poll_once()
    assert len(events.statuses) == 3
    status_requests = [fields for _, path, fields in api.requests if path.endswith("/sms/status.json")]
    assert status_requests[-1]["messageid"] == str(api.messages[-1]["messageid"])  # asked once, then dropped


async def test_the_poller_runs_on_the_injected_clock(api: FakeKavenegarApi) -> None:
    clock = FakeClock()
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url,
                                 status_poll_interval_s=30)
    kavenegar = KavenegarProvider(settings, clock=clock, sleep=_no_sleep)
    events = Events()
    await kavenegar.open(events)
    try:
        await kavenegar.send_sms(SmsRequest(sms_id="page-7", to=IRAN, body="a"))
        api.set_status(api.messages[0]["messageid"], 10)
        await clock.advance(30)
        async def delivered() -> bool:
            return bool(events.statuses)

        await eventually(delivered)
        assert events.statuses == [SmsStatusChanged(sms_id="page-7", status=SmsStatus.DELIVERED)]
    finally:
        await kavenegar.close()


async def _checked(kavenegar: KavenegarProvider) -> str:
    async def done() -> str | None:
        status = kavenegar.readiness()["sms:kavenegar"]
        return None if status == CHECKING else status

    return str(await eventually(done))


async def test_the_api_key_and_the_credit_are_checked_for_readiness(api: FakeKavenegarApi) -> None:
    clock = FakeClock()
    good = KavenegarProvider(KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url),
                             clock=clock, sleep=_no_sleep)
    assert good.readiness() == {"sms:kavenegar": "not open"}
    await good.open(Events())
    try:
        assert await _checked(good) == "ok"
        api.credit = 0
        await clock.advance(300)  # checked again every 5 minutes
        await eventually(lambda: _true(good.readiness()["sms:kavenegar"] == "out of credit (remaincredit 0)"))
    finally:
        await good.close()

    wrong = KavenegarProvider(KavenegarSettings(api_key="not-the-key", sender=DEFAULT_LINE, api_url=api.base_url),
                              clock=FakeClock(), sleep=_no_sleep)
    await wrong.open(Events())
    try:
        assert await _checked(wrong) == "refused: error 403, invalid API key"
    finally:
        await wrong.close()

    away = KavenegarProvider(KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE,
                                               api_url="http://127.0.0.1:9"), clock=FakeClock(), sleep=_no_sleep)
    await away.open(Events())
    try:
        assert (await _checked(away)).startswith("unreachable: ")
    finally:
        await away.close()
    assert next(path for _, path, _ in api.requests if "account" in path) == "/v1/{key}/account/info.json"


async def _true(value: bool) -> bool:
    return value


async def test_a_send_whose_answer_was_lost_is_looked_up_by_its_localid(api: FakeKavenegarApi) -> None:
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url)
    kavenegar = KavenegarProvider(settings, clock=FakeClock(), sleep=_no_sleep, request_timeout_s=1.0)
    events = Events()
    await kavenegar.open(events)
    try:
        await _checked(kavenegar)
        # It went out, and only the answer was lost: it is found and followed, never sent twice.
        api.hold_next_send(sent=True)
        await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="a"))
        [message] = api.messages
        assert message["localid"] == local_id("page-1") and message["localid"].isdigit()
        assert _sends(api) == 1
        api.set_status(message["messageid"], 10)
        await kavenegar.poll_once()
        assert events.statuses == [SmsStatusChanged(sms_id="page-1", status=SmsStatus.DELIVERED)]

        # It never went out: not found, so transient (the next provider may send it), and nothing was sent.
        api.hold_next_send(sent=False)
        with pytest.raises(ProviderError) as raised:
            await kavenegar.send_sms(SmsRequest(sms_id="page-2", to=IRAN, body="b"))
        assert not raised.value.permanent and "not sent" in str(raised.value)
        assert len(api.messages) == 1 and _sends(api) == 2
        lookups = [f for _, path, f in api.requests if path.endswith("/sms/statuslocalmessageid.json")]
        assert [f["localid"] for f in lookups] == [local_id("page-1"), local_id("page-2")]
    finally:
        await kavenegar.close()


async def test_a_proxy_page_in_another_charset_is_a_transient_provider_error(
        api: FakeKavenegarApi, provider: tuple[KavenegarProvider, Events]) -> None:
    """Not UnicodeDecodeError: only a ProviderError lets the manager fail over to the next SMS provider."""
    kavenegar, _ = provider
    for _ in range(3):
        api.proxy_page_next(502, "<html>خطا</html>".encode("cp1256"))
    with pytest.raises(KavenegarError) as raised:
        await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="x"))
    assert (raised.value.code, raised.value.permanent) == (502, False)
    assert _sends(api) == 3 and api.messages == []


async def test_the_api_key_is_in_no_log_line_and_no_error(
        api: FakeKavenegarApi, caplog: pytest.LogCaptureFixture) -> None:
    """It is part of every request's URL: nothing that names the URL may be logged or raised."""
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for api_url in (api.base_url, "http://127.0.0.1:9"):  # Kavenegar, and nothing listening
        settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api_url)
        kavenegar = KavenegarProvider(settings, clock=FakeClock(), retry=RetryPolicy(attempts=2), sleep=_no_sleep,
                                      request_timeout_s=1.0)
        await kavenegar.open(Events())
        try:
            await _checked(kavenegar)
            for fault in ("403", "409", "proxy", "lost"):
                if fault == "proxy":
                    for _ in range(2):
                        api.proxy_page_next(502, b"<html>\xe1 bad gateway</html>")
                elif fault == "lost":
                    api.hold_next_send(sent=False)
                else:  # refused at once; busy on both attempts
                    api.fail_next(int(fault), times=1 if fault == "403" else 2)
                with pytest.raises(ProviderError) as raised:
                    await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="x"))
                errors += [str(raised.value), repr(raised.value)]
            errors += [repr(kavenegar), repr(kavenegar._rest), str(kavenegar.readiness())]
        finally:
            await kavenegar.close()
    assert any("error 403" in e for e in errors) and any("HTTP 502" in e for e in errors)
    assert DEFAULT_API_KEY not in caplog.text and not any(DEFAULT_API_KEY in e for e in errors)


class _FailingOnce(Events):
    """The gateway could not handle the first SMS from ``number`` (its store was down), then could."""

    def __init__(self, number: str) -> None:
        super().__init__()
        self.number = number
        self.failed = False

    async def sms_received(self, sms: InboundSms) -> Reply:
        if sms.sender == self.number and not self.failed:
            self.failed = True
            raise RuntimeError("store unavailable")
        return await super().sms_received(sms)


async def test_a_read_reply_that_could_not_be_handled_is_tried_again_and_keeps_no_other_back(
        api: FakeKavenegarApi) -> None:
    """sms/receive.json marks what it answers read: a message that failed here is not in its next answer."""
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url,
                                 receive_poll_interval_s=10)
    kavenegar = KavenegarProvider(settings, clock=FakeClock(), sleep=_no_sleep)
    events = _FailingOnce("+989350000001")
    await kavenegar.open(events)
    try:
        api.incoming(from_="09350000001", message="ack")
        api.incoming(from_="09121234567", message="resolve 4")
        await kavenegar.receive_once()
        assert [(s.sender, s.text) for s in events.received] == [(IRAN, "resolve 4")]
        api.fail_next(409)  # the next read fails: the one kept is kept on
        with pytest.raises(KavenegarError):
            await kavenegar.receive_once()
        await kavenegar.receive_once()
        assert [(s.sender, s.text) for s in events.received] == [(IRAN, "resolve 4"), ("+989350000001", "ack")]
        await kavenegar.receive_once()
        assert len(events.received) == 2
    finally:
        await kavenegar.close()


async def test_a_forward_that_could_not_be_handled_acts_when_it_comes_again(
        api: FakeKavenegarApi, aiohttp_client: Callable[..., Any]) -> None:
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url,
                                 inbound_secret="0123456789abcdef0123")
    kavenegar = KavenegarProvider(settings, clock=FakeClock(), sleep=_no_sleep)
    events = _FailingOnce(IRAN)
    await kavenegar.open(events)
    try:
        app = web.Application()
        app.add_routes(kavenegar.routes())
        client = await aiohttp_client(app)
        url = str(client.make_url(f"{INBOUND_PATH}?secret=0123456789abcdef0123"))
        status, _ = await api.forward(url, from_="09121234567", message="ack", messageid=77)
        assert status == 500 and events.received == []
        status, _ = await api.forward(url, from_="09121234567", message="ack", messageid=77)
        assert status == 200 and [s.text for s in events.received] == ["ack"]
        status, _ = await api.forward(url, from_="09121234567", message="ack", messageid=77)
        assert status == 200 and len(events.received) == 1  # handled: a repeat acts no more
    finally:
        await kavenegar.close()


class _Answering(Events):
    async def sms_received(self, sms: InboundSms) -> Reply:
        await super().sms_received(sms)
        return Reply(text="Alert #4 acknowledged")


async def test_close_stops_every_task_even_a_reply_still_being_sent(api: FakeKavenegarApi) -> None:
    clock = FakeClock()
    settings = KavenegarSettings(api_key=DEFAULT_API_KEY, sender=DEFAULT_LINE, api_url=api.base_url,
                                 receive_poll_interval_s=10)
    kavenegar = KavenegarProvider(settings, clock=clock, sleep=_no_sleep)
    await kavenegar.open(_Answering())
    await _checked(kavenegar)
    await kavenegar.send_sms(SmsRequest(sms_id="page-1", to=IRAN, body="a"))  # the status poller has work
    api.hold_next_send(sent=False)  # the answer to the reply below never comes
    api.incoming(from_="09121234567", message="ack")
    await clock.advance(10)
    await eventually(lambda: _true(_sends(api) == 2))  # the reply is on its way
    tasks = [kavenegar._poller, kavenegar._checker, kavenegar._receiver, *kavenegar._tasks]
    assert len(tasks) == 4 and not any(task is None or task.done() for task in tasks)

    await kavenegar.close()
    assert all(task is not None and task.done() for task in tasks)
    before = len(api.requests)
    await clock.advance(3600)
    assert len(api.requests) == before  # nothing polls, checks or reads any more
    assert kavenegar.readiness() == {"sms:kavenegar": "not open"}
