"""Twilio's REST API (calls, SMS) over the official SDK, with our retries and errors.

The SDK's async client is used as is, except for the transport: every request
goes to ``api_base_url`` (Twilio, a Twilio-compatible provider such as
SignalWire's ``https://<space>.signalwire.com/api/laml``, or the local test
API) whatever host the SDK aimed at, so no domain of the SDK can slip past it.

Every request is bounded (``request_timeout_s``, 5 s by default): a Twilio
that accepts the connection and never answers costs seconds, not minutes.
Transient failures (HTTP 429, 5xx, a connection that could not be opened) are
retried with exponential back-off and full jitter; anything else the API
refuses is a permanent :class:`TwilioRestError`.

Twilio has no idempotency key, so a *create* whose answer was lost (a timeout
or a connection dropped after the request was sent) is never sent again here:
it raises a :class:`TwilioRestError` with ``lost_answer=True``, and the caller
looks the call or message up (:meth:`TwilioRest.recent_calls`,
:meth:`TwilioRest.recent_messages`) before deciding to create it again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from core.phone import mask as mask_number  # the kernel's masking, under the name this package has used
from core.phone import mask_numbers_in
from providers.base import ProviderError

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://api.twilio.com"
# What the gateway acts on: the call picked up (hang-ups then end it as answered) and its final status.
# initiated and ringing would each cost a signed webhook per call and change nothing.
DEFAULT_STATUS_CALLBACK_EVENTS = ("answered", "completed")
DEFAULT_REQUEST_TIMEOUT_S = 5.0
LOOKUP_PAGE_SIZE = 50  # the newest calls (messages) to one number that a lookup reads

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """``attempts`` in total (not retries); delays grow ``base_s * 2**n`` up to ``cap_s``."""

    attempts: int = 4
    base_s: float = 0.5
    cap_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("delays must not be negative")

    def delay(self, failed_attempts: int, jitter: float) -> float:
        """Full jitter: a uniform share (``jitter`` in [0, 1)) of the capped exponential delay."""
        return jitter * min(self.cap_s, self.base_s * 2.0 ** (failed_attempts - 1))


class TwilioRestError(ProviderError):
    """A refusal from the API; ``status`` and ``code`` are None for network failures.

    ``lost_answer``: the request was sent (or may have been) and its answer never came, so
    whether it took effect is unknown (always transient).
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        code: int | None = None,
        lost_answer: bool = False,
    ) -> None:
        super().__init__(message, permanent=permanent)
        self.status = status
        self.code = code
        self.lost_answer = lost_answer


@dataclass(frozen=True, kw_only=True)
class AccountInfo:
    """What ``GET /Accounts/{sid}.json`` says of the account (never its auth token)."""

    sid: str
    status: str  # active | suspended | closed
    type: str  # Trial | Full
    friendly_name: str


@dataclass(frozen=True, kw_only=True)
class Placed:
    """A call or message found in the account's log: its sid and when Twilio created it."""

    sid: str
    created: datetime | None
    body: str | None = None  # messages only


class _RebasedHttpClient(AsyncTwilioHttpClient):  # type: ignore[misc]  # the SDK ships no types
    """The SDK's aiohttp client, sending every request under one base URL.

    ``request`` is rewritten rather than delegated: aiohttp 3.14 deprecates the
    ``auth=`` argument the SDK passes, and wants a ``ClientTimeout``, not a float.
    """

    def __init__(self, *, base_url: str, timeout_s: float) -> None:
        base = _check_base_url(base_url)
        super().__init__(timeout=timeout_s)
        self._scheme = base.scheme
        self._netloc = base.netloc
        self._prefix = base.path.rstrip("/")

    def rebase(self, url: str) -> str:
        parts = urlsplit(url)
        return urlunsplit((self._scheme, self._netloc, self._prefix + parts.path, parts.query, ""))

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        assert self.session is not None  # pool_connections is always on here
        all_headers = dict(headers or {})
        if auth is not None:
            all_headers["Authorization"] = _basic_auth(*auth)
        target = self.rebase(url)
        log.debug("twilio api %s %s", method.upper(), urlsplit(target).path)
        async with self.session.request(
            method.upper(),
            target,
            params=params,
            data=data,
            headers=all_headers,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            allow_redirects=allow_redirects,
        ) as resp:
            text = await resp.text()
            return Response(resp.status, text, resp.headers)


