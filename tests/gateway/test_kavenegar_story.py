"""The whole gateway texting through Kavenegar: the loopback Kavenegar API, and its inbound forwards.

Calls stay on the sandbox (or Twilio); SMS steps go out through ``sms/send.json``, an engineer's reply
arrives at ``/kavenegar/sms/inbound?secret=...`` as Kavenegar forwards it, and delivery comes from polling
``sms/status.json`` on the gateway's fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.peers.kavenegar_api import DEFAULT_API_KEY, DEFAULT_LINE, FakeKavenegarApi
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.support import AUTH, BASE_CONFIG, CAROL, Gateway, eventually, write_config

CAROL_IR = "+989121234567"  # carol (team dba, texted by the "texting" policy) lives in Tehran
CAROL_LOCAL = "09121234567"  # how Kavenegar writes her number
SECRET = "s3cr3t-0123456789abcdef"
MESSAGES = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"


def kavenegar_config(api_url: str, *, twilio_url: str | None = None, sms: str = "") -> str:
    text = BASE_CONFIG.replace(CAROL, CAROL_IR) + f"""
kavenegar:
  api_key_env: GATEWAY_TEST_KAVENEGAR_KEY
  sender: {DEFAULT_LINE}
  api_url: {api_url}
  inbound_secret_env: GATEWAY_TEST_KAVENEGAR_SECRET
  status_poll_interval: 30s
