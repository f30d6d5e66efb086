"""A loopback Twilio-compatible REST API: calls, call updates and messages.

It speaks what the SDK sends (form bodies, HTTP basic auth) and answers the
way Twilio does (JSON resources, ``201`` on create, errors as
``{"code", "message", "more_info", "status"}``). Every request is recorded;
faults can be injected to exercise retries.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from aiohttp import web
from multidict import MultiDict

DEFAULT_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
DEFAULT_AUTH_TOKEN = "test-auth-token-0123456789abcdef"

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_FINAL = frozenset({"completed", "canceled", "busy", "failed", "no-answer"})


def new_sid(prefix: str) -> str:
    """A Twilio-shaped sid: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True, kw_only=True)
class Fault:
    status: int
    code: int
    message: str


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
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        path_prefix: str = "",
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.path_prefix = path_prefix.rstrip("/")
        self.requests: list[tuple[str, str]] = []
        self.calls: list[MultiDict[str]] = []
        self.call_sids: list[str] = []
        self.messages: list[MultiDict[str]] = []
        self.updates: list[tuple[str, MultiDict[str]]] = []
        self.call_status: dict[str, str] = {}
        self.update_gate: asyncio.Event | None = None  # when set, call updates wait for it (a slow API)
        self._call_records: dict[str, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeTwilioApi is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        app = web.Application()
        prefix = self.path_prefix + "/2010-04-01/Accounts/{account}"
        app.router.add_post(prefix + "/Calls.json", self._create_call)
        app.router.add_post(prefix + "/Calls/{call_sid}.json", self._update_call)
        app.router.add_post(prefix + "/Messages.json", self._create_message)
        app.middlewares.append(self._gate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
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
        if "Url" not in form and "Twiml" not in form and "ApplicationSid" not in form:
            raise ApiError(400, 21205, "Url parameter is required.")
        self.calls.append(form)
        sid = new_sid("CA")
        self.call_sids.append(sid)
        self._call_records[sid] = self._record(sid, to=to, from_=from_, direction="outbound-api")
        self.call_status[sid] = "queued"
        return web.json_response(self._call_json(sid), status=201)

    async def _update_call(self, request: web.Request) -> web.Response:
        sid = request.match_info["call_sid"]
        if sid not in self._call_records:
            raise ApiError(404, 20404, f"The requested resource {request.path} was not found")
        form = await self._form(request)
        self.updates.append((sid, form))
        if self.update_gate is not None:
            await self.update_gate.wait()
        current = self.call_status[sid]
        if "Url" in form or "Twiml" in form:
            if current in _FINAL:
                raise ApiError(400, 21220, "Call is not in-progress. Cannot redirect.")
        status = form.get("Status")
        if status == "canceled" and current in ("queued", "ringing"):
            self.call_status[sid] = "canceled"
        elif status == "completed" and current not in _FINAL:
            self.call_status[sid] = "completed"
        elif status not in (None, "canceled", "completed"):
            raise ApiError(400, 21218, f"Invalid value for Status: {status}")
        return web.json_response(self._call_json(sid))

    async def _create_message(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        to, from_ = form.get("To", ""), form.get("From", "")
        _check_number(to, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("Body"):
            raise ApiError(400, 21602, "Message body is required.")
        self.messages.append(form)
        sid = new_sid("SM")
        now = formatdate(usegmt=True)
        return web.json_response(
            {
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
            },
            status=201,
        )

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