class TwilioRest:
    """Calls and SMS through Twilio's REST API. Open inside the running loop; close on shutdown."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_base_url: str = DEFAULT_API_BASE_URL,
        retry: RetryPolicy = RetryPolicy(),
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        _check_base_url(api_base_url)
        self.account_sid = account_sid
        self.api_base_url = api_base_url
        self._auth_token = auth_token
        self._retry = retry
        self._request_timeout_s = request_timeout_s
        self._sleep = sleep
        self._jitter = jitter
        self._http: _RebasedHttpClient | None = None
        self._client: Client | None = None

    def __repr__(self) -> str:
        return f"TwilioRest(account_sid={self.account_sid!r}, api_base_url={self.api_base_url!r})"

    async def open(self) -> None:
        if self._client is not None:
            return
        self._http = _RebasedHttpClient(
            base_url=self.api_base_url, timeout_s=self._request_timeout_s
        )
        self._client = Client(self.account_sid, self._auth_token, http_client=self._http)

    async def close(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> TwilioRest:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("TwilioRest is not open: await open() first")
        return self._client

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        timeout_s: int,
        machine_detection: bool = True,
        amd_status_callback: str | None = None,
        status_callback_events: Sequence[str] = DEFAULT_STATUS_CALLBACK_EVENTS,
    ) -> str:
        """Start a call whose TwiML is fetched (POST) from ``url``; returns the CallSid.

        ``machine_detection`` alone is Twilio's synchronous AMD: the callee hears silence until the
        verdict (about 2.5 s), which then comes as ``AnsweredBy`` with the first TwiML request. With
        ``amd_status_callback`` it is asynchronous (``AsyncAmd=true``): the TwiML runs at once and the
        verdict is POSTed to that URL when known.

        Raises :class:`TwilioRestError` with ``lost_answer=True``, at once and without retrying,
        when the request may have reached Twilio but its answer was lost.
        """
        kwargs: dict[str, Any] = {
            "to": to,
            "from_": from_,
            "url": url,
            "method": "POST",
            "status_callback": status_callback,
            "status_callback_method": "POST",
            "status_callback_event": list(status_callback_events),
            "timeout": timeout_s,
        }
        if machine_detection:
            kwargs["machine_detection"] = "Enable"
            if amd_status_callback is not None:
                kwargs["async_amd"] = "true"
                kwargs["async_amd_status_callback"] = amd_status_callback
                kwargs["async_amd_status_callback_method"] = "POST"
        call = await self._retrying(
            f"create call to {mask_number(to)}",
            lambda: self.client.calls.create_async(**kwargs),
            creates=True,
        )
        log.info("twilio call %s created to %s", call.sid, mask_number(to))
        return str(call.sid)

    async def cancel_call(self, sid: str, *, answered: bool = False) -> None:
        """Hang up a call: ``canceled`` while queued or ringing, ``completed`` once answered.

        When ``answered`` is stale (the call was picked up a moment ago), Twilio
        ignores ``canceled`` and reports the call still in progress: it is then
        completed too. A call that no longer exists is already over: no error.
        """
        status = "completed" if answered else "canceled"
        call = await self._update(sid, status=status)
        if call is not None and status == "canceled" and call.status == "in-progress":
            await self._update(sid, status="completed")

    async def redirect_call(self, sid: str, *, url: str) -> None:
        """Make a live call fetch new TwiML (POST) from ``url``, interrupting what it plays."""
        await self._retrying(
            f"redirect call {sid}",
            lambda: self.client.calls(sid).update_async(url=url, method="POST"),
        )

    async def send_sms(self, *, to: str, from_: str, body: str, status_callback: str) -> str:
        """Send one SMS; returns the MessageSid. A lost answer raises as for :meth:`create_call`."""
        message = await self._retrying(
            f"send sms to {mask_number(to)}",
            lambda: self.client.messages.create_async(
                to=to, from_=from_, body=body, status_callback=status_callback
            ),
            creates=True,
        )
        log.info("twilio sms %s sent to %s", message.sid, mask_number(to))
        return str(message.sid)

    async def fetch_account(self) -> AccountInfo:
        """``GET /2010-04-01/Accounts/{sid}.json``: checks the credentials without placing anything.

        One attempt: the caller (a periodic check) tries again later.
        """
        account = await self._retrying(
            "account check",
            lambda: self.client.api.v2010.accounts(self.account_sid).fetch_async(),
            attempts=1,
        )
        return AccountInfo(
            sid=str(account.sid or ""),
            status=str(account.status or ""),
            type=str(account.type or ""),
            friendly_name=str(account.friendly_name or ""),
        )

    async def recent_calls(self, *, to: str, from_: str) -> list[Placed]:
        """The newest calls from ``from_`` to ``to`` in the account's log (``GET Calls.json?To=&From=``).

        Not filtered by ``StartTime``: a call still queued has none, and that filter only takes dates.
        """
        page = await self._retrying(
            f"look up calls to {mask_number(to)}",
            lambda: self.client.calls.page_async(to=to, from_=from_, page_size=LOOKUP_PAGE_SIZE),
        )
        return [Placed(sid=str(call.sid), created=call.date_created) for call in page]

    async def recent_messages(self, *, to: str, from_: str) -> list[Placed]:
        """The newest messages from ``from_`` to ``to`` (``GET Messages.json?To=&From=``).

        Not filtered by ``DateSent``: a message still queued has not been sent.
        """
        page = await self._retrying(
            f"look up messages to {mask_number(to)}",
            lambda: self.client.messages.page_async(to=to, from_=from_, page_size=LOOKUP_PAGE_SIZE),
        )
        return [Placed(sid=str(m.sid), created=m.date_created, body=m.body) for m in page]

    async def _update(self, sid: str, *, status: str) -> Any:
        try:
            return await self._retrying(
                f"set call {sid} {status}",
                lambda: self.client.calls(sid).update_async(status=status),
            )
        except TwilioRestError as exc:
            # 20404: no such call; 21220: the call is no longer in progress.
            if exc.status == 404 or exc.code in (20404, 21220):
                log.info("twilio call %s already over (%s)", sid, exc.code)
                return None
            raise

    async def _retrying(
        self,
        what: str,
        op: Callable[[], Awaitable[T]],
        *,
        creates: bool = False,
        attempts: int | None = None,
    ) -> T:
        """Run ``op`` with a bounded time per attempt, retrying what is transient.

        ``creates``: ``op`` creates something (a call, a message), so a lost answer is raised at once
        rather than sent again.
        """
        attempts = attempts or self._retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                async with asyncio.timeout(self._request_timeout_s):
                    return await op()
            except (TwilioRestException, TwilioServiceException) as exc:
                error = _api_error(what, exc)
            except TwilioException as exc:  # a list page the API refused: ("Unable to fetch page", response)
                error = _page_error(what, exc)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                lost = not isinstance(exc, aiohttp.ClientConnectorError)  # else it was never sent
                reason = f"{type(exc).__name__}: {mask_numbers_in(str(exc))}".rstrip(": ")
                if isinstance(exc, TimeoutError):
                    reason = f"no answer within {self._request_timeout_s:g} s"
                error = TwilioRestError(
                    f"Twilio {what}: {reason}", permanent=False, lost_answer=lost
                )
                if creates and lost:
                    log.warning("%s; not sent again before looking it up", error)
                    raise error from None
            except ValueError as exc:
                # An unreadable 2xx body: the request may have worked, so never repeat it.
                error = TwilioRestError(
                    f"Twilio {what}: unreadable answer: {mask_numbers_in(str(exc))}",
                    permanent=True,
                )
            if error.permanent:
                log.warning("%s", error)
                raise error
            if attempt == attempts:
                log.warning("%s (gave up after %d attempts)", error, attempts)
                raise error
            delay = self._retry.delay(attempt, self._jitter())
            log.info("%s; retry %d/%d in %.2fs", error, attempt, attempts - 1, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")


def _check_base_url(base_url: str) -> SplitResult:
    base = urlsplit(base_url)
    if base.scheme not in ("http", "https") or not base.netloc or base.query:
        raise ValueError(f"api base URL must be http(s)://host[/prefix], got {base_url!r}")
    return base


def _basic_auth(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


def _page_error(what: str, exc: TwilioException) -> TwilioRestError:
    response = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], Response) else None
    if response is None:
        return TwilioRestError(f"Twilio {what}: {mask_numbers_in(str(exc))}", permanent=True)
    status = int(response.status_code)
    code: int | None = None
    text = str(response.text)[:200]
    try:
        body = json.loads(response.text)
        code = int(body["code"]) if body.get("code") is not None else None
        text = str(body.get("message", text))
    except (ValueError, TypeError, AttributeError, KeyError):
        pass
    return TwilioRestError(
        f"Twilio {what}: HTTP {status}, error {code}: {mask_numbers_in(text)}",
        permanent=not (status == 429 or status >= 500),
        status=status,
        code=code,
    )


def _api_error(what: str, exc: TwilioRestException | TwilioServiceException) -> TwilioRestError:
    status = int(exc.status)
    code = exc.code
    text = (exc.detail or exc.title) if isinstance(exc, TwilioServiceException) else exc.msg
    transient = status == 429 or status >= 500
    return TwilioRestError(
        f"Twilio {what}: HTTP {status}, error {code}: {mask_numbers_in(str(text))}",
        permanent=not transient,
        status=status,
        code=int(code) if code is not None else None,
    )
