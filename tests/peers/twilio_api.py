"""A loopback Twilio-compatible REST API: the account, calls, call updates and messages.

It speaks what the SDK sends (form bodies, HTTP basic auth) and answers the
way Twilio does (JSON resources, ``201`` on create, errors as
``{"code", "message", "more_info", "status"}``, lists as pages with the newest
first). Every request is recorded; faults can be injected to exercise
retries, and requests can be left hanging (the connection accepted, no answer
ever) to exercise timeouts, with or without the call being placed first.

With ``end_calls_after_s`` the API also plays the network's part of each call
it creates, as Twilio documents it: it POSTs the call's ``StatusCallback`` for
the events the create subscribed to (``StatusCallbackEvent``: ``initiated``,
``ringing``, ``answered`` as ``in-progress``), fetches the call's ``Url`` when
the callee answers, and ends the call after that time with a final status
callback (``no-answer``, or ``completed`` with ``CallDuration``), always sent.
Callbacks are form-encoded, signed with ``X-Twilio-Signature`` and carry
``CallbackSource=call-progress-events``, ``SequenceNumber`` (from 0) and
``Timestamp`` (RFC 2822). Twilio does not retry them, and neither does this.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from multidict import MultiDict

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "test-auth-token-0123456789abcdef"

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_FINAL = frozenset({"completed", "canceled", "busy", "failed", "no-answer"})
API_VERSION = "2010-04-01"
EndAs = Literal["no-answer", "completed"]


def new_sid(prefix: str) -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True, kw_only=True)
class Fault:
    status: int
    code: int
    message: str


@dataclass(kw_only=True)
class Hang:
    """Leave matching requests unanswered: ``times`` of them (None: all), only call and message creates
    to ``to`` when given; ``place``: such a create is carried out first, and only its answer is lost."""

    times: int | None
    to: str | None = None
    place: bool = False


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def response(self) -> web.Response:
        return web.json_response(
            {
                "code": self.code,
                "message": self.message,
                "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
                "status": self.status,
            },
            status=self.status,
        )


class FakeTwilioApi:
    """``async with FakeTwilioApi() as api:`` then point the REST client at ``api.base_url``.

    Recorded: ``requests`` (method, path) for every request, even refused ones;
    ``calls`` and ``messages`` (form fields of accepted creates) and
    ``call_sids`` (the sid given to each of ``calls``); ``updates`` (call sid,
    form fields). ``call_status`` holds each call's current status. Calls that
    come in from the network are made known with :meth:`incoming`.
    ``path_prefix`` mounts the API below a path, as SignalWire does (``/api/laml``).
    ``create_attempts`` (``message_attempts``) holds the form of every call
    (message) create that reached the API, answered or not; ``hung`` counts the requests left without an answer.
    ``account_type`` ("Trial" or "Full") and ``account_status`` ("active",
    "suspended", "closed") shape the account resource.

    ``end_calls_after_s`` (None: calls stay as they are until updated) makes the
    API play each created call's progress and end it that many seconds after its
    create, as ``end_calls_as`` says: ``no-answer`` (it rang out) or
    ``completed`` (answered at once: its ``Url`` is fetched, then the callee
    hangs up); ``end_after_s_to`` gives some numbers their own time. A call ended
    by an update (``Status=canceled``/``completed``) gets its final callback then.
    ``callbacks`` records (url, params, HTTP status or 0 when unreachable) of each
    request the API made to the application.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        path_prefix: str = "",
        account_type: Literal["Trial", "Full"] = "Full",
        account_status: str = "active",
        end_calls_after_s: float | None = None,
        end_calls_as: EndAs = "no-answer",
        end_after_s_to: dict[str, float] | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.path_prefix = path_prefix.rstrip("/")
        self.account_type = account_type
        self.account_status = account_status
        self.requests: list[tuple[str, str]] = []
        self.create_attempts: list[MultiDict[str]] = []
        self.message_attempts: list[MultiDict[str]] = []
        self.hung = 0
        self.calls: list[MultiDict[str]] = []
        self.call_sids: list[str] = []
        self.messages: list[MultiDict[str]] = []
        self.updates: list[tuple[str, MultiDict[str]]] = []
        self.call_status: dict[str, str] = {}
        self.update_gate: asyncio.Event | None = None  # when set, call updates wait for it (a slow API)
        self._call_records: dict[str, dict[str, Any]] = {}
        self._message_records: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._hangs: list[Hang] = []
        self._released = asyncio.Event()  # set on close: hung requests end
        self._runner: web.AppRunner | None = None
        self._port = 0
        self.end_calls_after_s = end_calls_after_s
        self.end_calls_as: EndAs = end_calls_as
        self.end_after_s_to = dict(end_after_s_to or {})
        self.callbacks: list[tuple[str, dict[str, str], int]] = []
        self._client: aiohttp.ClientSession | None = None
        self._playing: dict[str, asyncio.Event] = {}  # call sid -> set when an update ends the call
        self._players: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeTwilioApi is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application()
        prefix = self.path_prefix + "/2010-04-01/Accounts/{account}"
        app.router.add_get(prefix + ".json", self._fetch_account)
        app.router.add_post(prefix + "/Calls.json", self._create_call)
        app.router.add_get(prefix + "/Calls.json", self._list_calls)
        app.router.add_post(prefix + "/Calls/{call_sid}.json", self._update_call)
        app.router.add_post(prefix + "/Messages.json", self._create_message)
        app.router.add_get(prefix + "/Messages.json", self._list_messages)
        app.middlewares.append(self._gate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self._released.set()
        for task in list(self._players):
            task.cancel()
        await asyncio.gather(*self._players, return_exceptions=True)
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTwilioApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def fail_next(self, status: int, code: int, times: int = 1, message: str = "") -> None:
        """Answer the next ``times`` requests with this error, before auth or validation."""
        text = message or {429: "Too Many Requests", 503: "Service Unavailable"}.get(
            status, "Injected failure"
        )
        self._faults.extend(Fault(status=status, code=code, message=text) for _ in range(times))

    def hang_next(self, times: int = 1) -> None:
        """The next ``times`` requests (any kind) are accepted and never answered."""
        self._hangs.append(Hang(times=times))

    def hang_creates_to(self, number: str, *, place: bool = False, times: int | None = None) -> None:
        """Call and message creates to ``number`` are accepted and never answered (``times`` of them;
        None: all).

        ``place``: the call (message) is created first (it is listed, and callbacks may follow), only
        the answer is lost, as when Twilio's response is lost on the way back.
        """
        self._hangs.append(Hang(times=times, to=number, place=place))

    def incoming(self, sid: str, *, from_: str, to: str) -> None:
        """A call reached one of the account's numbers: it exists (in progress) for call updates."""
        self._call_records[sid] = self._record(sid, to=to, from_=from_, direction="inbound")
        self.call_status[sid] = "in-progress"

    def set_call_status(self, sid: str, status: str) -> None:
        """Move a call along as the network would (``ringing``, ``in-progress``, ...)."""
        if sid not in self._call_records:
            raise KeyError(sid)
        self.call_status[sid] = status

    # ------------------------------------------------------------------ internals

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        hang = self._take_hang(request, to=None)
        if hang is not None:
            return await self._hang()
        try:
            if self._faults:
                fault = self._faults.pop(0)
                raise ApiError(fault.status, fault.code, fault.message)
            self._authenticate(request)
            if request.match_info.get("account") != self.account_sid:
                raise ApiError(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
            response: web.StreamResponse = await handler(request)
            return response
        except ApiError as exc:
            return exc.response()

    def _take_hang(self, request: web.Request, *, to: str | None) -> Hang | None:
        """The first hang that applies to this request (``to``: a call create's To), used up by one."""
        for hang in self._hangs:
            if (hang.to is None) != (to is None) or (to is not None and hang.to != to):
                continue
            if hang.times is not None:
                hang.times -= 1
                if hang.times == 0:
                    self._hangs.remove(hang)
            return hang
        return None

    async def _hang(self) -> web.Response:
        self.hung += 1
        await self._released.wait()
        return web.Response(status=503, text="closed")

    def _authenticate(self, request: web.Request) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            login = password = ""
        if scheme != "Basic" or (login, password) != (self.account_sid, self.auth_token):
            raise ApiError(401, 20003, "Authenticate")

    async def _form(self, request: web.Request) -> MultiDict[str]:
        form = await request.post()
        return MultiDict((key, str(value)) for key, value in form.items())

    async def _create_call(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        to, from_ = form.get("To", ""), form.get("From", "")
        _check_number(to, 21211, f"The 'To' number {to} is not a valid phone number.")
        _check_number(from_, 21212, f"The 'From' number {from_} is not a valid phone number.")
        self.create_attempts.append(form)
        hang = self._take_hang(request, to=to)
        if hang is not None and not hang.place:
            return await self._hang()
        if "Url" not in form and "Twiml" not in form and "ApplicationSid" not in form:
            raise ApiError(400, 21205, "Url parameter is required.")
        self.calls.append(form)
        sid = new_sid("CA")
        self.call_sids.append(sid)
        self._call_records[sid] = self._record(sid, to=to, from_=from_, direction="outbound-api")
        self.call_status[sid] = "queued"
        if self.end_calls_after_s is not None:
            self._play(sid, form)
        if hang is not None:
            return await self._hang()  # placed; the answer is lost
        return web.json_response(self._call_json(sid), status=201)

    async def _fetch_account(self, request: web.Request) -> web.Response:
        now = formatdate(usegmt=True)
        base = f"/2010-04-01/Accounts/{self.account_sid}"
        return web.json_response({
            "auth_token": self.auth_token,  # Twilio does return it: never log this resource
            "date_created": now,
            "date_updated": now,
            "friendly_name": "Loopback test account",
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": self.account_status,
            "subresource_uris": {"calls": f"{base}/Calls.json", "messages": f"{base}/Messages.json"},
            "type": self.account_type,
            "uri": f"{base}.json",
        })

    async def _list_calls(self, request: web.Request) -> web.Response:
        """``GET Calls.json``: filters To, From, Status; the newest first, as Twilio lists them."""
        query = request.query
        records = [self._call_json(sid) for sid in reversed(list(self._call_records))]
        for name, key in (("To", "to"), ("From", "from"), ("Status", "status")):
            if name in query:
                records = [r for r in records if r[key] == query[name]]
        return web.json_response(self._page("calls", records, request))

    async def _list_messages(self, request: web.Request) -> web.Response:
        """``GET Messages.json``: filters To, From; the newest first."""
        query = request.query
        records = list(reversed(self._message_records))
        for name, key in (("To", "to"), ("From", "from")):
            if name in query:
                records = [r for r in records if r[key] == query[name]]
        return web.json_response(self._page("messages", records, request))

    def _page(self, key: str, records: list[dict[str, Any]], request: web.Request) -> dict[str, Any]:
        size = int(request.query.get("PageSize", "50"))
        shown = records[:size]
        uri = f"/2010-04-01/Accounts/{self.account_sid}/{key.capitalize()}.json?PageSize={size}&Page=0"
        return {
            key: shown,
            "end": max(len(shown) - 1, 0),
            "first_page_uri": uri,
            "next_page_uri": None,  # one page is all a lookup reads
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": uri,
        }

    async def _update_call(self, request: web.Request) -> web.Response:
        sid = request.match_info["call_sid"]
        if sid not in self._call_records:
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        form = await self._form(request)
        self.updates.append((sid, form))
        if self.update_gate is not None:
            await self.update_gate.wait()
        current = self.call_status[sid]
        if ("Url" in form or "Twiml" in form) and current in _FINAL:
            raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
        status = form.get("Status")
        if status == "canceled" and current in ("queued", "ringing"):
            self.call_status[sid] = "canceled"
        elif status == "completed" and current not in _FINAL:
            self.call_status[sid] = "completed"
        elif status not in (None, "canceled", "completed"):
            raise ApiError(400, 21218, f"Invalid value for Status: {status}")
        if self.call_status[sid] in _FINAL and sid in self._playing:
            self._playing[sid].set()  # the final status callback goes now
        return web.json_response(self._call_json(sid))

    async def _create_message(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        to, from_ = form.get("To", ""), form.get("From", "")
        _check_number(to, 21211, f"The 'To' number {to} is not a valid phone number.")
        self.message_attempts.append(form)
        hang = self._take_hang(request, to=to)
        if hang is not None and not hang.place:
            return await self._hang()
        if not form.get("Body"):
            raise ApiError(400, 21602, "Message body is required.")
        self.messages.append(form)
        sid = new_sid("SM")
        now = formatdate(usegmt=True)
        record = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": from_,
            "body": form["Body"],
            "status": "queued",
            "direction": "outbound-api",
            "num_segments": "1",
            "num_media": "0",
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "error_code": None,
            "error_message": None,
            "messaging_service_sid": None,
            "price": None,
            "price_unit": "USD",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self._message_records.append(record)
        if hang is not None:
            return await self._hang()  # sent; the answer is lost
        return web.json_response(record, status=201)

    # ------------------------------------------------------- the network's part of a call

    def _play(self, sid: str, form: MultiDict[str]) -> None:
        self._playing[sid] = asyncio.Event()
        task = asyncio.create_task(self._progress(sid, form), name=f"twilio call {sid}")
        self._players.add(task)
        task.add_done_callback(self._players.discard)

    async def _progress(self, sid: str, form: MultiDict[str]) -> None:
        """Initiated, ringing, (answered), then the end: the callbacks Twilio sends for a created call."""
        created = time.monotonic()
        assert self.end_calls_after_s is not None
        end_after = self.end_after_s_to.get(form.get("To", ""), self.end_calls_after_s)
        events = {e for value in form.getall("StatusCallbackEvent", []) for e in value.split()}
        url, method = form.get("StatusCallback"), form.get("StatusCallbackMethod", "POST").upper()
        record = self._call_records[sid]
        sequence = 0

        async def status_callback(status: str, **extra: str) -> None:
            nonlocal sequence
            if url is None:
                return
            params = {**self._call_params(sid, status), "CallbackSource": "call-progress-events",
                      "SequenceNumber": str(sequence), "Timestamp": format_datetime(datetime.now(UTC)), **extra}
            sequence += 1
            await self._request(url, method, params)

        ended = self._playing[sid]
        try:
            if "initiated" in events:
                await status_callback("initiated")
            if self.call_status[sid] not in _FINAL:
                self.call_status[sid] = "ringing"
                if "ringing" in events:
                    await status_callback("ringing")
            answered = None
            if self.end_calls_as == "completed" and self.call_status[sid] not in _FINAL:
                self.call_status[sid] = "in-progress"
                answered = time.monotonic()
                record["start_time"] = formatdate(usegmt=True)
                if "Url" in form:  # the TwiML is fetched; the callee hangs up before it is followed
                    await self._request(form["Url"], form.get("Method", "POST").upper(),
                                        self._call_params(sid, "in-progress"))
                if "answered" in events:
                    await status_callback("in-progress")
            try:
                await asyncio.wait_for(ended.wait(), max(0.0, created + end_after - time.monotonic()))
            except TimeoutError:
                pass
            status = self.call_status[sid]
            if status not in _FINAL:
                status = "completed" if answered is not None else "no-answer"
            self.call_status[sid] = status
            record["end_time"] = formatdate(usegmt=True)
            if status == "completed":
                duration = str(round(time.monotonic() - answered)) if answered is not None else "0"
                record["duration"] = duration
                await status_callback(status, CallDuration=duration)
            else:
                record["duration"] = "0"
                await status_callback(status)
        finally:
            self._playing.pop(sid, None)

    def _call_params(self, sid: str, status: str) -> dict[str, str]:
        """What Twilio sends about a call in every voice request: the call's own parameters."""
        record = self._call_records[sid]
        return {"CallSid": sid, "AccountSid": self.account_sid, "From": record["from"], "To": record["to"],
                "Caller": record["from"], "Called": record["to"], "Direction": record["direction"],
                "ApiVersion": API_VERSION, "CallStatus": status}

    async def _request(self, url: str, method: str, params: dict[str, str]) -> None:
        """One request to the application, signed as Twilio signs it (GET: the parameters in the query)."""
        from tests.peers.twilio_driver import twilio_signature  # (it imports this module)

        headers = {"User-Agent": "TwilioProxy/1.1"}
        if method == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, url, {})
            body = b""
        else:
            headers["X-Twilio-Signature"] = twilio_signature(self.auth_token, url, params)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = urlencode(params).encode()
        status = await self._send(method, url, headers, body)
        self.callbacks.append((url, params, status))

    async def _send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> int:
        """Send one request to the application: its HTTP status, 0 when unreachable (Twilio logs that in its
        debugger and moves on)."""
        if self._client is None:
            self._client = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        try:
            async with self._client.request(method, url, data=body or None, headers=headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, OSError):
            return 0

    def _record(self, sid: str, *, to: str, from_: str, direction: str) -> dict[str, Any]:
        now = formatdate(usegmt=True)
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "to_formatted": to,
            "from": from_,
            "from_formatted": from_,
            "direction": direction,
            "api_version": "2010-04-01",
            "date_created": now,
            "date_updated": now,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "price": None,
            "price_unit": "USD",
            "answered_by": None,
            "caller_name": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "queue_time": "0",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
        }

    def _call_json(self, sid: str) -> dict[str, Any]:
        return {**self._call_records[sid], "status": self.call_status[sid]}


def _check_number(number: str, code: int, message: str) -> None:
    if not _E164.match(number):
        raise ApiError(400, code, message)
