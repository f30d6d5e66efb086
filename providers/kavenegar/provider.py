"""Kavenegar as an SMS provider: send over its REST API, delivery by polling, replies by its forward URL.

- **Send**: ``sms/send.json`` with ``receptor`` (see :mod:`providers.kavenegar.numbers`), the configured
  ``sender`` line, the text and a ``localid``. Errors are transient or permanent as
  :mod:`providers.kavenegar.rest` says; the provider manager fails over on either. A send whose answer was
  lost is looked up by its localid (``sms/statuslocalmessageid.json``) before it counts as not sent.
- **Delivery**: every message not final yet is asked about with ``sms/status.json`` every
  ``status_poll_interval_s`` on the injected clock (500 ids per request): 4/5 (sent to the operator) is
  reported as SENT, 10 as DELIVERED, 6/11/13/14 as FAILED (the manager then fails over or the page fails).
  A message still not final after :data:`TRACK_FOR_S` is no longer asked about.
- **Replies**: Kavenegar forwards each SMS received on the line to the URL set in its panel, with ``from``,
  ``to``, ``message`` and ``messageid`` (a form POST, or a GET with the same query parameters). Kavenegar
  signs nothing, so that URL carries a secret (``/kavenegar/sms/inbound?secret=...``), compared in constant
  time before anything else is read; a wrong or missing one is 403. The gateway's answer to the text (the
  SMS reply grammar's "Alert #3 acknowledged", or help) is sent back to the engineer with ``send.json``.
  Without a public URL, ``receive_poll_interval_s`` reads them with ``sms/receive.json`` instead (each is
  marked read as it is read, so of several gateways polling one line, one takes each message).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from core.clock import Clock
from core.phone import mask
from providers.base import (
    Capabilities,
    InboundSms,
    ProviderError,
    ProviderEvents,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
)
from providers.kavenegar import rest
from providers.kavenegar.numbers import from_kavenegar, to_receptor
from providers.kavenegar.rest import KavenegarError, KavenegarRest, RetryPolicy
from providers.kavenegar.settings import KavenegarSettings

log = logging.getLogger(__name__)

INBOUND_PATH = "/kavenegar/sms/inbound"
ACCOUNT_CHECK_INTERVAL_S = 300.0  # the API key and the credit are checked at open and this often
CHECKING = "checking the Kavenegar API key"
TRACK_FOR_S = 6 * 3600.0  # a message not final after this long is no longer polled
_MEMORY = 1000  # inbound message ids remembered, so a forward repeated by Kavenegar acts once
_SENT = frozenset({rest.SENT_TO_OPERATOR, rest.SENT_TO_OPERATOR_2})
_FAILED = frozenset({rest.FAILED, rest.UNDELIVERED, rest.CANCELED, rest.BLOCKED})


@dataclass(kw_only=True)
class _Tracked:
    sms_id: str
    sent_at: float
    reported: SmsStatus | None = None  # the last status reported


class KavenegarProvider:
    """SMS out and replies in through Kavenegar; implements SmsProvider (no voice)."""

    name = "kavenegar"

    def __init__(
        self,
        config: KavenegarSettings,
        *,
        clock: Clock,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_timeout_s: float = rest.DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self.config = config
        two_way = config.inbound_secret is not None or config.receive_poll_interval_s is not None
        self.capabilities = Capabilities(voice=False, sms=True, inbound_sms=two_way, max_concurrent_calls=0)
        self.events: ProviderEvents | None = None
        self._clock = clock
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._request_timeout_s = request_timeout_s
        self._rest: KavenegarRest | None = None
        self._tracked: dict[int, _Tracked] = {}  # Kavenegar message id -> our SMS
        self._seen_inbound: dict[str, None] = {}
        self._unhandled: list[rest.Received] = []  # read from sms/receive.json, not handled yet
        self._poller: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._receiver: asyncio.Task[None] | None = None
        self.account_status = CHECKING  # what /readyz shows: "ok", or what is wrong
        self._on_refused: Callable[[str], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"KavenegarProvider(sender={self.config.sender!r}, api_url={self.config.api_url!r})"

    # ------------------------------------------------------------ lifecycle

    def routes(self) -> list[web.RouteDef]:
        """The inbound URL, when a secret is configured (without one, replies cannot be trusted: none)."""
        if self.config.inbound_secret is None:
            return []
        return [web.post(INBOUND_PATH, self.on_inbound), web.get(INBOUND_PATH, self.on_inbound)]

    def on_signature_refused(self, count: Callable[[str], None]) -> None:
        """``count(reason)`` for each inbound forward refused for its secret ("missing" or "mismatch"): a metric."""
        self._on_refused = count

    async def open(self, events: ProviderEvents) -> None:
        if self._rest is None:
            client = KavenegarRest(api_key=self.config.api_key, api_url=self.config.api_url, retry=self._retry,
                                   request_timeout_s=self._request_timeout_s, sleep=self._sleep)
            await client.open()
            self._rest = client
            self._poller = asyncio.ensure_future(self._poll_forever())
            self._checker = asyncio.ensure_future(self._check_forever())
            if self.config.receive_poll_interval_s is not None:
                self._receiver = asyncio.ensure_future(self._receive_forever(self.config.receive_poll_interval_s))
        self.events = events

    async def close(self) -> None:
        tasks = [*self._tasks, *(task for task in (self._poller, self._checker, self._receiver) if task is not None)]
        self._poller = self._checker = self._receiver = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client, self._rest = self._rest, None
        if client is not None:
            await client.close()

    def readiness(self) -> dict[str, str]:
        """``ok`` once the API key was checked and works with credit left; else what is wrong."""
        if self._rest is None or self.events is None:
            return {"sms:kavenegar": "not open"}
        return {"sms:kavenegar": self.account_status}

    async def check_account(self) -> None:
        """Ask ``account/info.json``; log once per change of what /readyz shows."""
        try:
            account = await self._open_rest().account()
        except KavenegarError as exc:
            status = (f"unreachable: {exc}" if exc.code is None or not exc.permanent
                      else f"refused: error {exc.code}, {rest.CODES.get(exc.code, 'error')}")
        else:
            status = "ok" if account.remaincredit > 0 else f"out of credit (remaincredit {account.remaincredit})"
        if status != self.account_status:
            level = (logging.INFO if status == "ok" else logging.WARNING if status.startswith("unreachable")
                     else logging.ERROR)
            log.log(level, "kavenegar account: %s", status)
        self.account_status = status

    async def _check_forever(self) -> None:
        while True:
            try:
                await self.check_account()
            except Exception:
                log.exception("kavenegar: the account check failed")
            await self._clock.sleep_until(self._clock.now() + ACCOUNT_CHECK_INTERVAL_S)

    # --------------------------------------------------------- provider API

    async def send_sms(self, request: SmsRequest) -> None:
        """Send it; the message id is polled for its delivery. Raises ProviderError (KavenegarError).

        Every send carries a ``localid`` made from the SMS id. When its answer is lost (it may have gone out),
        the message is looked up by that localid before anything else: found, it is this SMS; not found, the
        error is transient and whoever retries (the next provider) may send it.
        """
        client = self._open_rest()
        localid = local_id(request.sms_id)
        try:
            sent = await client.send(receptor=to_receptor(request.to), sender=request.sender or self.config.sender,
                                     message=request.body, localid=localid)
            messageid = sent.messageid
        except KavenegarError as exc:
            if not exc.lost_answer:
                raise
            try:
                found = await client.by_localid(localid)
            except ProviderError as lookup:
                raise ProviderError(f"Kavenegar SMS {request.sms_id}: the answer was lost ({exc}) and the lookup "
                                    f"failed ({lookup})", permanent=False) from None
            if found is None:
                raise ProviderError(f"Kavenegar SMS {request.sms_id}: the answer was lost ({exc}) and Kavenegar has "
                                    "no message with its localid: not sent", permanent=False) from None
            log.info("kavenegar SMS %s: the send whose answer was lost did go out as message %d", request.sms_id,
                     found)
            messageid = found
        self._tracked[messageid] = _Tracked(sms_id=request.sms_id, sent_at=self._clock.now())
        log.info("kavenegar SMS %s to %s sent as message %d", request.sms_id, mask(request.to), messageid)

    def _open_rest(self) -> KavenegarRest:
        if self._rest is None:
            raise ProviderError("Kavenegar is not open", permanent=False)
        return self._rest

    # ------------------------------------------------------ delivery status

    async def poll_once(self) -> None:
        """Ask about every message not final yet, and report what changed."""
        now = self._clock.now()
        for messageid, tracked in list(self._tracked.items()):
            if now - tracked.sent_at > TRACK_FOR_S:
                log.info("kavenegar SMS %s: no final status after %.0f h; no longer asked", tracked.sms_id,
                         TRACK_FOR_S / 3600)
                del self._tracked[messageid]
        ids = list(self._tracked)
        for start in range(0, len(ids), rest.MAX_STATUS_IDS):
            found = await self._open_rest().statuses(ids[start:start + rest.MAX_STATUS_IDS])
            for messageid, code in found.items():
                await self._status(messageid, code)

    async def _status(self, messageid: int, code: int) -> None:
        tracked = self._tracked.get(messageid)
        if tracked is None:
            return
        if code == rest.UNKNOWN_ID:  # Kavenegar does not know an id it gave us: say nothing rather than guess
            log.warning("kavenegar SMS %s: Kavenegar does not know message %d; no longer asked", tracked.sms_id,
                        messageid)
            del self._tracked[messageid]
            return
        if code == rest.DELIVERED:
            status = SmsStatus.DELIVERED
        elif code in _FAILED:
            status = SmsStatus.FAILED
        elif code in _SENT:
            status = SmsStatus.SENT
        else:
            return  # queued, scheduled: nothing to say yet
        if status == tracked.reported:
            return  # 4 then 5: both are "sent to the operator"
        tracked.reported = status
        if status != SmsStatus.SENT:
            del self._tracked[messageid]
        detail = "" if status == SmsStatus.DELIVERED else f"Kavenegar status {code}: {rest.STATUS_TEXT.get(code, '?')}"
        log.info("kavenegar SMS %s %s%s", tracked.sms_id, status.value, f" ({detail})" if detail else "")
        if self.events is not None:
            try:
                await self.events.sms_status(SmsStatusChanged(sms_id=tracked.sms_id, status=status, detail=detail))
            except Exception:
                log.exception("kavenegar SMS %s: reporting %s failed", tracked.sms_id, status.value)

    async def _poll_forever(self) -> None:
        interval = self.config.status_poll_interval_s
        while True:
            await self._clock.sleep_until(self._clock.now() + interval)
            if not self._tracked:
                continue
            try:
                await self.poll_once()
            except ProviderError as exc:
                log.warning("kavenegar: could not ask for delivery statuses: %s", exc)
            except Exception:
                log.exception("kavenegar: polling delivery statuses failed")

    # ------------------------------------------------------------- inbound

    async def on_inbound(self, request: web.Request) -> web.Response:
        """Kavenegar forwards an SMS received on the line: the secret first, then the fields."""
        secret = self.config.inbound_secret
        given = request.query.get("secret", "")
        if secret is None or not hmac.compare_digest(given.encode(), secret.encode()):
            log.warning("kavenegar inbound SMS refused (403): %s secret", "wrong" if given else "no")
            if self._on_refused is not None:
                self._on_refused("mismatch" if given else "missing")
            return _error(403, "forbidden", "missing or wrong secret in the URL")
        try:
            fields: Mapping[str, str] = request.query if request.method == "GET" else await _form(request)
        except ValueError as exc:
            return _error(400, "malformed_form", str(exc))
        raw_from, text = fields.get("from", ""), fields.get("message")
        if not raw_from or text is None:
            return _error(400, "missing_field", "from and message are required",
                          field="from" if not raw_from else "message")
        sender = from_kavenegar(raw_from)
        if not sender:
            return _error(422, "invalid_phone", "from is not a phone number", field="from")
        if self.events is None:
            return _error(503, "not_ready", "the SMS provider is not open yet")
        await self._take(sender=sender, to=fields.get("to", ""), text=text, messageid=fields.get("messageid", ""))
        return web.Response(text="OK")

    async def receive_once(self) -> None:
        """``sms/receive.json``: the SMS received on the line and not read yet (reading marks them read).

        Kavenegar marks them read as it answers, so one that could not be handled (the store down) is kept here
        and tried again at the next read, and never keeps the others of the batch from being handled.
        """
        fresh = await self._open_rest().received(self.config.sender)
        retry, self._unhandled = self._unhandled, []
        for entry in [*retry, *fresh]:
            sender = from_kavenegar(entry.sender)
            if not sender:
                log.warning("kavenegar received SMS %s from something that is no phone number; ignored",
                            entry.messageid)
                continue
            try:
                await self._take(sender=sender, to=entry.receptor, text=entry.message, messageid=str(entry.messageid))
            except Exception:
                log.exception("kavenegar received SMS %s from %s could not be handled; tried again at the next read",
                              entry.messageid, mask(sender))
                if len(self._unhandled) < _MEMORY:
                    self._unhandled.append(entry)

    async def _take(self, *, sender: str, to: str, text: str, messageid: str) -> None:
        """An engineer's SMS (forwarded or polled): once per message id; the gateway's answer is sent back."""
        if self.events is None:
            return
        if messageid and messageid in self._seen_inbound:
            log.info("kavenegar inbound SMS %s from %s again: already handled", messageid, mask(sender))
            return
        if messageid:
            self._seen_inbound[messageid] = None
            while len(self._seen_inbound) > _MEMORY:
                self._seen_inbound.pop(next(iter(self._seen_inbound)))
        try:
            reply = await self.events.sms_received(InboundSms(sender=sender, to=to, text=text))
        except BaseException:
            self._seen_inbound.pop(messageid, None)  # not handled: the same message again must act
            raise
        if reply.text:
            self._spawn(self._send_reply(sender, reply.text))

    async def _receive_forever(self, interval: float) -> None:
        while True:
            await self._clock.sleep_until(self._clock.now() + interval)
            try:
                await self.receive_once()
            except ProviderError as exc:
                log.warning("kavenegar: could not read received SMS: %s", exc)
            except Exception:
                log.exception("kavenegar: reading received SMS failed")

    async def _send_reply(self, to: str, text: str) -> None:
        try:
            await self._open_rest().send(receptor=to_receptor(to), sender=self.config.sender, message=text)
        except ProviderError as exc:
            log.warning("kavenegar: the reply to %s could not be sent: %s", mask(to), exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def local_id(sms_id: str) -> str:
    """Digits standing for an SMS id (the same on every gateway): 15 digits of its SHA-256."""
    return str(int(hashlib.sha256(sms_id.encode()).hexdigest(), 16) % 10**15).rjust(15, "0")


async def _form(request: web.Request) -> Mapping[str, str]:
    try:
        posted = await request.post()
    except Exception as exc:
        raise ValueError(f"unreadable form body ({type(exc).__name__})") from None
    return {name: value for name, value in posted.items() if isinstance(value, str)}


def _error(status: int, error: str, message: str, **details: str) -> web.Response:
    return web.json_response({"error": error, "message": message, "details": details}, status=status)


__all__ = ["INBOUND_PATH", "KavenegarError", "KavenegarProvider"]
