"""Kavenegar's REST API (``https://api.kavenegar.com/v1/{API-KEY}/...``) over aiohttp, with our retries and errors.

Every answer is JSON: ``{"return": {"status": 200, "message": "..."}, "entries": ...}``. ``return.status`` is
the result (200: done), and the HTTP status is the same code; the body's code wins when both are there,
since some deployments answer HTTP 200 around an error. Kavenegar's codes, and what they mean here:

- transient (retried with back-off, then failed over): 402 the operation failed, 409 the server cannot
  answer now, 429/451 too many requests, HTTP 5xx, and a connection that could not be opened;
- permanent (retrying will not help; the manager fails over to the next SMS provider): 400 incomplete
  parameters, 401 account disabled, 403 invalid API key, 404/405 unknown method, 406 empty required
  parameter, 407/416 this IP may not use the key, 411 invalid receptor, 412 invalid sender, 413 message empty
  or too long, 414 request too large, 417 bad date, 418 not enough credit, 422 unusable characters,
  426/427 the account lacks the service or line access, 501 a test account may only text its owner, and
  anything else.

A send whose answer was lost (a timeout, a dropped connection after the request went out) may have sent
the SMS: it is never repeated here (:class:`KavenegarError` with ``lost_answer``), and it is transient.
The API key is part of every URL, so no URL is ever logged or put in an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from core.phone import mask_numbers_in
from providers.base import ProviderError
from providers.kavenegar.settings import DEFAULT_API_URL

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_S = 10.0
MAX_STATUS_IDS = 500  # sms/status.json takes at most 500 message ids per request (error 414 beyond)

#: Kavenegar's result codes worth retrying: the request was refused for now, not for what it asked
TRANSIENT_CODES = frozenset({402, 409, 429, 451})
#: what each code says (from Kavenegar's REST documentation), for logs and the alert's timeline
CODES = {
    400: "incomplete parameters",
    401: "account disabled",
    402: "operation failed",
    403: "invalid API key",
    404: "unknown method",
    405: "wrong HTTP method",
    406: "a required parameter is empty",
    407: "access denied (IP not allowed)",
    409: "server cannot answer now, try again later",
    411: "invalid receptor",
    412: "invalid sender",
    413: "message empty or too long",
    414: "request too large",
    415: "start index beyond the number of records",
    416: "the calling IP does not match the account's settings",
    417: "invalid send date",
    418: "not enough credit",
    419: "arrays of different lengths",
    420: "links in messages are restricted for this account",
    422: "unusable characters in the data",
    424: "template not found",
    426: "this method needs the advanced service",
    427: "this line needs special access",
    428: "code cannot be sent by voice call",
    429: "too many requests",
    431: "invalid code structure",
    432: "code parameter not found in the message",
    451: "too many requests from this IP",
    501: "a test account may only text its owner's number",
}

#: sms/status.json ``status`` values
QUEUED, SCHEDULED, SENT_TO_OPERATOR, SENT_TO_OPERATOR_2 = 1, 2, 4, 5
FAILED, DELIVERED, UNDELIVERED, CANCELED, BLOCKED, UNKNOWN_ID = 6, 10, 11, 13, 14, 100
STATUS_TEXT = {
    QUEUED: "queued", SCHEDULED: "scheduled", SENT_TO_OPERATOR: "sent to the operator",
    SENT_TO_OPERATOR_2: "sent to the operator", FAILED: "failed at the line", DELIVERED: "delivered",
    UNDELIVERED: "not delivered (phone off or out of reach)", CANCELED: "canceled (credit refunded)",
    BLOCKED: "blocked by the recipient (credit refunded)", UNKNOWN_ID: "unknown message id",
}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """``attempts`` in total; delays grow ``base_s * 2**n`` up to ``cap_s``, with full jitter."""

    attempts: int = 3
    base_s: float = 0.5
    cap_s: float = 4.0

    def delay(self, failed_attempts: int, jitter: float) -> float:
        return jitter * min(self.cap_s, self.base_s * 2.0 ** (failed_attempts - 1))


class KavenegarError(ProviderError):
    """A refusal (``code``: Kavenegar's ``return.status``, None for network failures) or a lost answer."""

    def __init__(self, message: str, *, permanent: bool, code: int | None = None, lost_answer: bool = False) -> None:
        super().__init__(message, permanent=permanent)
        self.code = code
        self.lost_answer = lost_answer


def is_permanent(code: int) -> bool:
    """Kavenegar's own codes as listed (501 is one: a test account); others from 500 up are server trouble."""
    return code not in TRANSIENT_CODES and (code in CODES or code < 500)


@dataclass(frozen=True, kw_only=True)
class Sent:
    """One entry of send.json's answer."""

    messageid: int
    status: int
    receptor: str


@dataclass(frozen=True, kw_only=True)
class Received:
    """One entry of receive.json: an SMS that came in on a line of the account."""

    messageid: int
    message: str
    sender: str
    receptor: str


@dataclass(frozen=True, kw_only=True)
class Account:
    """``account/info.json``: what is left to spend (rials), and when the account expires (epoch seconds)."""

    remaincredit: int
    expiredate: int
    type: str


class KavenegarRest:
    """SMS through Kavenegar's REST API. Open inside the running loop; close on shutdown."""

    def __init__(
        self,
        *,
        api_key: str,
        api_url: str = DEFAULT_API_URL,
        retry: RetryPolicy = RetryPolicy(),
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        base = urlsplit(api_url)
        if base.scheme not in ("http", "https") or not base.netloc or base.query:
            raise ValueError(f"api_url must be http(s)://host[/prefix], got {api_url!r}")
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key
        self._retry = retry
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._sleep = sleep
        self._jitter = jitter
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"KavenegarRest(api_url={self.api_url!r})"

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, *, receptor: str, sender: str, message: str, localid: str | None = None) -> Sent:
        """``POST sms/send.json``: one SMS; its message id. A lost answer raises at once, never resent.

        ``localid`` (digits) is our own id for the message, which :meth:`by_localid` finds it by.
        """
        data = {"receptor": receptor, "sender": sender, "message": message}
        if localid is not None:
            data["localid"] = localid
        entries = await self._call("sms/send.json", data=data, what=f"send to {mask_numbers_in(receptor)}",
                                   creates=True)
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            raise KavenegarError("Kavenegar send: the answer names no message", permanent=True)
        entry = entries[0]
        try:
            return Sent(messageid=int(entry["messageid"]), status=int(entry.get("status", QUEUED)),
                        receptor=str(entry.get("receptor", receptor)))
        except (KeyError, TypeError, ValueError):
            raise KavenegarError("Kavenegar send: unreadable entry in the answer", permanent=True) from None

    async def statuses(self, messageids: Iterable[int]) -> dict[int, int]:
        """``GET sms/status.json?messageid=a,b,...`` (at most 500): each id's current status code."""
        ids = [str(i) for i in messageids][:MAX_STATUS_IDS]
        entries = await self._call("sms/status.json", params={"messageid": ",".join(ids)}, what="status")
        found: dict[int, int] = {}
        for entry in entries if isinstance(entries, list) else []:
            try:
                found[int(entry["messageid"])] = int(entry["status"])
            except (KeyError, TypeError, ValueError):
                log.warning("kavenegar: an unreadable status entry was skipped")
        return found

    async def by_localid(self, localid: str) -> int | None:
        """``GET sms/statuslocalmessageid.json?localid=``: the message id sent with ``localid``, or None."""
        entries = await self._call("sms/statuslocalmessageid.json", params={"localid": localid},
                                   what="look up by localid")
        for entry in entries if isinstance(entries, list) else []:
            try:
                if str(entry.get("localid")) == localid and int(entry["status"]) != UNKNOWN_ID:
                    return int(entry["messageid"])
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("kavenegar: an unreadable localid entry was skipped")
        return None

    async def received(self, line: str) -> list[Received]:
        """``GET sms/receive.json?linenumber=&isread=0``: SMS received on ``line`` not read yet (now read)."""
        entries = await self._call("sms/receive.json", params={"linenumber": line, "isread": "0"},
                                   what="receive", attempts=1)
        found: list[Received] = []
        for entry in entries if isinstance(entries, list) else []:
            try:
                found.append(Received(messageid=int(entry["messageid"]), message=str(entry["message"]),
                                      sender=str(entry["sender"]), receptor=str(entry.get("receptor", line))))
            except (KeyError, TypeError, ValueError, AttributeError):
                log.warning("kavenegar: an unreadable received message was skipped")
        return found

    async def account(self) -> Account:
        """``GET account/info.json``: checks the API key and the credit, sends nothing. One attempt."""
        entries = await self._call("account/info.json", params={}, what="account check", attempts=1)
        try:
            return Account(remaincredit=int(entries["remaincredit"]), expiredate=int(entries.get("expiredate") or 0),
                           type=str(entries.get("type", "")))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KavenegarError("Kavenegar account check: unreadable answer", permanent=True) from None

    async def _call(self, method: str, *, what: str, data: dict[str, str] | None = None,
                    params: dict[str, str] | None = None, creates: bool = False, attempts: int | None = None) -> Any:
        """One API method, retried while the failure is transient; returns ``entries``."""
        attempts = attempts or self._retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(method, data=data, params=params, what=what)
            except KavenegarError as exc:
                error = exc
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                lost = not isinstance(exc, aiohttp.ClientConnectorError)  # else it never left
                reason = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
                error = KavenegarError(f"Kavenegar {what}: {reason}", permanent=False, lost_answer=lost)
                if creates and lost:
                    log.warning("%s; not sent again (it may have gone out)", error)
                    raise error from None
            if error.permanent or attempt == attempts:
                log.warning("%s%s", error, "" if error.permanent else f" (gave up after {attempt} attempts)")
                raise error
            delay = self._retry.delay(attempt, self._jitter())
            log.info("%s; retry %d/%d in %.2f s", error, attempt, attempts - 1, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def _once(self, method: str, *, what: str, data: dict[str, str] | None,
                    params: dict[str, str] | None) -> Any:
        if self._session is None:
            raise RuntimeError("KavenegarRest is not open: await open() first")
        url = f"{self.api_url}/v1/{quote(self._api_key, safe='')}/{method}"
        verb = "POST" if data is not None else "GET"
        async with self._session.request(verb, url, data=data, params=params,
                                         headers={"Accept": "application/json"}) as resp:
            raw = await resp.read()
            http_status = resp.status
        # Not resp.text(): a proxy's error page in another charset would raise UnicodeDecodeError, no ProviderError,
        # and the manager would not fail over. Kavenegar's own answers are UTF-8 JSON.
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
            code = int(body["return"]["status"])
        except (ValueError, TypeError, KeyError):
            if http_status >= 500 or http_status == 429:
                raise KavenegarError(f"Kavenegar {what}: HTTP {http_status}", permanent=False,
                                     code=http_status) from None
            raise KavenegarError(f"Kavenegar {what}: unreadable answer (HTTP {http_status})", permanent=True,
                                 code=http_status) from None
        if code == 200:
            return body.get("entries")
        meaning = CODES.get(code, "error")
        raise KavenegarError(f"Kavenegar {what}: error {code}, {meaning}", permanent=is_permanent(code), code=code)
