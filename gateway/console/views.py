"""The console's pages and forms, under /console (see the package's templates and static files).

Every page but sign-in and the static files is ``Auth.SESSION``: the auth middleware runs the console's
gate (session cookie, CSRF on POST, role) before the handler. Forms post and redirect back (they work
without the script); ``console.js`` swaps a page's live part when the event stream says it changed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from aiohttp import web

from core.enums import AlertStatus
from core.errors import DomainError
from core.phone import InvalidNumber, mask, normalize
from gateway.console import sessions
from gateway.console.hub import HUB as HUB  # the app's key, re-exported for the composition root
from gateway.console.picture import picture
from gateway.console.render import page, read_form, refusal
from gateway.hotline import SOURCE as HOTLINE
from gateway.layers import active_layer
from gateway.oncall import who_is_on_call
from gateway.store import Alert
from gateway.store_factory import describe as describe_store
from gateway.web.auth import Auth, Role, auth, token_for
from gateway.web.errors import ApiError
from gateway.web.keys import ALERTS, CLOCK, CLUSTER, CONFIG, PAGING, PROVIDERS, ROSTER, SANDBOX, STORE
from gateway.web.overrides import SCHEDULE, check_new
from providers.sandbox import PhoneError, describe

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
STATIC = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_STATUSES = ("triggered", "acknowledged", "resolved")
_PRIORITIES = ("high", "low")
_HEARTBEAT_S = 15.0


#: What a form's redirect may show (``?message=<code>``): fixed texts, so a link cannot put its own words on a
#: console page.
MESSAGES = {
    "not_found": "That alert is gone.",
    "conflict": "The alert has moved on already (acknowledged or resolved): nothing changed.",
    "refused": "That action was refused: reload the page to see the alert as it is now.",
    "override_role": "The role is primary or secondary.",
    "override_engineer": "Choose a member of the team.",
    "override_start": "Give a start between 1970 and 9000.",
    "override_end": "Give an end after the start, within 90 days of it, not in the past and before 9000.",
    "override_limit": "The team has the most overrides not ended yet (500): remove some first.",
    "bad_number": "That is not a phone number.",
    "phone_state": "The phone cannot do that now (nothing rings, no call in progress, already on a call, or the "
                   "sandbox is not connected).",
    "sms_answered": "The gateway answered the SMS: its reply shows on the phone.",
}


def _message(request: web.Request) -> str:
    return MESSAGES.get(request.query.get("message", ""), "")


def _back(path: str, code: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"{path}?{urlencode({'message': code})}" if code else path)


def _partial(request: web.Request) -> bool:
    return request.headers.get("X-Console-Partial") == "1"


# ------------------------------------------------------------------ sign-in


@routes.get("/console/static/{name}")
@auth(Auth.NONE)
async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or path.suffix not in _STATIC_TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=_STATIC_TYPES[path.suffix],
                        headers={"Cache-Control": "public, max-age=300"})


def _next(raw: str) -> str:
    """Where to go after signing in: only a console page (no open redirect, no way out by ``..``)."""
    path = unquote(raw.partition("?")[0].partition("#")[0])
    inside = path == "/console" or path.startswith("/console/")
    if not inside or ".." in path.split("/") or "\\" in raw or any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        return "/console/alerts"
    return raw


@routes.get("/console/sign-in")
@auth(Auth.NONE)
async def sign_in_form(request: web.Request) -> web.Response:
    return page(request, "sign_in.html", next=_next(request.query.get("next", "")), error=None)


@routes.post("/console/sign-in")
@auth(Auth.NONE)
async def sign_in(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc not in (request.host, urlsplit(config.public_url).netloc):
        # Another site's form signing this browser in to a session of its choosing (login CSRF).
        return refusal(request, 403, "Sign in from this gateway's own sign-in page.")
    form = await read_form(request)
    if isinstance(form, web.Response):
        return form
    presented, wanted = form.get("token"), form.get("next")
    target = _next(wanted if isinstance(wanted, str) else "")
    token = token_for(config, presented) if isinstance(presented, str) and presented else None
    if token is None:
        return page(request, "sign_in.html", http_status=401, next=target, error="That is not an API token of this "
                    "gateway.")
    value, _ = sessions.issue(config, token, now=request.app[CLOCK].now())
    response = web.HTTPSeeOther(target)
    sessions.set_cookie(response, config, value)
    log.info("console: signed in with token %s", token.name)
    raise response


@routes.post("/console/sign-out")
@auth(Auth.SESSION, role=Role.VIEWER)
async def sign_out(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther(sessions.SIGN_IN)
    sessions.clear_cookie(response, request.app[CONFIG])
    raise response


@routes.get("/console")
@auth(Auth.SESSION)
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/console/alerts")


# ------------------------------------------------------------ live updates


@routes.get("/console/events")
@auth(Auth.SESSION)
async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``alert`` (an id), ``phone`` (a number), ``resync``; a comment every 15 s.

    At most ``MAX_PER_SESSION`` streams per session and ``MAX_STREAMS`` in all (503 beyond); a stream ends
    once its session has expired (checked at every event and heartbeat)."""
    hub = request.app[HUB]
    session = request[sessions.SESSION]
    clock = request.app[CLOCK]
    queue = hub.open_stream(session.csrf)
    if queue is None:
        raise web.HTTPServiceUnavailable(text="too many live-update streams open", headers={"Retry-After": "30"})
    try:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        if hub.closed:
            return response
        await response.write(b"retry: 1000\n: connected\n\n")
        while True:
            try:
                async with asyncio.timeout(_HEARTBEAT_S):  # not wait_for: on 3.11 it can swallow a cancel
                    topic, data = await queue.get()
            except TimeoutError:
                topic, data = "", {}
            if topic == "close" or clock.now() >= session.expires:
                break
            if topic:
                await response.write(f"event: {topic}\ndata: {json.dumps(data)}\n\n".encode())
            else:
                await response.write(b": ping\n\n")
    except ConnectionResetError:
        pass
    finally:
        hub.close_stream(session.csrf, queue)
    return response


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: end the event streams, which would otherwise hold the shutdown up."""
    app[HUB].close()


# ------------------------------------------------------------------- alerts


@routes.get("/console/alerts")
@auth(Auth.SESSION)
async def alerts_page(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    status = request.query.get("status", "")
    team = request.query.get("team", "")
    priority = request.query.get("priority", "")
    status = status if status in _STATUSES else ""
    team = team if team in config.teams else ""
    priority = priority if priority in _PRIORITIES else ""
    shown = await request.app[STORE].list_alerts(status=status or None, team=team or None,
                                                 priority=priority or None, limit=200)
    query = urlencode({k: v for k, v in (("status", status), ("team", team), ("priority", priority)) if v})
    context: dict[str, Any] = dict(alerts=shown, status=status, team=team, priority=priority,
                                   teams=sorted(config.teams), statuses=_STATUSES, priorities=_PRIORITIES,
                                   live_src="/console/alerts" + (f"?{query}" if query else ""))
    return page(request, "alerts_live.html" if _partial(request) else "alerts.html", **context)


async def _alert_or_404(request: web.Request) -> Alert:
    raw = request.match_info["alert_id"]
    wellformed = raw.isascii() and raw.isdigit() and len(raw) < 12  # '²'.isdigit() is True, int('²') fails
    alert = await request.app[STORE].get_alert(int(raw)) if wellformed else None
    if alert is None:
        raise web.HTTPNotFound()
    return alert


@routes.get(r"/console/alerts/{alert_id}")
@auth(Auth.SESSION)
async def alert_page(request: web.Request) -> web.Response:
    store = request.app[STORE]
    alert = await _alert_or_404(request)
    context: dict[str, Any] = dict(alert=alert, escalation=await store.get_escalation(alert.id),
                   pages=await store.pages_for(alert.id), timeline=await store.timeline(alert.id),
                   mask=mask, message=_message(request))
    return page(request, "alert_live.html" if _partial(request) else "alert.html", **context)


_ACTIONS = ("acknowledge", "resolve", "escalate", "raise-priority")


@routes.post(r"/console/alerts/{alert_id}/{action}")
@auth(Auth.SESSION, role=Role.RESPONDER)
async def alert_action(request: web.Request) -> web.StreamResponse:
    alert = await _alert_or_404(request)
    action = request.match_info["action"]
    if action not in _ACTIONS:
        raise web.HTTPNotFound()
    by = f"{request[sessions.SESSION].token.name} (console)"
    service = request.app[ALERTS]
    message = ""
    try:
        if action == "raise-priority":
            await service.raise_priority(alert.id, by=by)
        else:
            await service.command(alert.id, action, by=request[sessions.SESSION].token.name, via="console")
    except DomainError as exc:
        message = exc.error if exc.error in MESSAGES else "refused"
    raise _back(f"/console/alerts/{alert.id}", message)


# ------------------------------------------------------------------ on call


@routes.get("/console/oncall")
@auth(Auth.SESSION)
async def oncall_page(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    now = request.app[CLOCK].now()
    teams = await _teams(request)
    at = datetime.fromtimestamp(now, tz=UTC)
    rows = []
    for team in teams.values():
        answer = who_is_on_call(team, at)
        layer = active_layer(team, at)
        rows.append(dict(team=team, now=answer, picture=picture(config, team, now, request.app[ROSTER].engineer),
                         until=answer.until.timestamp() if answer.until else None,
                         layer=layer.name if layer is not None else None))
    roster = request.app[ROSTER]  # a directory team's people, besides the configured engineers
    people = {m: e for t in teams.values() for m in t.members if (e := roster.engineer(m)) is not None}
    context: dict[str, Any] = dict(rows=rows, engineers={**people, **config.engineers},
                                   message=_message(request),
                   overrides=await _stored_overrides(request))
    return page(request, "oncall_live.html" if _partial(request) else "oncall.html", **context)


async def _teams(request: web.Request) -> dict[str, Any]:
    """The teams with every override, the config's and those added at run time."""
    return {team.id: team for team in request.app[SCHEDULE].teams()}


