"""/api/v1/sandbox/phones: look at and drive the simulated phones."""

from __future__ import annotations

import re

from aiohttp import web

from core.phone import InvalidNumber, normalize
from gateway.web.errors import ApiError, invalid
from gateway.web.json_body import read_json
from gateway.web.keys import CONFIG, SANDBOX
from providers.sandbox import PhoneError, SandboxProvider, describe

routes = web.RouteTableDef()

_DIGITS = re.compile(r"[0-9*#]{1,20}")


def _number(request: web.Request) -> str:
    raw = request.match_info["number"]
    try:
        return normalize(raw, request.app[CONFIG].default_region)
    except InvalidNumber as exc:
        raise invalid("number", f"{raw!r} is not a phone number ({exc.reason})", number=raw) from None


def _sandbox(request: web.Request) -> SandboxProvider:
    return request.app[SANDBOX]


@routes.get("/api/v1/sandbox/phones")
async def list_phones(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    return web.json_response({"phones": [describe(p) for p in sandbox.phones.values()]})


@routes.get("/api/v1/sandbox/phones/{number}")
async def get_phone(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    return web.json_response(describe(sandbox.phone(_number(request))))


async def _act(request: web.Request, action: str) -> web.Response:
    sandbox = _sandbox(request)
    number = _number(request)
    digits = ""
    if action == "press":
        body = await read_json(request)
        given = body.get("digits") if isinstance(body, dict) else None
        if not isinstance(given, str) or not _DIGITS.fullmatch(given):
            raise invalid("digits", "1 to 20 of 0-9, * and #")
        digits = given
    try:
        if action == "answer":
            await sandbox.answer(number)
        elif action == "reject":
            await sandbox.reject(number)
        elif action == "hangup":
            await sandbox.hangup(number)
        else:
            await sandbox.press(number, digits)
    except PhoneError as exc:
        raise ApiError(409, "phone_state", str(exc)) from None
    return web.json_response(describe(sandbox.phone(number)))


@routes.post("/api/v1/sandbox/phones/{number}/answer")
async def answer(request: web.Request) -> web.Response:
    return await _act(request, "answer")


@routes.post("/api/v1/sandbox/phones/{number}/press")
async def press(request: web.Request) -> web.Response:
    return await _act(request, "press")


@routes.post("/api/v1/sandbox/phones/{number}/reject")
async def reject(request: web.Request) -> web.Response:
    return await _act(request, "reject")


@routes.post("/api/v1/sandbox/phones/{number}/hangup")
async def hangup(request: web.Request) -> web.Response:
    return await _act(request, "hangup")


@routes.post("/api/v1/sandbox/phones/{number}/dial")
async def dial(request: web.Request) -> web.Response:
    """The phone calls a number (a hotline): ``{"to": "+15557770000"}``."""
    sandbox = _sandbox(request)
    number = _number(request)
    body = await read_json(request)
    raw = body.get("to") if isinstance(body, dict) else None
    if not isinstance(raw, str):
        raise invalid("to", "the number to dial, as a string")
    try:
        to = normalize(raw, request.app[CONFIG].default_region)
    except InvalidNumber as exc:
        raise invalid("to", f"{raw!r} is not a phone number ({exc.reason})", number=raw) from None
    try:
        await sandbox.dial(number, to)
    except PhoneError as exc:
        raise ApiError(409, "phone_state", str(exc)) from None
    return web.json_response(describe(sandbox.phone(number)))


@routes.post("/api/v1/sandbox/phones/{number}/reply")
async def reply(request: web.Request) -> web.Response:
    sandbox = _sandbox(request)
    number = _number(request)
    body = await read_json(request)
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip() or len(text) > 1600:
        raise invalid("text", "the SMS text: 1 to 1600 characters")
    answer_text = await sandbox.reply(number, text)
    return web.json_response({"reply": answer_text, **describe(sandbox.phone(number))})
