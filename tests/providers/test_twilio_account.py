"""The Twilio credential check: at open (in the background) and periodically, shown on readiness and logged once."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from providers.twilio import TwilioProvider
from providers.twilio.account import CHECKING, AccountCheck, AccountState
from providers.twilio.rest import AccountInfo, TwilioRestError
from providers.twilio.settings import TwilioSettings
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.providers.test_twilio_provider import FROM, PUBLIC, RecordingEvents, make_rig
from tests.support import eventually

ACCOUNT = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json"
AUTH_FAILED = "authentication failed (Twilio error 20003): check twilio.account_sid and the auth token"


async def _true(value: bool) -> bool:
    return value


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "providers.twilio.account" and r.levelno == level]


async def test_a_wrong_token_shows_on_readiness_and_is_logged_once_until_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="providers.twilio.account")
    async with FakeTwilioApi() as api, make_rig(api, auth_token="not-the-token", settled=False,
                                                account_check_interval_s=0.01) as rig:
        readiness = rig.provider.readiness
        await eventually(lambda: _true(readiness() == {"voice:twilio": AUTH_FAILED}))
        await eventually(lambda: _true(api.requests.count(("GET", ACCOUNT)) >= 3))  # probed again and again
        assert _records(caplog, logging.ERROR) == [
            f"twilio account check: {AUTH_FAILED}; calls and SMS will fail until this is fixed"]
        assert "not-the-token" not in caplog.text

        api.auth_token = "not-the-token"  # the operator fixed it: the token is the account's now
        await eventually(lambda: _true(readiness() == {"voice:twilio": "ok"}))
        seen = api.requests.count(("GET", ACCOUNT))
        await eventually(lambda: _true(api.requests.count(("GET", ACCOUNT)) >= seen + 2))
        assert len(_records(caplog, logging.ERROR)) == 1
        assert _records(caplog, logging.INFO) == ["twilio account check: ok (the credentials work)"]


async def test_open_does_not_wait_for_the_check() -> None:
    async with FakeTwilioApi() as api:
        api.hang_next()  # the account check gets no answer
        async with make_rig(api, settled=False, request_timeout_s=30.0) as rig:
            await eventually(lambda: _true(api.hung == 1))
            assert rig.provider.readiness() == {"voice:twilio": CHECKING}


async def test_an_unreachable_api_is_not_an_authentication_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="providers.twilio.account")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = TwilioSettings(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, from_number=FROM,
                          api_base_url=f"http://127.0.0.1:{port}")
    provider = TwilioProvider(config, public_url=PUBLIC)
    await provider.open(RecordingEvents())
    try:
        await eventually(lambda: _true(provider.readiness()["voice:twilio"] != CHECKING))
        status = provider.readiness()["voice:twilio"]
        assert status.startswith("unreachable: ") and "authentication" not in status
        assert _records(caplog, logging.ERROR) == []
        assert len(_records(caplog, logging.WARNING)) == 1
    finally:
        await provider.close()


async def test_a_trial_account_is_ok_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="providers.twilio.account")
    async with FakeTwilioApi(account_type="Trial") as api, make_rig(api, account_check_interval_s=0.01) as rig:
        await eventually(lambda: _true(api.requests.count(("GET", ACCOUNT)) >= 3))
        assert rig.provider.readiness() == {"voice:twilio": "ok"}
    [warning] = _records(caplog, logging.WARNING)
    assert "Trial account" in warning and "verified numbers" in warning and "trial message" in warning


async def test_a_full_account_gets_no_trial_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="providers.twilio.account")
    async with make_rig() as rig:
        assert rig.provider.readiness() == {"voice:twilio": "ok"}
    assert _records(caplog, logging.WARNING) == []


async def test_a_suspended_account_is_not_ready() -> None:
    async with FakeTwilioApi(account_status="suspended") as api, make_rig(api) as rig:
        assert rig.provider.readiness() == {"voice:twilio": "account suspended (Twilio account status)"}


# ------------------------------------------------------------------ the check alone


class Answers:
    """A scripted ``fetch``: each call takes the next answer (an AccountInfo, or an error to raise)."""

    def __init__(self, *answers: AccountInfo | TwilioRestError) -> None:
        self.answers = list(answers)

    async def __call__(self) -> AccountInfo:
        answer = self.answers.pop(0)
        if isinstance(answer, TwilioRestError):
            raise answer
        return answer


GOOD = AccountInfo(sid=DEFAULT_ACCOUNT_SID, status="active", type="Full", friendly_name="ops")


@pytest.mark.parametrize(("error", "state", "status"), [
    (TwilioRestError("Twilio account check: HTTP 404, error 20404: not found", permanent=True, status=404,
                     code=20404),
     AccountState.REFUSED, "account not found (Twilio error 20404): check twilio.account_sid"),
    (TwilioRestError("Twilio account check: no answer within 5 s", permanent=False, lost_answer=True),
     AccountState.UNREACHABLE, "unreachable: no answer within 5 s"),
    (TwilioRestError("Twilio account check: HTTP 503, error 20503: Service Unavailable", permanent=False,
                     status=503, code=20503),
     AccountState.UNREACHABLE, "unreachable: HTTP 503, error 20503: Service Unavailable"),
])
async def test_what_each_failure_is_called(error: TwilioRestError, state: AccountState, status: str) -> None:
    check = AccountCheck(Answers(error, GOOD))
    assert await check.check() == status and check.state == state
    assert await check.check() == "ok" and check.state == AccountState.OK


async def test_the_interval_is_what_the_check_sleeps_between_probes() -> None:
    slept: list[float] = []
    gate = asyncio.Event()

    async def sleep(delay: float) -> None:
        slept.append(delay)
        if len(slept) == 2:
            await gate.wait()  # hold the loop here

    check = AccountCheck(Answers(GOOD, GOOD), interval_s=123.0, sleep=sleep)
    check.start()
    await eventually(lambda: _true(len(slept) == 2))
    assert slept == [123.0, 123.0] and check.checks == 2
    await check.stop()


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AccountCheck(Answers(), interval_s=0)
