"""The HTTP side of Twilio's webhooks: routes, the signature check, TwiML responses.

Thin on purpose: each handler checks ``X-Twilio-Signature`` against the
*public* URL (``public_url`` + the request's raw path and query, because
behind a reverse proxy ``request.url`` names the internal host) and the form
fields, then hands the fields to the provider and sends back its TwiML. A
missing or wrong signature is a 403 and reaches nothing; the refusal is logged
with the URL the signature was checked against, the path received and whether
the header was there at all, so a ``server.public_url`` that does not match
what a proxy publishes shows at once (at most one such line every few seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from aiohttp import web
from multidict import MultiDict

from core.phone import mask_numbers_in
from providers.twilio.signature import SIGNATURE_HEADER, check_signature, public_request_url
from providers.twilio.twiml import render_hangup, render_message

log = logging.getLogger(__name__)

#: a webhook's form fields (the first value of each name)
Form = Mapping[str, str]

TWIML = "text/xml"
REFUSAL_LOG_INTERVAL_S = 10.0  # refused webhooks: one log line per interval, the rest counted


class WebhookTarget(Protocol):
    """What the webhooks hand their (verified) form fields to; each returns a TwiML document."""

    async def on_inbound_call(self, form: Form) -> str: ...

    async def on_inbound_status(self, form: Form) -> str: ...

    async def on_answer(self, call_id: str, form: Form) -> str: ...

    async def on_gather(self, call_id: str, form: Form) -> str: ...

    async def on_record(self, call_id: str, form: Form) -> str: ...

    async def on_hold(self, call_id: str, form: Form, *, redirected: bool = False) -> str: ...

    async def on_call_status(self, call_id: str, form: Form) -> str: ...

    async def on_amd(self, call_id: str, form: Form) -> str: ...

    async def on_sms(self, form: Form) -> str: ...

    async def on_sms_status(self, sms_id: str, form: Form) -> str: ...


class TwilioWebhooks:
    """``routes()`` for the app; every route is a POST under ``/twilio/``."""

    def __init__(
        self,
        target: WebhookTarget,
        *,
        auth_token: str,
        public_url: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.public_url = public_url.rstrip("/")
        self._auth_token = auth_token
        self._monotonic = monotonic
        self._refusals_logged_at: float | None = None
        self._refusals_unlogged = 0
        #: told the reason of each refusal ("missing", "mismatch", "unreadable"): the gateway counts them
        self.on_refused: Callable[[str], None] | None = None

    def routes(self, *, voice: bool = True) -> list[web.RouteDef]:
        """All webhooks, or (``voice=False``, when another provider carries voice) only the SMS ones."""
        t = self.target
        sms = [
            web.post("/twilio/sms/inbound", self._sms(lambda r, f: t.on_sms(f))),
            web.post("/twilio/sms/{sms_id}/status",
                     self._sms(lambda r, f: t.on_sms_status(r.match_info["sms_id"], f))),
        ]
        if not voice:
            return sms
        return [
            *sms,
            web.post("/twilio/voice/inbound", self._voice(lambda r, f: t.on_inbound_call(f))),
            web.post("/twilio/voice/status", self._voice(lambda r, f: t.on_inbound_status(f))),
            web.post("/twilio/voice/{call_id}/answer", self._voice(lambda r, f: t.on_answer(_id(r), f))),
            web.post("/twilio/voice/{call_id}/gather", self._voice(lambda r, f: t.on_gather(_id(r), f))),
            web.post("/twilio/voice/{call_id}/record", self._voice(lambda r, f: t.on_record(_id(r), f))),
            web.post("/twilio/voice/{call_id}/hold",
                     self._voice(lambda r, f: t.on_hold(_id(r), f, redirected="redirected" in r.query))),
            web.post("/twilio/voice/{call_id}/status", self._voice(lambda r, f: t.on_call_status(_id(r), f))),
            web.post("/twilio/voice/{call_id}/amd", self._voice(lambda r, f: t.on_amd(_id(r), f))),
        ]

    def _voice(self, op: Callable[[web.Request, Form], Awaitable[str]]) -> Handler:
        return self._handler(op, fallback=render_hangup)

    def _sms(self, op: Callable[[web.Request, Form], Awaitable[str]]) -> Handler:
        return self._handler(op, fallback=lambda: render_message(""))

    def _handler(self, op: Callable[[web.Request, Form], Awaitable[str]], *, fallback: Callable[[], str]) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            form = await self._verified(request)
            if form is None:
                return web.Response(status=403, text="invalid Twilio signature")
            try:
                twiml = await op(request, form)
            except Exception:  # a bug must not become a 500 that Twilio reads out as an application error
                log.exception("twilio webhook %s failed", request.path)
                twiml = fallback()
            return web.Response(text=twiml, content_type=TWIML)

        return handle

    async def _verified(self, request: web.Request) -> Form | None:
        try:
            posted = await request.post()
        except Exception:
            log.warning("twilio webhook %s refused: unreadable body", request.path)
            self._refused("unreadable")
            return None
        params = MultiDict((name, value if isinstance(value, str) else "") for name, value in posted.items())
        url = public_request_url(self.public_url, request.raw_path)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not check_signature(auth_token=self._auth_token, public_url=url, params=params, signature=signature):
            self._log_refusal(request, url, missing=signature is None)
            self._refused("missing" if signature is None else "mismatch")
            return None
        form: dict[str, str] = {}
        for name, value in params.items():
            form.setdefault(name, value)
        return form

    def _refused(self, reason: str) -> None:
        if self.on_refused is not None:
            self.on_refused(reason)

    def _log_refusal(self, request: web.Request, checked_url: str, *, missing: bool) -> None:
        """One WARNING per interval: what was checked, against what, and how many more were refused."""
        now = self._monotonic()
        if self._refusals_logged_at is not None and now - self._refusals_logged_at < REFUSAL_LOG_INTERVAL_S:
            self._refusals_unlogged += 1
            return
        more, self._refusals_unlogged, self._refusals_logged_at = self._refusals_unlogged, 0, now
        why = f"no {SIGNATURE_HEADER} header" if missing else f"{SIGNATURE_HEADER} does not match"
        log.warning(
            "twilio webhook refused (403): %s; path received %s, signature checked against %s "
            "(server.public_url + path: it must be the URL Twilio called, as your proxy publishes it; "
            "and the auth token, or twilio.signing_key, must be the account's)%s",
            why, _shown(request.raw_path), _shown(checked_url),
            f"; {more} more refused since the last such line" if more else "",
        )


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _shown(text: str, limit: int = 300) -> str:
    """A client-sent path, fit for a log line: numbers masked, length bounded."""
    text = mask_numbers_in(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _id(request: web.Request) -> str:
    return request.match_info["call_id"]
