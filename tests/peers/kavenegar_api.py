"""A loopback Kavenegar REST API, written from Kavenegar's documentation (kavenegar.com/rest.html).

Every method is ``/v1/{API-KEY}/{scope}/{method}.json``, by GET (query) or POST (form), and answers
``{"return": {"status": <code>, "message": "..."}, "entries": ...}`` with the same code as the HTTP status.
Served: ``sms/send.json`` (receptor, sender, message, localid; one entry per receptor),
``sms/statuslocalmessageid.json`` (localid: the message sent with it, status 100 if none), ``sms/status.json``
(messageid, comma separated, at most 500; an unknown id has status 100) and ``sms/receive.json``
(linenumber, isread=0: the unread messages received on the line, then marked read) and
``account/info.json`` (remaincredit, expiredate, type). Checked as Kavenegar
does: the API key (403), an empty required parameter (406), the receptor (411), the sender line (412),
the message (413), too many ids (414) and the credit (418).

``messages`` holds each accepted send (one dict per receptor, as answered); ``requests`` (method, path
with the key replaced by ``{key}``, fields) every request. ``fail_next(code)`` answers the next requests
with that error (``proxy_page_next``: with a page from something in front of Kavenegar); ``set_status``
moves a message on (Kavenegar's operator reports). ``forward`` plays Kavenegar forwarding an SMS received
on a line to the URL set in its panel (a form POST of ``from``, ``to``, ``message``, ``messageid``);
``inbox`` feeds ``sms/receive.json``.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from typing import Any

import aiohttp
from aiohttp import web

DEFAULT_API_KEY = "6F5A7465736B6579416263313233"
DEFAULT_LINE = "10004346"
COST = 120  # rials per message part, as in the documentation's example
_MESSAGES = {
    200: "تایید شد", 403: "کد شناسائی API-Key معتبر نمی‌باشد", 406: "پارامترهای اجباری خالی ارسال شده اند",
    409: "سرور قادر به پاسخگوئی نیست بعدا تلاش کنید", 411: "دریافت کننده نامعتبر است",
    412: "ارسال کننده نامعتبر است", 413: "پیام خالی است و یا طول پیام بیش از حد مجاز می‌باشد",
    414: "حجم درخواست بیشتر از حد مجاز است", 418: "اعتبار حساب شما کافی نیست",
}  # fmt: skip
_STATUS_TEXT = {1: "در صف ارسال", 4: "ارسال به مخابرات", 10: "رسیده به گیرنده", 11: "نرسیده به گیرنده",
                100: "شناسه پیامک نامعتبر است"}
_RECEPTOR = re.compile(r"(09\d{9}|00[1-9]\d{6,14}|\+?98\d{10})")
_MAX_MESSAGE = 900  # Latin characters (Kavenegar counts Persian more strictly)


class FakeKavenegarApi:
    """``async with FakeKavenegarApi() as api:`` then point ``kavenegar.api_url`` at ``api.base_url``."""

    def __init__(self, *, api_key: str = DEFAULT_API_KEY, lines: tuple[str, ...] = (DEFAULT_LINE,),
                 credit: int = 1_000_000) -> None:
        self.api_key = api_key
        self.lines = lines
        self.credit = credit
        self.messages: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.inbox: list[dict[str, Any]] = []
        self._faults: list[int] = []
        self._pages: list[tuple[int, bytes, str]] = []
        self._holds: list[bool] = []  # sends left unanswered: whether each went out first
        self._released = asyncio.Event()
        self._ids = itertools.count(8792343)  # the documentation's first message id
        self._inbound_ids = itertools.count(41_000_000)
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def __aenter__(self) -> FakeKavenegarApi:
        app = web.Application()
        app.router.add_route("*", "/v1/{key}/{scope}/{method}.json", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def fail_next(self, code: int, times: int = 1) -> None:
        self._faults.extend([code] * times)

    def proxy_page_next(self, status: int, body: bytes, content_type: str = "text/html") -> None:
        """The next request is answered by something in front of Kavenegar (a proxy, a captive portal), not by
        Kavenegar: ``body`` as it is, in whatever charset."""
        self._pages.append((status, body, content_type))

    def hold_next_send(self, *, sent: bool) -> None:
        """Leave the next send's answer out (until the peer closes): the client's answer is lost. ``sent``: the
        SMS went out before the answer was lost (else the request never got that far)."""
        self._holds.append(sent)

    def incoming(self, *, from_: str, message: str, line: str = DEFAULT_LINE) -> int:
        """An SMS arrives on ``line`` (for ``sms/receive.json``); its message id."""
        messageid = next(self._inbound_ids)
        self.inbox.append({"messageid": messageid, "message": message, "sender": from_, "receptor": line,
                           "date": int(time.time())})
        return messageid

    def set_status(self, messageid: int, status: int) -> None:
        for message in self.messages:
            if message["messageid"] == messageid:
                message["status"] = status
                message["statustext"] = _STATUS_TEXT.get(status, "")
                return
        raise KeyError(messageid)

    def sent_to(self, receptor: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["receptor"] == receptor]

    async def forward(self, url: str, *, from_: str, message: str, to: str = DEFAULT_LINE,
                      messageid: int | None = None) -> tuple[int, str]:
        """Kavenegar forwards an SMS received on ``to`` to the application's URL (a form POST)."""
        form = {"messageid": str(messageid if messageid is not None else next(self._inbound_ids)),
                "from": from_, "to": to, "message": message}
        async with aiohttp.ClientSession() as session, session.post(url, data=form) as resp:
            return resp.status, await resp.text()

    # ----------------------------------------------------------------- API

    async def _handle(self, request: web.Request) -> web.Response:
        fields = dict(request.query)
        if request.method == "POST":
            fields.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        scope, method = request.match_info["scope"], request.match_info["method"]
        self.requests.append((request.method, f"/v1/{{key}}/{scope}/{method}.json", fields))
        if self._pages:
            status, body, content_type = self._pages.pop(0)
            return web.Response(status=status, body=body, content_type=content_type)
        if self._faults:
            return _answer(self._faults.pop(0))
        if request.match_info["key"] != self.api_key:
            return _answer(403)
        if (scope, method) == ("sms", "send"):
            if self._holds:
                if self._holds.pop(0):
                    self._send(fields)
                await self._released.wait()  # until the peer closes: the client has given up long before
                return _answer(409)
            return self._send(fields)
        if (scope, method) == ("sms", "statuslocalmessageid"):
            return self._by_localid(fields)
        if (scope, method) == ("sms", "status"):
            return self._status(fields)
        if (scope, method) == ("sms", "receive"):
            return self._receive(fields)
        if (scope, method) == ("account", "info"):
            return _answer(200, {"remaincredit": self.credit, "expiredate": 1893456000, "type": "Master"})
        return _answer(404, message="متد نامشخص است")

    def _send(self, fields: dict[str, str]) -> web.Response:
        receptors = [r.strip() for r in fields.get("receptor", "").split(",") if r.strip()]
        text, sender = fields.get("message", ""), fields.get("sender", self.lines[0])
        if not receptors or "message" not in fields:
            return _answer(406)
        if not all(_RECEPTOR.fullmatch(r) for r in receptors):
            return _answer(411)
        if sender not in self.lines:
            return _answer(412)
        if not text or len(text) > _MAX_MESSAGE:
            return _answer(413)
        if len(receptors) > 200:
            return _answer(414)
        if self.credit < COST * len(receptors):
            return _answer(418)
        entries = []
        for receptor in receptors:
            self.credit -= COST
            entry = {"messageid": next(self._ids), "message": text, "status": 1, "statustext": _STATUS_TEXT[1],
                     "sender": sender, "receptor": receptor, "date": int(time.time()), "cost": COST}
            self.messages.append({**entry, "localid": fields.get("localid", "")})
            entries.append(dict(entry))
        return _answer(200, entries)

    def _status(self, fields: dict[str, str]) -> web.Response:
        ids = [i.strip() for i in fields.get("messageid", "").split(",") if i.strip()]
        if not ids:
            return _answer(406)
        if len(ids) > 500:
            return _answer(414)
        known = {str(m["messageid"]): m for m in self.messages}
        entries = []
        for messageid in ids:
            found = known.get(messageid)
            status = found["status"] if found else 100
            entries.append({"messageid": int(messageid) if messageid.isdigit() else messageid, "status": status,
                            "statustext": _STATUS_TEXT.get(status, "")})
        return _answer(200, entries)

    def _by_localid(self, fields: dict[str, str]) -> web.Response:
        ids = [i.strip() for i in fields.get("localid", "").split(",") if i.strip()]
        if not ids:
            return _answer(406)
        entries = []
        for localid in ids:
            found = next((m for m in self.messages if localid and m["localid"] == localid), None)
            status = found["status"] if found else 100
            entries.append({"messageid": found["messageid"] if found else 0, "localid": localid, "status": status,
                            "statustext": _STATUS_TEXT.get(status, "")})
        return _answer(200, entries)

    def _receive(self, fields: dict[str, str]) -> web.Response:
        line = fields.get("linenumber", "")
        if not line or fields.get("isread") is None:
            return _answer(406)
        if line not in self.lines:
            return _answer(412)
        unread = [m for m in self.inbox if m["receptor"] == line and not m.get("read")]
        for message in unread:
            message["read"] = True
        return _answer(200, [{k: v for k, v in m.items() if k != "read"} for m in unread])


def _answer(code: int, entries: Any = None, *, message: str = "") -> web.Response:
    body = {"return": {"status": code, "message": message or _MESSAGES.get(code, "خطا")}, "entries": entries}
    return web.json_response(body, status=code)
