"""Are the Twilio credentials good? Checked at start and every few minutes, for /readyz and the log.

``GET /2010-04-01/Accounts/{AccountSid}.json`` places nothing and costs
nothing: Twilio answers 401 (error 20003) for a wrong auth token and 404
(error 20404) for an unknown account, and the account resource otherwise
(its ``status``: active, suspended or closed; its ``type``: Trial or Full).

The check runs in the background, so a slow or unreachable API never holds up
the gateway's start. The log gets one line per change of state (ERROR for a
refusal, WARNING when the API cannot be reached, INFO on recovery), not one per
probe. A trial account is warned about once: Twilio lets it call and text only
verified numbers, and plays a trial announcement before every call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import StrEnum

from providers.twilio.rest import AccountInfo, TwilioRestError

log = logging.getLogger(__name__)

DEFAULT_CHECK_INTERVAL_S = 300.0
CHECKING = "checking the Twilio credentials"


class AccountState(StrEnum):
    CHECKING = "checking"
    OK = "ok"
    REFUSED = "refused"  # wrong credentials, unknown, suspended or closed account
    UNREACHABLE = "unreachable"


class AccountCheck:
    """Runs ``fetch`` now and every ``interval_s``; ``status`` is what /readyz shows."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[AccountInfo]],
        *,
        interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._fetch = fetch
        self.interval_s = interval_s
        self._sleep = sleep
        self.state = AccountState.CHECKING
        self.status = CHECKING
        self.checks = 0  # completed checks, whatever their result
        self._trial_warned = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="twilio account check")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def check(self) -> str:
        """One check; returns (and keeps) the new status."""
        try:
            account = await self._fetch()
        except TwilioRestError as exc:
            state, status = _failure(exc)
        except Exception as exc:  # never let a surprise kill the periodic check
            log.exception("twilio account check failed unexpectedly")
            state, status = AccountState.UNREACHABLE, f"unreachable: {type(exc).__name__}"
        else:
            state, status = _verdict(account)
            if state == AccountState.OK:
                self._warn_if_trial(account)
        self.checks += 1
        self._set(state, status)
        return status

    async def _run(self) -> None:
        while True:
            await self.check()
            await self._sleep(self.interval_s)

    def _set(self, state: AccountState, status: str) -> None:
        changed = state != self.state
        self.state, self.status = state, status
        if not changed:
            return
        if state == AccountState.OK:
            log.info("twilio account check: ok (the credentials work)")
        elif state == AccountState.REFUSED:
            log.error("twilio account check: %s; calls and SMS will fail until this is fixed", status)
        else:
            log.warning("twilio account check: %s", status)

    def _warn_if_trial(self, account: AccountInfo) -> None:
        if account.type.lower() == "trial" and not self._trial_warned:
            self._trial_warned = True
            log.warning("twilio account %s is a Trial account: it can only call and text verified numbers "
                        "(Console: Phone Numbers > Verified Caller IDs), and every call first plays Twilio's "
                        "trial message and waits for a key press; upgrade the account for production",
                        account.sid)


def _verdict(account: AccountInfo) -> tuple[AccountState, str]:
    if account.status and account.status != "active":
        return AccountState.REFUSED, f"account {account.status} (Twilio account status)"
    return AccountState.OK, "ok"


def _failure(exc: TwilioRestError) -> tuple[AccountState, str]:
    code = f" (Twilio error {exc.code})" if exc.code is not None else ""
    if exc.status == 401:
        return AccountState.REFUSED, f"authentication failed{code}: check twilio.account_sid and the auth token"
    if exc.status == 404:
        return AccountState.REFUSED, f"account not found{code}: check twilio.account_sid"
    if exc.status is not None and exc.permanent:
        return AccountState.REFUSED, f"refused: HTTP {exc.status}{code}"
    return AccountState.UNREACHABLE, f"unreachable: {_reason(exc)}"


def _reason(exc: TwilioRestError) -> str:
    """``Twilio account check: no answer within 5 s`` -> ``no answer within 5 s``."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith("Twilio ") and ": " in text else text
