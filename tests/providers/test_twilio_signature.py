"""Webhook signatures: the driver signs like Twilio; check_signature accepts only that."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from providers.twilio.signature import SIGNATURE_HEADER, check_signature, public_request_url
from tests.peers.twilio_driver import CallLeg, TwilioDriver, twilio_signature

TOKEN = "12345678901234567890123456789012"
PUBLIC = "https://oncall.example.com"
LEG = CallLeg(from_="+15557770002", to="+15550000001", sid="CA" + "1" * 32)
PARAMS = LEG.params("in-progress", "AC" + "0" * 32) | {"Digits": "1"}


@pytest.mark.parametrize(
    ("url", "params"),
    [
        (f"{PUBLIC}/twilio/gather?call=page-1", PARAMS),
        (f"{PUBLIC}/twilio/sms", {"Body": "ACK 42 — ok ✓", "From": "+15550000001"}),
        (f"{PUBLIC}/twilio/status", {}),
        ("https://mycompany.com/myapp.php?foo=1&bar=2", {"CallSid": "CA1", "Caller": "+1415"}),
    ],
)
def test_driver_signature_matches_the_sdk(url: str, params: dict[str, str]) -> None:
    assert twilio_signature(TOKEN, url, params) == RequestValidator(TOKEN).compute_signature(
        url, params
    )


def test_repeated_keys_sign_like_the_sdk() -> None:
    params = MultiDict([("StatusCallbackEvent", "ringing"), ("StatusCallbackEvent", "answered")])

    expected = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}/x", params)
    assert twilio_signature(TOKEN, f"{PUBLIC}/x", list(params.items())) == expected
    assert check_signature(
        auth_token=TOKEN, public_url=f"{PUBLIC}/x", params=params, signature=expected
    )


def test_check_signature_accepts_the_signed_request() -> None:
    url = f"{PUBLIC}/twilio/gather?call=page-1"
    signature = twilio_signature(TOKEN, url, PARAMS)

    assert check_signature(auth_token=TOKEN, public_url=url, params=PARAMS, signature=signature)


@pytest.mark.parametrize(
    ("url", "params", "token"),
    [
        (f"{PUBLIC}/twilio/gather?call=page-1", PARAMS | {"Digits": "2"}, TOKEN),
        (f"{PUBLIC}/twilio/gather?call=page-2", PARAMS, TOKEN),
        ("http://127.0.0.1:8080/twilio/gather?call=page-1", PARAMS, TOKEN),
        (f"{PUBLIC}/twilio/gather?call=page-1", PARAMS, "another-token"),
        (f"{PUBLIC}/twilio/gather?call=page-1", PARAMS | {"Extra": "x"}, TOKEN),
    ],
    ids=["tampered-param", "other-query", "internal-url", "wrong-token", "added-param"],
)
def test_check_signature_refuses_anything_else(
    url: str, params: dict[str, str], token: str
) -> None:
    signature = twilio_signature(TOKEN, f"{PUBLIC}/twilio/gather?call=page-1", PARAMS)

    assert not check_signature(auth_token=token, public_url=url, params=params, signature=signature)


@pytest.mark.parametrize("signature", [None, "", "not base64 at all", "AAAA"])
def test_missing_or_garbled_signatures_are_false_not_errors(signature: str | None) -> None:
    result = check_signature(
        auth_token=TOKEN, public_url=f"{PUBLIC}/x", params=PARAMS, signature=signature
    )

    assert result is False


def test_a_malformed_url_is_false_not_an_error() -> None:
    assert not check_signature(
        auth_token=TOKEN, public_url="http://[::1", params={}, signature="abc="
    )


@pytest.mark.parametrize(
    ("base", "path_qs", "expected"),
    [
        (PUBLIC, "/twilio/voice?call=1", f"{PUBLIC}/twilio/voice?call=1"),
        (PUBLIC + "/", "/twilio/voice", f"{PUBLIC}/twilio/voice"),
        (
            "https://example.com/oncall/",
            "/twilio/voice?a=1&b=2",
            "https://example.com/oncall/twilio/voice?a=1&b=2",
        ),
    ],
)
def test_public_request_url(base: str, path_qs: str, expected: str) -> None:
    assert public_request_url(base, path_qs) == expected


# ------------------------------------------------------ over HTTP, behind a "proxy"


async def guarded(request: web.Request) -> web.Response:
    """What a webhook handler does: rebuild the public URL, check, then act."""
    form = await request.post()
    params = {key: str(value) for key, value in form.items()}
    ok = check_signature(
        auth_token=TOKEN,
        public_url=public_request_url(PUBLIC, request.path_qs),
        params=params,
        signature=request.headers.get(SIGNATURE_HEADER),
    )
    return web.Response(status=200 if ok else 403, text="ok" if ok else "forbidden")


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/twilio/{hook}", guarded)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/"))
    await server.close()


@pytest.fixture
async def twilio(base_url: str) -> AsyncIterator[TwilioDriver]:
    async with TwilioDriver(base_url=base_url, auth_token=TOKEN, public_base_url=PUBLIC) as driver:
        yield driver


async def test_a_driver_signed_webhook_is_accepted(twilio: TwilioDriver) -> None:
    assert await twilio.post("/twilio/gather?call=page-1", PARAMS) == (200, "ok")
    assert (await twilio.status_callback("/twilio/status", LEG, "busy"))[0] == 200
    sms = await twilio.inbound_sms("/twilio/sms", from_=LEG.to, to=LEG.from_, body="ACK")
    assert sms[0] == 200


async def test_a_tampered_webhook_is_refused(twilio: TwilioDriver) -> None:
    signature = twilio.sign(f"{PUBLIC}/twilio/gather?call=page-1", PARAMS)

    status, _ = await twilio.post(
        "/twilio/gather?call=page-1", PARAMS | {"Digits": "9"}, signature=signature
    )

    assert status == 403


async def test_a_webhook_signed_for_another_url_is_refused(base_url: str) -> None:
    async with TwilioDriver(
        base_url=base_url, auth_token=TOKEN, public_base_url="https://elsewhere.example.com"
    ) as other:
        status, _ = await other.post("/twilio/gather", PARAMS)

    assert status == 403


async def test_an_unsigned_webhook_is_refused(twilio: TwilioDriver) -> None:
    status, _ = await twilio.post("/twilio/gather", PARAMS, signed=False)

    assert status == 403
