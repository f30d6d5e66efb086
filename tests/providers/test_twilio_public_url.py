"""Can Twilio reach server.public_url? Warned at open and by check-config; refused webhooks say what was checked."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gateway.cli import main
from providers.twilio.public_url import public_url_problems
from providers.twilio.webhooks import REFUSAL_LOG_INTERVAL_S, TwilioWebhooks
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.providers.test_twilio_provider import PUBLIC, alert_flow, make_rig, voice
from tests.support import BASE_CONFIG

REACHABLE = ["https://oncall.example.com", "https://example.com/oncall/", "https://52.1.2.3:8443",
             "https://[2a00:1450:4001::1]", "https://oncall.example.com."]


@pytest.mark.parametrize("url", REACHABLE)
def test_a_public_https_url_has_no_problem(url: str) -> None:
    assert public_url_problems(url) == []


@pytest.mark.parametrize(("url", "what"), [
    ("https://127.0.0.1:8080", "a loopback address (127.0.0.1)"),
    ("https://[::1]", "a loopback address (::1)"),
    ("https://localhost", "a local name (localhost)"),
    ("https://10.1.2.3", "a private address (10.1.2.3)"),
    ("https://172.20.0.5", "a private address (172.20.0.5)"),
    ("https://192.168.1.10:8080", "a private address (192.168.1.10)"),
    ("https://100.64.0.1", "a private address (100.64.0.1)"),
    ("https://169.254.10.1", "a link-local address (169.254.10.1)"),
    ("https://[fe80::1]", "a link-local address (fe80::1)"),
    ("https://[fd00::1]", "a private address (fd00::1)"),
    ("https://[::ffff:192.168.1.1]", "a private address (::ffff:192.168.1.1)"),
    ("https://0.0.0.0:8080", "the unspecified address (0.0.0.0)"),
    ("https://gateway.local", "a local name (gateway.local)"),
    ("https://gateway", "a single-label name (gateway)"),
])
def test_an_address_twilio_cannot_reach_is_named(url: str, what: str) -> None:
    [problem] = public_url_problems(url)
    assert problem.startswith(f"server.public_url {url} is {what}")
    assert "Twilio, calling from the internet, cannot reach it" in problem and "set server.public_url" in problem


def test_plain_http_is_a_problem_of_its_own() -> None:
    [problem] = public_url_problems("http://oncall.example.com")
    assert "plain http" in problem and "unencrypted" in problem and "set server.public_url" in problem
    assert len(public_url_problems("http://127.0.0.1:8080")) == 2  # the default: both at once


@pytest.mark.parametrize("url", ["oncall.example.com", "ftp://oncall.example.com", "https://"])
def test_not_a_url_at_all(url: str) -> None:
    [problem] = public_url_problems(url)
    assert "is not an absolute http(s) URL" in problem


# ------------------------------------------------------------------ where it is said


TWILIO = """
twilio:
  account_sid: ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
  auth_token: token
  from_number: "+15559990000"
"""


def test_check_config_warns_but_still_says_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE_CONFIG + TWILIO)  # no server.public_url: http://127.0.0.1:8080
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ok: ")
    warnings = err.splitlines()
    assert len(warnings) == 2 and all(w.startswith(f"warning: {path}: server.public_url ") for w in warnings)
    assert "loopback" in warnings[0] and "plain http" in warnings[1]


def test_check_config_is_quiet_for_a_good_url_or_without_twilio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(BASE_CONFIG + TWILIO + "server: {public_url: 'https://oncall.example.com'}\n")
    assert main(["check-config", str(path)]) == 0
    path.write_text(BASE_CONFIG + "sandbox: {enabled: true}\n")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err == ""


async def test_the_provider_warns_at_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="providers.twilio.provider")
    from providers.twilio import TwilioProvider
    from providers.twilio.settings import TwilioSettings
    from tests.providers.test_twilio_provider import FROM, RecordingEvents

    async with FakeTwilioApi() as api:
        config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, from_number=FROM,
                              api_base_url=api.base_url)
        provider = TwilioProvider(config, public_url="http://192.168.1.10:8080")
        await provider.open(RecordingEvents())
        await provider.close()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("a private address (192.168.1.10)" in m for m in messages)
    assert any("plain http" in m for m in messages)


async def test_a_good_public_url_gets_no_warning_at_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="providers.twilio.provider")
    async with make_rig():
        pass
    assert [r for r in caplog.records if "server.public_url" in r.getMessage()] == []


async def test_a_refused_webhook_logs_the_url_it_was_checked_against(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="providers.twilio.webhooks")
    async with make_rig() as rig:
        leg = await rig.place(alert_flow())
        params = leg.params("in-progress", DEFAULT_ACCOUNT_SID)
        # Signed for another URL, as when a proxy publishes the gateway somewhere public_url does not say.
        status, _ = await rig.twilio.post(voice("page-1", "answer"), params,
                                          signature=rig.twilio.sign("https://elsewhere.example.com/x", params))
        assert status == 403
    [line] = [r.getMessage() for r in caplog.records]
    assert "X-Twilio-Signature does not match" in line
    assert "path received /twilio/voice/page-1/answer" in line
    assert f"checked against {PUBLIC}/twilio/voice/page-1/answer" in line


async def test_a_missing_signature_header_is_named_and_refusals_are_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="providers.twilio.webhooks")
    now = [1000.0]
    async with make_rig() as rig:
        webhooks: TwilioWebhooks = rig.provider._webhooks
        webhooks._monotonic = lambda: now[0]
        leg = await rig.place(alert_flow())
        params = leg.params("in-progress", DEFAULT_ACCOUNT_SID)
        for _ in range(3):
            status, _ = await rig.twilio.post(voice("page-1", "answer"), params, signed=False)
            assert status == 403
        now[0] += REFUSAL_LOG_INTERVAL_S
        status, _ = await rig.twilio.post(voice("page-1", "answer"), params, signed=False)
        assert status == 403
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert all("no X-Twilio-Signature header" in line for line in lines)
    assert lines[1].endswith("; 2 more refused since the last such line")


async def test_a_refusal_log_masks_numbers_in_the_path(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="providers.twilio.webhooks")
    async with make_rig() as rig:
        status, _ = await rig.twilio.post("/twilio/sms/+15550000001/status", {"MessageStatus": "sent"}, signed=False)
        assert status == 403
    assert "+15550000001" not in caplog.text and "+1555***0001" in caplog.text
