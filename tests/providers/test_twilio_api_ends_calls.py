"""The loopback Twilio API ending the calls it creates, as Twilio does: signed status callbacks.

Calls are created with the gateway's own REST client (so with the events it subscribes to), and the
callbacks are received by a small app that checks each signature with the gateway's own check.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime

from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer

from providers.twilio.rest import RetryPolicy, TwilioRest
from providers.twilio.signature import check_signature
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, EndAs, FakeTwilioApi
from tests.support import eventually

TO, FROM = "+15550000001", "+15557770002"


class App:
    """Twilio's counterpart: records every request it gets, with whether its signature held."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bool]] = []
        self.server: BaseTestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    async def handle(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        signed = check_signature(auth_token=DEFAULT_AUTH_TOKEN, public_url=str(request.url), params=form,
                                 signature=request.headers.get("X-Twilio-Signature"))
        self.received.append((request.path, form, signed))
        return web.Response(text="<Response/>", content_type="application/xml")


@asynccontextmanager
async def rig(end_as: EndAs, end_after_s: float = 0.05) -> AsyncIterator[tuple[FakeTwilioApi, TwilioRest, App]]:
    app = App()
    web_app = web.Application()
    web_app.router.add_post("/{what}", app.handle)
    async with TestServer(web_app) as server, FakeTwilioApi(end_calls_after_s=end_after_s,
                                                            end_calls_as=end_as) as api:
        app.server = server
        rest = TwilioRest(account_sid=DEFAULT_ACCOUNT_SID, auth_token=DEFAULT_AUTH_TOKEN, api_base_url=api.base_url,
                          retry=RetryPolicy(attempts=1, base_s=0.1, cap_s=0.1), request_timeout_s=5.0)
        async with rest:
            yield api, rest, app


async def create(rest: TwilioRest, app: App) -> str:
    # Every progress event subscribed (the gateway itself asks only for answered and completed).
    return await rest.create_call(to=TO, from_=FROM, url=app.url("/answer"), status_callback=app.url("/status"),
                                  timeout_s=25, machine_detection=False,
                                  status_callback_events=("initiated", "ringing", "answered", "completed"))


async def test_an_unanswered_call_reports_its_progress_then_no_answer() -> None:
    async with rig("no-answer") as (api, rest, app):
        sid = await create(rest, app)

        async def over() -> bool:
            return any(form.get("CallStatus") == "no-answer" for _, form, _ in app.received)

        await eventually(over)
        assert [(path, form["CallStatus"], form["SequenceNumber"]) for path, form, _ in app.received] == [
            ("/status", "initiated", "0"), ("/status", "ringing", "1"), ("/status", "no-answer", "2")]
        assert all(signed for _, _, signed in app.received)
        final = app.received[-1][1]
        assert {k: final[k] for k in ("CallSid", "AccountSid", "From", "To", "Direction", "ApiVersion",
                                      "CallbackSource")} == {
            "CallSid": sid, "AccountSid": DEFAULT_ACCOUNT_SID, "From": FROM, "To": TO, "Direction": "outbound-api",
            "ApiVersion": "2010-04-01", "CallbackSource": "call-progress-events"}
        assert "CallDuration" not in final
        assert parsedate_to_datetime(final["Timestamp"]).utcoffset() is not None
        assert api.call_status[sid] == "no-answer"


async def test_an_answered_call_fetches_its_twiml_and_completes_with_a_duration() -> None:
    async with rig("completed") as (api, rest, app):
        sid = await create(rest, app)

        async def over() -> bool:
            return any(form.get("CallStatus") == "completed" for _, form, _ in app.received)

        await eventually(over)
        assert [(path, form["CallStatus"]) for path, form, _ in app.received] == [
            ("/status", "initiated"), ("/status", "ringing"), ("/answer", "in-progress"),
            ("/status", "in-progress"), ("/status", "completed")]
        assert all(signed for _, _, signed in app.received)
        assert "SequenceNumber" not in app.received[2][1]  # the TwiML request is not a status callback
        assert app.received[-1][1]["SequenceNumber"] == "3"
        assert app.received[-1][1]["CallDuration"] == "0"
        assert api.call_status[sid] == "completed"


async def test_a_call_canceled_while_ringing_reports_canceled_at_once() -> None:
    async with rig("no-answer", end_after_s=600) as (api, rest, app):
        sid = await create(rest, app)

        async def ringing() -> bool:
            return any(form.get("CallStatus") == "ringing" for _, form, _ in app.received)

        await eventually(ringing)
        await rest.cancel_call(sid)

        async def over() -> bool:
            return any(form.get("CallStatus") == "canceled" for _, form, _ in app.received)

        await eventually(over)
        assert api.call_status[sid] == "canceled"

