"""The sandbox's own HTTP API: look at and drive the simulated phones (/api/v1/sandbox/phones).

It belongs to the sandbox provider, as Twilio's webhooks belong to Twilio's. The gateway serves these
routes only when the sandbox is on, behind the same API-token check as every other endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from core.errors import DomainError, InvalidField
from core.phone import InvalidNumber, normalize
from providers.sandbox import PhoneError, SandboxProvider, describe

_DIGITS = re.compile(r"[0-9*#]{1,20}")


class PhoneState(DomainError):
    status, error = 409, "phone_state"


#: reads a request's JSON body (the gateway's one bounded reader, handed in; a 4xx for anything else)
JsonReader = Callable[[web.Request], Awaitable[Any]]


def sandbox_routes(sandbox: SandboxProvider, *, region: str, read_json: JsonReader) -> list[web.RouteDef]:
    """The routes, bound to ``sandbox``; numbers written in national format are read in ``region``."""

    async def body_of(request: web.Request) -> dict[str, Any]:
        body = await read_json(request)
        return body if isinstance(body, dict) else {}

    def number(raw: str, field: str = "number") -> str:
        try:
            return normalize(raw, region)
        except InvalidNumber as exc:
            raise InvalidField(field, f"{raw!r} is not a phone number ({exc.reason})", number=raw) from None

    async def list_phones(request: web.Request) -> web.Response:
        return web.json_response({"phones": [describe(p) for p in sandbox.phones.values()]})

    async def get_phone(request: web.Request) -> web.Response:
        return web.json_response(describe(sandbox.phone(number(request.match_info["number"]))))

    def act(action: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            phone = number(request.match_info["number"])
            try:
                if action == "answer":
                    await sandbox.answer(phone)
                elif action == "reject":
                    await sandbox.reject(phone)
                elif action == "hangup":
                    await sandbox.hangup(phone)
                else:
                    given = (await body_of(request)).get("digits")
                    if not isinstance(given, str) or not _DIGITS.fullmatch(given):
                        raise InvalidField("digits", "1 to 20 of 0-9, * and #")
                    await sandbox.press(phone, given)
            except PhoneError as exc:
                raise PhoneState(str(exc)) from None
            return web.json_response(describe(sandbox.phone(phone)))

        handler.__name__ = action
        handler.__doc__ = f"The phone: {action}."
        return handler

    async def dial(request: web.Request) -> web.Response:
        """The phone calls a number (a hotline): ``{"to": "+15557770000"}``."""
        phone = number(request.match_info["number"])
        raw = (await body_of(request)).get("to")
        if not isinstance(raw, str):
            raise InvalidField("to", "the number to dial, as a string")
        try:
            await sandbox.dial(phone, number(raw, "to"))
        except PhoneError as exc:
            raise PhoneState(str(exc)) from None
        return web.json_response(describe(sandbox.phone(phone)))

    async def reply(request: web.Request) -> web.Response:
        """The phone texts the gateway: ``{"text": "ack"}``."""
        phone = number(request.match_info["number"])
        text = (await body_of(request)).get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > 1600:
            raise InvalidField("text", "the SMS text: 1 to 1600 characters")
        answer_text = await sandbox.reply(phone, text)
        return web.json_response({"reply": answer_text, **describe(sandbox.phone(phone))})

    base = "/api/v1/sandbox/phones"
    return [
        web.get(base, list_phones),
        web.get(base + "/{number}", get_phone),
        *[web.post(f"{base}/{{number}}/{action}", act(action)) for action in ("answer", "press", "reject", "hangup")],
        web.post(base + "/{number}/dial", dial),
        web.post(base + "/{number}/reply", reply),
    ]