async def _stored_overrides(request: web.Request) -> list[Any]:
    schedule = request.app[SCHEDULE]
    return [o for team in request.app[CONFIG].teams for o in schedule.stored(team)]


def _utc(raw: object) -> datetime | None:
    """A ``datetime-local`` field read as UTC."""
    try:
        moment = datetime.fromisoformat(str(raw))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@routes.post("/console/oncall/{team}/overrides")
@auth(Auth.SESSION, role=Role.RESPONDER)
async def add_override(request: web.Request) -> web.StreamResponse:
    """Checked by the API's own rules (gateway.web.overrides.check_new), its limit on live overrides too."""
    config = request.app[CONFIG]
    team = request.match_info["team"]
    if team not in config.teams:
        raise web.HTTPNotFound()
    form = await request.post()
    start, end = _utc(form.get("start", "")), _utc(form.get("end", ""))
    if start is None or end is None:
        raise _back("/console/oncall", "override_end" if start else "override_start")
    now = request.app[CLOCK].now()
    try:
        new = check_new(config, request.app[SCHEDULE], team, role=form.get("role"), engineer=form.get("engineer"),
                        start=start, end=end, now=now,
                        created_by=f"{request[sessions.SESSION].token.name} (console)")
    except ApiError as exc:
        field = str(exc.details.get("field", ""))
        code = "override_limit" if exc.status == 409 else f"override_{field}"
        raise _back("/console/oncall", code if code in MESSAGES else "refused") from None
    await request.app[SCHEDULE].add(new, now=now)
    request.app[HUB].publish("oncall", team=team)
    raise web.HTTPSeeOther(f"/console/oncall#team-{team}")