"""
    if twilio_url is not None:
        text += f"""
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: {twilio_url}
"""
    if sms:
        text += f"providers: {{voice: [{'twilio' if twilio_url else 'sandbox'}], sms: [{sms}]}}\n"
    return text


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KAVENEGAR_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("GATEWAY_TEST_KAVENEGAR_SECRET", SECRET)


@pytest.fixture
async def api() -> AsyncIterator[FakeKavenegarApi]:
    async with FakeKavenegarApi() as peer:
        yield peer


async def _gateway(aiohttp_client: Callable[..., Any], tmp_path: Path, text: str) -> Gateway:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, text)), clock=clock))
    return Gateway(client, clock)


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], tmp_path: Path, api: FakeKavenegarApi) -> Gateway:
    return await _gateway(aiohttp_client, tmp_path, kavenegar_config(api.base_url))


async def _dba_alert(gateway: Gateway) -> int:
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "replica lag", "labels": {"team": "dba"}})
    assert status == 202, answer
    return int(answer["id"])


async def _texted(api: FakeKavenegarApi, count: int = 1) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]]:
        sent = api.sent_to(CAROL_LOCAL)
        return sent if len(sent) >= count else []

    return await eventually(check)


def _inbound(gateway: Gateway, secret: str | None = SECRET) -> str:
    query = "" if secret is None else f"?secret={secret}"
    return str(gateway.client.make_url(f"/kavenegar/sms/inbound{query}"))


async def test_an_alert_sms_goes_out_and_an_ack_reply_acknowledges(gateway: Gateway, api: FakeKavenegarApi) -> None:
    alert_id = await _dba_alert(gateway)
    [sms] = await _texted(api)
    assert sms["sender"] == DEFAULT_LINE and f"Alert #{alert_id}" in sms["message"]

    # A stranger's "ack" changes nothing (and gets no answer).
    status, _ = await api.forward(_inbound(gateway), from_="09350000000", message="ack")
    assert status == 200
    assert (await gateway.alert(alert_id))["status"] == "triggered"

    status, body = await api.forward(_inbound(gateway), from_=CAROL_LOCAL, message="ack", messageid=5001)
    assert (status, body) == (200, "OK")
    alert = await gateway.alert(alert_id)
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "carol"
    _, reply = await _texted(api, 2)  # the gateway's answer goes back to her through Kavenegar
    assert reply["message"].startswith(f"Alert #{alert_id} acknowledged") and reply["sender"] == DEFAULT_LINE

    # Kavenegar forwarding the same message again is handled once: no second answer. (Its answer would be on
    # its way before the one to the next message, whose arrival is waited for.)
    status, _ = await api.forward(_inbound(gateway), from_=CAROL_LOCAL, message="ack", messageid=5001)
    assert status == 200
    status, _ = await api.forward(_inbound(gateway), from_=CAROL_LOCAL, message="what?", messageid=5002)
    assert status == 200
    *_, help_text = await _texted(api, 3)
    await gateway.clock.advance(1)
    assert len(api.sent_to(CAROL_LOCAL)) == 3 and "ack" in help_text["message"].lower()
    assert not any("already" in m["message"] for m in api.sent_to(CAROL_LOCAL))


async def test_the_other_reply_words_work_too(gateway: Gateway, api: FakeKavenegarApi) -> None:
    alert_id = await _dba_alert(gateway)
    await _texted(api)
    status, _ = await api.forward(_inbound(gateway), from_="+989121234567", message=f"resolve {alert_id}")
    assert status == 200
    assert (await gateway.alert(alert_id))["status"] == "resolved"
    status, _ = await api.forward(_inbound(gateway), from_=CAROL_LOCAL, message="what?")
    assert status == 200
    help_text = (await _texted(api, 3))[-1]["message"]
    assert "ack" in help_text.lower()


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-0000000000", SECRET + "x", SECRET[:-1]])
async def test_a_wrong_or_missing_secret_is_refused_and_changes_nothing(
        gateway: Gateway, api: FakeKavenegarApi, secret: str | None) -> None:
    alert_id = await _dba_alert(gateway)
    await _texted(api)
    status, body = await api.forward(_inbound(gateway, secret), from_=CAROL_LOCAL, message="ack")
    assert status == 403, body
    assert (await gateway.alert(alert_id))["status"] == "triggered"
    assert len(api.sent_to(CAROL_LOCAL)) == 1


async def test_bad_forwards_get_a_4xx(gateway: Gateway, api: FakeKavenegarApi) -> None:
    alert_id = await _dba_alert(gateway)
    await _texted(api)
    url = f"/kavenegar/sms/inbound?secret={SECRET}"
    for form, expected in (({"to": DEFAULT_LINE, "message": "ack"}, 400),
                           ({"from": CAROL_LOCAL, "to": DEFAULT_LINE}, 400),
                           ({"from": "not a number", "message": "ack"}, 422)):
        async with gateway.client.post(url, data=form) as resp:
            assert resp.status == expected, form
            assert (await resp.json())["error"]
    async with gateway.client.post(url, data=b"\xff\xfe", headers={"Content-Type": "multipart/form-data"}) as resp:
        assert 400 <= resp.status < 500
    assert (await gateway.alert(alert_id))["status"] == "triggered"


async def test_a_get_forward_works_like_a_post(gateway: Gateway, api: FakeKavenegarApi) -> None:
    alert_id = await _dba_alert(gateway)
    await _texted(api)
    async with gateway.client.get("/kavenegar/sms/inbound", params={
            "secret": SECRET, "from": CAROL_LOCAL, "to": DEFAULT_LINE, "message": "ack", "messageid": "7"}) as resp:
        assert resp.status == 200
    assert (await gateway.alert(alert_id))["status"] == "acknowledged"


async def test_an_undelivered_sms_fails_the_page(gateway: Gateway, api: FakeKavenegarApi) -> None:
    alert_id = await _dba_alert(gateway)
    [sms] = await _texted(api)
    api.set_status(sms["messageid"], 11)  # phone off: nobody will read it
    await gateway.clock.advance(30)

    async def failed() -> dict[str, Any] | None:
        alert = await gateway.alert(alert_id)
        return alert if alert["pages"][0]["outcome"] == "failed" else None

    alert = await eventually(failed)
    assert "not delivered" in str(alert["pages"][0])


async def test_low_credit_fails_the_page_with_the_reason(gateway: Gateway, api: FakeKavenegarApi) -> None:
    api.credit = 0
    alert_id = await _dba_alert(gateway)

    async def failed() -> dict[str, Any] | None:
        alert = await gateway.alert(alert_id)
        return alert if alert["pages"] and alert["pages"][0]["outcome"] == "failed" else None

    alert = await eventually(failed)
    assert "418" in str(alert) and "not enough credit" in str(alert)
    assert api.messages == []


async def test_kavenegar_carries_the_sms_when_twilio_fails(
        aiohttp_client: Callable[..., Any], tmp_path: Path, api: FakeKavenegarApi) -> None:
    async with FakeTwilioApi() as twilio:
        gateway = await _gateway(aiohttp_client, tmp_path, kavenegar_config(
            api.base_url, twilio_url=twilio.base_url, sms="twilio, kavenegar"))
        twilio.fail_next(401, 20003, times=5, message="Authenticate")
        alert_id = await _dba_alert(gateway)
        [sms] = await _texted(api)
        assert f"Alert #{alert_id}" in sms["message"]
        assert ("POST", MESSAGES) in twilio.requests and twilio.messages == []
        alert = await gateway.alert(alert_id)
        assert "kavenegar" in str(alert["timeline"]) and alert["status"] == "triggered"


async def test_twilio_carries_the_sms_when_kavenegar_refuses(
        aiohttp_client: Callable[..., Any], tmp_path: Path, api: FakeKavenegarApi) -> None:
    async with FakeTwilioApi() as twilio:
        gateway = await _gateway(aiohttp_client, tmp_path, kavenegar_config(
            api.base_url, twilio_url=twilio.base_url, sms="kavenegar, twilio"))
        api.credit = 0
        alert_id = await _dba_alert(gateway)
        await eventually(lambda: _true(len(twilio.messages) == 1))
        assert twilio.messages[0]["To"] == CAROL_IR
        alert = await gateway.alert(alert_id)
        assert "418" in str(alert["timeline"])


async def _true(value: bool) -> bool:
    return value


async def test_without_a_public_url_replies_are_read_from_the_inbox(
        aiohttp_client: Callable[..., Any], tmp_path: Path, api: FakeKavenegarApi) -> None:
    text = kavenegar_config(api.base_url).replace("  inbound_secret_env: GATEWAY_TEST_KAVENEGAR_SECRET\n",
                                                  "  receive_poll_interval: 10s\n")
    gateway = await _gateway(aiohttp_client, tmp_path, text)
    alert_id = await _dba_alert(gateway)
    await _texted(api)
    async with gateway.client.post("/kavenegar/sms/inbound", data={"from": CAROL_LOCAL, "message": "ack"}) as resp:
        assert resp.status == 404  # no secret configured: no inbound URL at all

    api.incoming(from_=CAROL_LOCAL, message="ack")
    await gateway.clock.advance(10)
    alert = await gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "carol"
    _, reply = await _texted(api, 2)
    assert reply["message"].startswith(f"Alert #{alert_id} acknowledged")
    await gateway.clock.advance(10)  # read once: marked read, so the next poll finds nothing
    await eventually(lambda: _true(sum(1 for _, p, _ in api.requests if p.endswith("/sms/receive.json")) >= 2))
    assert len(api.sent_to(CAROL_LOCAL)) == 2
    receive = next(f for _, p, f in api.requests if p.endswith("/sms/receive.json"))
    assert receive == {"linenumber": DEFAULT_LINE, "isread": "0"}



async def test_refused_forwards_are_counted(gateway: Gateway, api: FakeKavenegarApi) -> None:
    for secret in (None, "wrong-secret-0000000000", "wrong-secret-1111111111"):
        status, _ = await api.forward(_inbound(gateway, secret), from_=CAROL_LOCAL, message="ack")
        assert status == 403
    async with gateway.client.get("/metrics", headers=AUTH) as resp:
        text = await resp.text()
    assert 'gateway_webhook_signature_failures_total{provider="kavenegar",reason="missing"} 1.0' in text
    assert 'gateway_webhook_signature_failures_total{provider="kavenegar",reason="mismatch"} 2.0' in text