# ------------------------------------------------------------------ hotline


@routes.get("/console/hotline")
@auth(Auth.SESSION)
async def hotline_page(request: web.Request) -> web.Response:
    store = request.app[STORE]
    calls = await store.list_alerts(source=HOTLINE, limit=100)
    waiting = await store.list_alerts(source=HOTLINE, status=AlertStatus.TRIGGERED, limit=100)
    ids = [a.id for a in calls]
    pages: dict[int, list[Any]] = {i: [] for i in ids}
    for found in await store.pages_for_alerts(ids):  # one query for every call, not one per call
        pages[found.alert_id].append(found)
    voicemails = {entry.alert_id: entry.message for entry in await store.timelines_for_alerts(ids)
                  if "voicemail (" in entry.message}  # oldest first: the latest voicemail wins
    context: dict[str, Any] = dict(waiting=waiting, calls=calls, pages=pages, voicemails=voicemails, mask=mask,
                   hotlines=request.app[CONFIG].hotlines)
    return page(request, "hotline_live.html" if _partial(request) else "hotline.html", **context)


# ------------------------------------------------------------------- system


@routes.get("/console/system")
@auth(Auth.SESSION)
async def system_page(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    store = request.app[STORE]
    dispatcher = request.app[PAGING].dispatcher
    try:
        await store.ping()
        store_state = "ok"
    except Exception:
        log.exception("console: the store did not answer a ping")  # the details for the logs, not the page
        store_state = "store not reachable"
    problem = request.app[CLUSTER].problem
    gateways: list[dict[str, Any]] = []
    if config.store_url is not None:
        from gateway.pg_store import PgStore

        if isinstance(store, PgStore):
            gateways = await store.gateways()
    try:
        version = importlib.metadata.version("oncall-telephony-gateway")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    context: dict[str, Any] = dict(
        queues=dispatcher.stats(), in_flight=dispatcher.in_flight, capacity=dispatcher.capacity,
        reserved=dispatcher.reserved_for_high, provider=dispatcher.provider.name,
        checks=request.app[PROVIDERS].readiness(), store_kind="PostgreSQL" if config.store_url else "SQLite",
        store_where=describe_store(config), store_state=store_state, cluster=problem or "ok", version=version,
        gateways=gateways,
    )
    return page(request, "system_live.html" if _partial(request) else "system.html", **context)


# ---------------------------------------------------------- sandbox phones


def _phones(request: web.Request) -> list[dict[str, Any]]:
    config, sandbox = request.app[CONFIG], request.app[SANDBOX]
    owners = {phone: eng.name for eng in config.engineers.values() for phone in eng.phones}
    by_number = request.app[ROSTER].by_number  # a directory team's people ring here too
    owners.update({n: found.name for n in sandbox.phones if n not in owners and (found := by_number(n)) is not None})
    numbers = list(owners)
    numbers += [n for n in sandbox.phones if n not in owners]
    shown = []
    for number in numbers:
        phone = sandbox.phones.get(number)
        state = describe(phone) if phone is not None else {"number": number, "call": None, "calls": 0, "sms": []}
        shown.append({**state, "owner": owners.get(number, ""), "quoted": quote(number, safe="")})
    return shown


@routes.get("/console/phones")
@auth(Auth.SESSION)
async def phones_page(request: web.Request) -> web.Response:
    if SANDBOX not in request.app:
        raise web.HTTPNotFound()
    context: dict[str, Any] = dict(phones=_phones(request), hotlines=request.app[CONFIG].hotlines,
                   message=_message(request))
    return page(request, "phones_live.html" if _partial(request) else "phones.html", **context)


_PHONE_ACTIONS = ("answer", "press", "reject", "hangup", "reply", "dial")


@routes.post("/console/dial")
@auth(Auth.SESSION, role=Role.RESPONDER)
async def dial(request: web.Request) -> web.StreamResponse:
    """The dial pad: any number (a caller's phone) calls another (a hotline)."""
    if SANDBOX not in request.app:
        raise web.HTTPNotFound()
    form = await request.post()
    region = request.app[CONFIG].default_region
    message = ""
    try:
        caller = normalize(str(form.get("from", "")), region)
        await request.app[SANDBOX].dial(caller, normalize(str(form.get("to", "")), region))
    except InvalidNumber:
        message = "bad_number"
    except PhoneError:
        message = "phone_state"
    raise _back("/console/phones", message)


@routes.post("/console/phones/{number}/{action}")
@auth(Auth.SESSION, role=Role.RESPONDER)
async def phone_action(request: web.Request) -> web.StreamResponse:
    if SANDBOX not in request.app:
        raise web.HTTPNotFound()
    sandbox, config = request.app[SANDBOX], request.app[CONFIG]
    action = request.match_info["action"]
    if action not in _PHONE_ACTIONS:
        raise web.HTTPNotFound()
    form = await request.post()
    message = ""
    try:
        number = normalize(request.match_info["number"], config.default_region)
        if action == "answer":
            await sandbox.answer(number)
        elif action == "reject":
            await sandbox.reject(number)
        elif action == "hangup":
            await sandbox.hangup(number)
        elif action == "press":
            digits = str(form.get("digits", ""))
            if not digits or len(digits) > 20 or any(c not in "0123456789*#" for c in digits):
                return refusal(request, 422, "Keys: 1 to 20 of 0-9, * and #.")
            await sandbox.press(number, digits)
        elif action == "reply":
            text = str(form.get("text", "")).strip()
            if not text or len(text) > 1600:
                return refusal(request, 422, "An SMS of 1 to 1600 characters.")
            answer = await sandbox.reply(number, text)
            message = "sms_answered" if answer else ""
        else:
            await sandbox.dial(number, normalize(str(form.get("to", "")), config.default_region))
    except InvalidNumber:
        message = "bad_number"
    except PhoneError:
        message = "phone_state"
    raise _back("/console/phones", message)
