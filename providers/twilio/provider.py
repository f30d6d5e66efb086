"""Twilio as a voice and SMS provider: REST to place calls, webhooks to run the flows.

Twilio drives a call by fetching TwiML from our webhooks; every webhook turns
into one flow event that the call-session runner (:mod:`providers.call_session`)
feeds to the call's flow, and the actions that come back are answered as
TwiML (see :mod:`providers.twilio.twiml`). The runner owns the flow's state,
the outcome mapping and every report (a result once, a caller waiting once per
hold, a caller finished once); this module translates and runs Twilio:

- An accepted screening call waits in the conference named after its own call
  (a ``Bridge`` to itself is added to its TwiML).
- A hotline caller on ``Hold`` loops through the hold URL. ``notify`` queues
  the flow's next actions as TwiML and redirects the live call to the hold
  URL, which hands them out (also on the next loop if that redirect was lost).
- When one leg of a bridge ends, the other is hung up.
- Answering-machine detection runs only on alert calls, and asynchronously:
  the message starts at once and a machine verdict ends the call later (see
  :meth:`TwilioProvider.on_amd`). Screening calls (hotline engineer legs) get
  none: the press of 1 proves a person, and the caller is not kept waiting.
- A create whose answer was lost may have placed the call: it is looked up in
  the account's call log before it is ever sent again (see
  :meth:`TwilioProvider.place_call`).
- The credentials are checked at open and every few minutes
  (:mod:`providers.twilio.account`); ``readiness()`` shows the result.
- Every live call's session is kept in the gateway's store with what its next
  webhook needs (:class:`providers.twilio.call.TwilioCall`): a gateway that
  restarts serves the webhooks of calls placed or answered before, and a
  call's final status then ends it, reported once.

Webhook handlers receive the form fields already checked against the
signature (:mod:`providers.twilio.webhooks`); anything unknown, finished or
replayed is answered with TwiML that ends the call, and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import phonenumbers
from aiohttp import web
from phonenumbers import NumberParseException

from core.phone import caller_number
from core.phone import mask as mask_number
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NoInput,
    Record,
    RecordingFinished,
)
from ivr_flows.screening import ScreeningFlow
from providers.base import (
    CallOutcome,
    CallRequest,
    Capabilities,
    InboundCall,
    InboundSms,
    ProviderError,
    ProviderEvents,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
)
from providers.call_session import CallSessions, SessionStore
from providers.twilio.account import DEFAULT_CHECK_INTERVAL_S, AccountCheck
from providers.twilio.call import TwilioCall
from providers.twilio.public_url import public_url_problems
from providers.twilio.rest import (
    DEFAULT_REQUEST_TIMEOUT_S,
    Placed,
    RetryPolicy,
    TwilioRest,
    TwilioRestError,
)
from providers.twilio.settings import TwilioSettings
from providers.twilio.twiml import joined, render, render_hangup, render_message
from providers.twilio.webhooks import Form, TwilioWebhooks

log = logging.getLogger(__name__)

NOT_IN_SERVICE = "The number you have dialled is not in service."

#: final ``CallStatus`` values other than ``completed``, and what they mean for an outbound call
_UNANSWERED = {
    "busy": (CallOutcome.BUSY, "line busy"),
    "no-answer": (CallOutcome.NO_ANSWER, "rang out"),
    "failed": (CallOutcome.FAILED, "call failed"),
    "canceled": (CallOutcome.CANCELED, "call canceled"),
}
_FINAL_CALL_STATUSES = frozenset({"completed", *_UNANSWERED})
_SMS_STATUSES = {
    "sent": SmsStatus.SENT,
    "delivered": SmsStatus.DELIVERED,
    "undelivered": SmsStatus.FAILED,
    "failed": SmsStatus.FAILED,
}
#: how a withheld caller id reaches a webhook: words, or the word spelled on a keypad
_NOTHING = render((), gather_action_url="")  # an empty <Response/>: the answer to status callbacks
_MEMORY = 1000  # finished call ids and SMS statuses remembered, to tell replays from strangers
# Twilio sends a recording's action and the call's final status at about the same time, in either order
# (and no action at all for an empty recording): the status waits this long for the action.
RECORD_GRACE_S = 3.0
# A create whose answer was lost is looked for among the calls (messages) Twilio created since its first
# attempt, less this much for the clocks of the gateway and Twilio to differ (Twilio's times are whole seconds).
CLOCK_SKEW = timedelta(seconds=30)


class TwilioProvider:
    """Voice (outbound and hotline) and SMS through Twilio; implements VoiceProvider and SmsProvider."""

    name = "twilio"

    def __init__(
        self,
        config: TwilioSettings,
        *,
        public_url: str,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        account_check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        session_store: SessionStore | None = None,
        shared_sessions: bool = False,
    ) -> None:
        """``request_timeout_s`` bounds each REST request; ``wall_clock`` is compared with Twilio's times;
        ``session_store`` keeps each live call's session (the gateway's store), so calls outlive a restart."""
        self.config = config
        self.public_url = public_url.rstrip("/")
        self.capabilities = Capabilities(
            voice=True,
            sms=True,
            inbound_voice=True,
            inbound_sms=True,
            max_concurrent_calls=config.max_concurrent_calls,
            calls_per_second=config.calls_per_second,
            calls_outlive_gateway=True,
        )
        self.events: ProviderEvents | None = None
        # Shared: several gateways on one store serve these calls' webhooks (behind one public_url).
        self.sessions = CallSessions(provider="twilio", store=session_store, shared=shared_sessions)
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._request_timeout_s = request_timeout_s
        self._account_check_interval_s = account_check_interval_s
        self._wall_clock = wall_clock
        self._rest: TwilioRest | None = None
        self._account: AccountCheck | None = None
        # Twilio signs webhooks with the auth token; SignalWire and others may use a separate signing key.
        self._webhooks = TwilioWebhooks(self, auth_token=config.signing_key or config.auth_token,
                                        public_url=self.public_url)
        self._region = _region_of(config.from_number)
        self._calls: dict[str, TwilioCall] = {}  # the live calls this process has served
        self._arriving: set[str] = set()
        self._gone_while_arriving: set[str] = set()  # hung up while the gateway was still answering
        self.record_grace_s = RECORD_GRACE_S
        self._finished: dict[str, None] = {}
        self._sms_seen: dict[str, SmsStatus] = {}
        self._sids: dict[str, None] = {}  # CallSids and MessageSids of ours: a lookup never adopts them twice
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"TwilioProvider(account_sid={self.config.account_sid!r}, public_url={self.public_url!r})"

    # ------------------------------------------------------------ lifecycle

    def routes(self, *, voice: bool = True) -> list[web.RouteDef]:
        """The webhooks; ``voice=False`` when Twilio only carries SMS (voice on Asterisk)."""
        return self._webhooks.routes(voice=voice)

    def on_signature_refused(self, count: Callable[[str], None]) -> None:
        """``count(reason)`` for each webhook refused ("missing", "mismatch" or "unreadable"): a metric."""
        self._webhooks.on_refused = count

    async def open(self, events: ProviderEvents) -> None:
        """Open the REST client and start the credential check; never waits for Twilio."""
        if self._rest is None:
            for problem in public_url_problems(self.public_url):
                log.warning("twilio: %s", problem)
            rest = TwilioRest(
                account_sid=self.config.account_sid,
                auth_token=self.config.auth_token,
                api_base_url=self.config.api_base_url,
                retry=self._retry,
                request_timeout_s=self._request_timeout_s,
                sleep=self._sleep,
            )
            await rest.open()
            self._rest = rest
            self._account = AccountCheck(rest.fetch_account, interval_s=self._account_check_interval_s)
            self._account.start()
        self.events = self.sessions.events = events

    async def close(self) -> None:
        """Stop; the calls go on at Twilio, and their sessions stay in the store for the next start."""
        account, self._account = self._account, None
        if account is not None:
            await account.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        rest, self._rest = self._rest, None
        if rest is not None:
            await rest.close()
        self._calls.clear()
        self.sessions.forget()

    def readiness(self) -> dict[str, str]:
        """``ok`` once the credentials were checked and work; else what is wrong (see AccountCheck)."""
        if self._rest is None or self.events is None or self._account is None:
            return {"voice:twilio": "not open"}
        return {"voice:twilio": self._account.status}

    @property
    def account_check(self) -> AccountCheck | None:
        return self._account

    # --------------------------------------------------------- provider API

    async def place_call(self, request: CallRequest) -> None:
        """Create the call; a lost answer is looked up before anything is sent again.

        When the create's answer is lost (timeout, connection dropped), the call may exist: a webhook
        carrying its CallSid settles it; else the account's calls to that number since the attempt
        are listed (``GET Calls.json?To=&From=``) and one we do not know is adopted as ours. When
        none is found the error is transient, the call stays known (its webhooks are served), and
        the dispatcher's next attempt looks again before it creates anything: Twilio may list a call
        a moment after it was made.
        """
        rest = self._open_rest()
        call = self._calls.get(request.call_id)
        if call is not None and call.unsure_since is None:
            raise ProviderError(f"call {request.call_id} is already placed")
        if call is None:
            # Stored once Twilio has taken it, with its SID (``_placed``), not before: the dial does not
            # wait for a disk write, and no webhook can come before the phone is answered.
            started = await self.sessions.start(request.call_id, outbound=True, flow=request.flow,
                                                extra={"number": request.to}, stored=False)
            call = TwilioCall(session=started.session, caller_id=request.caller_id or self.config.from_number)
            self._calls[call.call_id] = call  # webhooks may arrive before create_call returns
        elif await self._placed_earlier(call):
            return
        attempted = self._wall_clock()
        try:
            sid = await rest.create_call(
                to=request.to,
                from_=call.caller_id,
                url=self._voice_url(call.call_id, "answer"),
                status_callback=self._voice_url(call.call_id, "status"),
                timeout_s=request.ring_timeout_s,
                **self._amd(request),
            )
        except TwilioRestError as exc:
            if not exc.lost_answer:
                await self._forget_failed(call)
                raise
            call.unsure_since = call.unsure_since or attempted
            if await self._placed_earlier(call, quiet=True):
                return
            raise ProviderError(f"Twilio did not answer whether it placed call {call.call_id} to "
                                f"{mask_number(call.number)} ({exc}), and its call log does not show it yet; "
                                "it is looked up again before the next attempt", permanent=False) from None
        except ProviderError:
            await self._forget_failed(call)
            raise
        await self._placed(call, sid)

    def _amd(self, request: CallRequest) -> dict[str, Any]:
        """Answering-machine detection: asynchronous on alert calls, none on screening calls.

        A screening call (a hotline engineer's leg) proves a person by the press of 1, and synchronous
        AMD would keep the engineer (and the caller on hold) in silence for its ~2.5 s.
        """
        if not self.config.machine_detection or isinstance(request.flow, ScreeningFlow):
            return {"machine_detection": False}
        return {"machine_detection": True, "amd_status_callback": self._voice_url(request.call_id, "amd")}

    async def _placed(self, call: TwilioCall, sid: str) -> None:
        call.sid = call.sid or sid
        call.unsure_since = None
        self._remember_sid(call.sid)
        log.info("twilio call %s to %s placed (%s)", call.call_id, mask_number(call.number), call.sid)
        await self._save(call)
        if call.canceled and self._calls.get(call.call_id) is call:
            self._spawn(self._hang_up(call, "canceled while it was being placed"))

    async def _forget_failed(self, call: TwilioCall) -> None:
        """The create failed for sure: the call never existed (no result: the dispatcher has the error)."""
        if call.unsure_since is None:
            self._calls.pop(call.call_id, None)
            await self.sessions.end(call.session, CallOutcome.FAILED, "not placed", report=False)

    async def _placed_earlier(self, call: TwilioCall, *, quiet: bool = False) -> bool:
        """Did a create whose answer was lost place ``call``? Adopts the call if so.

        Raises a transient ProviderError when the lookup itself fails (``quiet``: then just False).
        """
        if call.sid:  # a webhook for it came with its CallSid
            log.info("twilio call %s: the create whose answer was lost did place the call (a webhook said so)",
                     call.call_id)
            await self._placed(call, call.sid)
            return True
        assert call.unsure_since is not None
        try:
            found = await self._open_rest().recent_calls(to=call.number, from_=call.caller_id)
        except ProviderError as exc:
            if quiet:
                log.warning("twilio call %s: looking up the call whose answer was lost failed: %s", call.call_id, exc)
                return False
            raise ProviderError(f"Twilio call {call.call_id}: cannot tell whether the earlier attempt placed it "
                                f"({exc}); not creating it again yet", permanent=False) from None
        sid = self._unknown_since(found, call.unsure_since)
        if not call.sid and sid is None:
            log.info("twilio call %s to %s: not in the account's call log; it was not placed", call.call_id,
                     mask_number(call.number))
            return False
        log.info("twilio call %s: the create whose answer was lost placed the call; adopting it", call.call_id)
        await self._placed(call, call.sid or sid or "")
        return True

    def _unknown_since(self, found: list[Placed], since: datetime, body: str | None = None) -> str | None:
        """The oldest call (message) created since ``since`` whose sid is none of ours (and whose body is)."""
        fresh = [p for p in found if p.sid not in self._sids and (p.created is None or p.created >= since - CLOCK_SKEW)
                 and (body is None or p.body == body)]
        fresh.sort(key=lambda p: p.created or since)
        return fresh[0].sid if fresh else None

    def forget(self, call_id: str) -> None:
        """Another gateway served this call to its end: drop this process's copy."""
        self._calls.pop(call_id, None)
        self.sessions.ended_elsewhere(call_id)

    async def cancel_call(self, call_id: str) -> None:
        """Hang it up; its final status then reports it canceled (unless it had its result already)."""
        call = await self._find(call_id)
        if call is None or call.canceled:
            return
        call.canceled = True
        await self._save(call)
        if call.sid:  # else: hung up as soon as create_call answers
            await self._hang_up(call, "canceled by the gateway")

    async def notify(self, call_id: str, event: Event) -> None:
        call = await self._find(call_id)
        if call is None or call.canceled or not call.answered:
            log.info("twilio call %s: %s ignored, the call is not up", call_id, type(event).__name__)
            return
        queued = call.pending
        await self._advance(call, event, queue=True)
        if call.pending != queued:  # the step had something to say: take the caller off hold for it
            call.redirecting = True
            self._spawn(self._redirect(call))

    async def send_sms(self, request: SmsRequest) -> None:
        """Send it; when the answer is lost, the account's messages are looked up before giving up.

        A message to the same number, from the same sender, with the same body, created since the
        attempt and not known as one of ours, is taken as this one. Otherwise the error is transient
        and the SMS may be sent again by whoever retries it.
        """
        rest = self._open_rest()
        sender = request.sender or self.config.from_number
        attempted = self._wall_clock()
        try:
            sid = await rest.send_sms(
                to=request.to,
                from_=sender,
                body=request.body,
                status_callback=f"{self.public_url}/twilio/sms/{quote(request.sms_id, safe='')}/status",
            )
        except TwilioRestError as exc:
            if not exc.lost_answer:
                raise
            try:
                found = await rest.recent_messages(to=request.to, from_=sender)
            except ProviderError as lookup:
                raise ProviderError(f"Twilio SMS {request.sms_id}: the answer was lost ({exc}) and the lookup "
                                    f"failed ({lookup})", permanent=False) from None
            adopted = self._unknown_since(found, attempted, body=request.body)
            if adopted is None:
                raise ProviderError(f"Twilio SMS {request.sms_id}: the answer was lost ({exc}) and no such "
                                    "message is in the account's log: not sent", permanent=False) from None
            log.info("twilio SMS %s: the send whose answer was lost did create %s", request.sms_id, adopted)
            sid = adopted
        self._remember_sid(sid)
        log.info("twilio SMS %s to %s sent", request.sms_id, mask_number(request.to))

    # ------------------------------------------------- webhooks: our calls

    async def on_answer(self, call_id: str, form: Form) -> str:
        call = await self._found(call_id, form, "answer")
        if call is None or not call.outbound or call.answered or call.canceled:
            return self._polite(call_id, "answer", call)
        call.answered = call.in_progress = True
        answered_by = form.get("AnsweredBy", "")
        log.info("twilio call %s answered%s", call_id, f" by {answered_by}" if answered_by else "")
        return await self._respond(call, Answered(machine=_is_machine(answered_by)))

    async def on_gather(self, call_id: str, form: Form) -> str:
        call = await self._found(call_id, form, "gather")
        if call is None or call.expecting != "gather" or call.canceled:
            return self._polite(call_id, "gather", call)
        digits = form.get("Digits", "")
        return await self._respond(call, DigitsReceived(digits=digits) if digits else NoInput())

    async def on_record(self, call_id: str, form: Form) -> str:
        call = await self._found(call_id, form, "record")
        if call is None or call.expecting != "record" or call.canceled:
            return self._polite(call_id, "recording", call)
        url = form.get("RecordingUrl", "")
        if not url:
            log.warning("twilio call %s: the recording came back without a URL; ending the call", call_id)
            call.expecting = ""
            await self._save(call)
            return render_hangup()
        duration = int(form["RecordingDuration"]) if form.get("RecordingDuration", "").isdigit() else 0
        log.info("twilio call %s: recording of %d s received", call_id, duration)
        return await self._respond(call, RecordingFinished(url=url, duration_s=duration))

    async def on_hold(self, call_id: str, form: Form, *, redirected: bool = False) -> str:
        """The hold loop, and where a redirected call fetches what ``notify`` queued.

        While our REST redirect is on its way, the loop keeps holding: the redirect's own fetch takes
        what is queued. Were the loop to take it first, the redirect would arrive after and find nothing
        (a caller just bridged or recording would be cut off). If the redirect fails for good, the loop
        delivers instead.
        """
        call = await self._found(call_id, form, "hold")
        if call is None or call.canceled:
            return self._polite(call_id, "hold", call)
        if redirected:
            call.redirecting = False
        pending = call.pending
        if pending and (redirected or not call.redirecting):
            call.pending = ""
            await self._save(call)
            return pending
        holding = call.session.waiting and not call.session.reported
        if call.music and (pending or holding):  # (pending: keep holding until the redirect arrives)
            return self._twiml(call, [Hold(music=call.music)])
        return self._polite(call_id, "hold", call)

    async def on_call_status(self, call_id: str, form: Form) -> str:
        """The status callback of a call we placed."""
        call = await self._found(call_id, form, "status callback")
        if call is None or not call.outbound:
            return self._polite(call_id, "status callback", call)
        status = form.get("CallStatus", "")
        if status not in _FINAL_CALL_STATUSES:
            if status == "in-progress" and not call.in_progress:
                call.in_progress = True
                await self._save(call)
            return _NOTHING
        if call.canceled:
            outcome, detail = CallOutcome.CANCELED, "canceled by the gateway"
        elif status == "completed":
            if not call.session.reported:
                if not call.answered and _is_machine(form.get("AnsweredBy", "")):
                    call.answered = True
                    await self.sessions.advance(call.session, Answered(machine=True))
                else:
                    await self.sessions.advance(call.session, HungUp(cause="hung up"))
            outcome, detail = CallOutcome.NO_ANSWER, "hung up"
        else:
            outcome, detail = _UNANSWERED[status]
            sip = form.get("SipResponseCode", "")
            detail = f"{detail} (SIP {sip})" if sip else detail
        log.info("twilio call %s to %s over: %s", call_id, mask_number(call.number), status)
        await self._end(call, outcome, detail)
        return _NOTHING

    async def on_amd(self, call_id: str, form: Form) -> str:
        """The asynchronous AMD verdict (``AsyncAmdStatusCallback``) of an alert call.

        A machine or fax ends the call (REST ``Status=completed``) and the call counts as not answered
        by a person: it never acknowledges, and keys posted after the verdict change nothing.
        ``human`` and ``unknown`` change nothing. A press of 1 that came *before* a machine verdict
        stands: a person pressed it while the detector was still listening (AMD needs seconds of
        audio; a greeting does not press keys), so the call is already reported and the verdict is
        only logged.
        """
        call = await self._found(call_id, form, "AMD callback")
        answered_by = form.get("AnsweredBy", "")
        if call is None or not call.outbound or call.canceled:
            log.info("twilio AMD verdict %s for call %s ignored: the call is not up", answered_by or "-", call_id)
            return _NOTHING
        if not _is_machine(answered_by):
            log.info("twilio call %s: AMD says %s", call_id, answered_by or "nothing")
            return _NOTHING
        if call.session.reported:
            outcome = call.session.flow_outcome.value if call.session.flow_outcome else "its result"
            log.info("twilio call %s: AMD says %s after %s; the result stands", call_id, answered_by, outcome)
            return _NOTHING
        # Over for the gateway now: a gather posted after the verdict, and the final status, end politely.
        call.canceled = True
        self._spawn(self._hang_up(call, f"AMD says {answered_by}"))
        await self._end(call, CallOutcome.MACHINE, f"answered by {answered_by}")
        return _NOTHING

    # ----------------------------------------------- webhooks: the hotline

    async def on_inbound_call(self, form: Form) -> str:
        sid = form.get("CallSid", "")
        call_id = f"tw-{sid}"
        if not sid or call_id in self._finished or call_id in self._arriving or await self._find(call_id):
            return self._polite(call_id, "inbound call", self._calls.get(call_id))
        caller = caller_number(form.get("From", ""), self._region)
        dialled = caller_number(form.get("To", ""), self._region)
        who = mask_number(caller) if caller else "a withheld number"
        if self.events is None:
            log.warning("twilio call %s from %s: the provider is not open; ending it", call_id, who)
            return render_hangup(NOT_IN_SERVICE)
        call: TwilioCall | None = None
        self._arriving.add(call_id)  # until its session is known: a final status now is the caller gone
        try:
            flow = await self.events.inbound_call(InboundCall(call_id=call_id, caller=caller, dialled=dialled))
            if flow is not None:
                started = await self.sessions.start(call_id, outbound=False, flow=flow,
                                                    extra={"sid": sid, "number": caller, "answered": "1",
                                                           "in_progress": "1"})
                call = self._calls[call_id] = TwilioCall(session=started.session)
        finally:
            self._arriving.discard(call_id)
        if call_id in self._gone_while_arriving:
            self._gone_while_arriving.discard(call_id)
            log.info("twilio call %s from %s hung up before the hotline answered", call_id, who)
            if call is not None:
                await self._end(call, CallOutcome.NO_ANSWER)  # the caller finished: abandoned
            self._remember(call_id)
            return render_hangup()
        if call is None:
            log.info("twilio call %s from %s to %s: not a hotline", call_id, who, mask_number(dialled))
            self._remember(call_id)
            return render_hangup(NOT_IN_SERVICE)
        log.info("twilio call %s from %s to hotline %s", call_id, who, mask_number(dialled))
        return await self._respond(call, Answered())

    async def on_inbound_status(self, form: Form) -> str:
        """The hotline number's status callback: the caller's call is over."""
        call_id = f"tw-{form.get('CallSid', '')}"
        status = form.get("CallStatus", "")
        if call_id in self._arriving:
            if status in _FINAL_CALL_STATUSES:
                self._gone_while_arriving.add(call_id)  # on_inbound_call finishes it when the gateway answers
            return _NOTHING
        call = await self._find(call_id)
        if call is None or call.outbound:
            return self._polite(call_id, "status callback", None)
        if status not in _FINAL_CALL_STATUSES:
            return _NOTHING
        if call.expecting == "record" and not call.session.reported and not call.ending:
            call.ending = True  # give the recording's action a moment to arrive first
            self._spawn(self._finish_caller_later(call, status))
            return _NOTHING
        await self._finish_caller(call, status)
        return _NOTHING

    async def _finish_caller_later(self, call: TwilioCall, status: str) -> None:
        await asyncio.sleep(self.record_grace_s)
        if self._calls.get(call.call_id) is call:
            await self._finish_caller(call, status)

    async def _finish_caller(self, call: TwilioCall, status: str) -> None:
        if not call.session.reported:
            await self.sessions.advance(call.session, HungUp(cause=status))
        log.info("twilio call %s from %s over: %s", call.call_id,
                 mask_number(call.number) if call.number else "a withheld number", status)
        await self._end(call, CallOutcome.NO_ANSWER)  # for a caller, only the flow's outcome counts

    # ---------------------------------------------------------- webhooks: SMS

    async def on_sms(self, form: Form) -> str:
        sender = caller_number(form.get("From", ""), self._region)
        to = caller_number(form.get("To", ""), self._region)
        if self.events is None:
            log.warning("twilio SMS from %s: the provider is not open; ignored", mask_number(sender))
            return render_message("")
        reply = await self.events.sms_received(InboundSms(sender=sender, to=to, text=form.get("Body", "")))
        return render_message(reply.text)

    async def on_sms_status(self, sms_id: str, form: Form) -> str:
        status = _SMS_STATUSES.get(form.get("MessageStatus") or form.get("SmsStatus", ""))
        if status is None:
            return render_message("")  # queued, accepted, sending: nothing to say yet
        seen = self._sms_seen.get(sms_id)
        if seen == status or seen in (SmsStatus.DELIVERED, SmsStatus.FAILED):
            log.info("twilio SMS %s: %s after %s ignored", sms_id, status.value, seen.value)
            return render_message("")
        self._sms_seen[sms_id] = status
        _trim(self._sms_seen)
        code = form.get("ErrorCode", "")
        detail = f"Twilio error {code}" if code else ""
        log.info("twilio SMS %s %s%s", sms_id, status.value, f" ({detail})" if detail else "")
        if self.events is not None:
            try:
                await self.events.sms_status(SmsStatusChanged(sms_id=sms_id, status=status, detail=detail))
            except Exception:
                log.exception("twilio SMS %s: reporting %s failed", sms_id, status.value)
        return render_message("")

    # ------------------------------------------------- flow steps -> TwiML

    async def _respond(self, call: TwilioCall, event: Event) -> str:
        """The TwiML answer to a webhook: the step ``event`` leads to."""
        twiml = await self._advance(call, event)
        return render_hangup() if twiml is None else twiml

    async def _advance(self, call: TwilioCall, event: Event, *, queue: bool = False) -> str | None:
        """Feed ``event`` to the call's flow through the runner; the step's TwiML, or None if none was rendered.

        ``queue``: the TwiML is for the next fetch of the hold URL (a gateway event, not a webhook).
        The call's own fields are stored before the runner reports the step.
        """
        reached = call.session.flow_outcome
        rendered: list[str] = []

        async def render_step(flow_actions: tuple[Action, ...]) -> None:
            accepted = reached is None and call.session.flow_outcome == FlowOutcome.ACCEPTED
            actions = await self._translated(call, flow_actions, accepted=accepted)
            if not actions and not queue:
                log.warning("twilio call %s: the flow had nothing to say; the call ends", call.call_id)
            twiml = self._twiml(call, actions)
            if queue and actions:
                call.pending = joined(call.pending, twiml)
            rendered.append(twiml)
            await self._save(call)

        call.changed = False  # the runner stores the session (its extra too) before it renders
        await self.sessions.advance(call.session, event, render=render_step)
        return rendered[0] if rendered else None

    async def _translated(self, call: TwilioCall, flow_actions: tuple[Action, ...], *,
                          accepted: bool) -> list[Action]:
        """The flow's actions as Twilio runs them; notes which verb's action may post next."""
        actions = list(flow_actions)
        if call.outbound and accepted and not _has(actions, Hangup):
            actions.append(Bridge(call_id=call.call_id))  # wait in the room the caller joins
        if actions:
            call.expecting = ""
        for index, action in enumerate(actions):
            if isinstance(action, Gather):
                call.expecting = "gather"
            elif isinstance(action, Record):
                call.expecting = "record"
            elif isinstance(action, Hold):
                call.music = action.music
            elif isinstance(action, Bridge) and action.call_id != call.call_id and not await self._link(call, action):
                actions[index] = Hangup()
        return actions

    async def _link(self, call: TwilioCall, bridge: Bridge) -> bool:
        other = await self._find(bridge.call_id)
        if other is None or other.canceled:
            log.warning("twilio call %s: cannot bridge to %s, that call is not up; ending it",
                        call.call_id, bridge.call_id)
            return False
        call.linked, other.linked = other.call_id, call.call_id
        await self._save(other)
        log.info("twilio call %s: bridging to %s", call.call_id, other.call_id)
        return True

    def _twiml(self, call: TwilioCall, actions: list[Action]) -> str:
        return render(
            actions,
            gather_action_url=self._voice_url(call.call_id, "gather"),
            record_action_url=self._voice_url(call.call_id, "record"),
            hold_url=self._voice_url(call.call_id, "hold"),
        )

    # --------------------------------------------------------------- helpers

    async def _find(self, call_id: str) -> TwilioCall | None:
        """The live call ``call_id``: served by this process, or (after a restart) from the store."""
        call = self._calls.get(call_id)
        if call_id in self._finished or (call is not None and not self.sessions.shared):
            return call  # (finished: its session may be ending now)
        session = await self.sessions.find(call_id)  # shared: as another gateway may have left it
        if session is None or session.ended:
            if call is not None:
                self._calls.pop(call_id, None)  # it ended at another gateway
            return None
        if call is not None and call.session is session:
            return call
        # Two webhooks may have loaded it at once: the first one kept is the call for both.
        return self._calls.setdefault(call_id, TwilioCall(session=session))

    async def _found(self, call_id: str, form: Form, what: str) -> TwilioCall | None:
        """The live call ``call_id`` if the webhook's CallSid is its own."""
        call = await self._find(call_id)
        if call is None:
            return None
        sid = form.get("CallSid", "")
        if not call.sid and sid and sid not in self._sids:
            call.sid = sid  # the webhook beat create_call's answer
            self._remember_sid(sid)
            await self._save(call)
        elif sid != call.sid:
            log.warning("twilio %s for call %s carries another CallSid; ignored", what, call_id)
            return None
        return call

    async def _save(self, call: TwilioCall) -> None:
        """Store the call's session if its own fields changed since it was last stored."""
        if call.changed:
            call.changed = False
            await self.sessions.save(call.session)

    def _polite(self, call_id: str, what: str, call: TwilioCall | None) -> str:
        """End the call: the webhook is for an unknown, finished or replayed call, and changes nothing."""
        if call is not None:
            log.info("twilio %s for call %s ignored: not expected now (replayed or late)", what, call_id)
        elif call_id in self._finished:
            log.info("twilio %s for call %s ignored: the call is over", what, call_id)
        else:
            log.warning("twilio %s for unknown call %s; ending it", what, call_id)
        return render_hangup()

    async def _end(self, call: TwilioCall, outcome: CallOutcome, detail: str = "") -> None:
        """The call is over: hang up the leg it was bridged with, and end its session (reporting once)."""
        self._calls.pop(call.call_id, None)
        self._remember(call.call_id)
        other = await self._find(call.linked) if call.linked else None
        if other is not None and not other.canceled:
            other.canceled = True
            await self._save(other)
            self._spawn(self._hang_up(other, f"the other party ({call.call_id}) hung up"))
        await self.sessions.end(call.session, outcome, detail)

    def _remember(self, call_id: str) -> None:
        self._finished[call_id] = None
        _trim(self._finished)

    def _remember_sid(self, sid: str) -> None:
        self._sids[sid] = None
        _trim(self._sids)

    async def _hang_up(self, call: TwilioCall, why: str) -> None:
        if not call.sid or self._rest is None:
            return
        log.info("twilio call %s: hanging up, %s", call.call_id, why)
        await self._rest.cancel_call(call.sid, answered=call.answered or call.in_progress)

    async def _redirect(self, call: TwilioCall) -> None:
        if not call.sid or self._rest is None:
            return
        try:
            await self._rest.redirect_call(call.sid, url=self._voice_url(call.call_id, "hold") + "?redirected=1")
        except ProviderError as exc:
            call.redirecting = False
            log.warning("twilio call %s: redirect failed (%s); the hold loop will deliver it", call.call_id, exc)

    def _open_rest(self) -> TwilioRest:
        if self._rest is None:
            raise ProviderError("the Twilio provider is not open", permanent=False)
        return self._rest

    def _voice_url(self, call_id: str, what: str) -> str:
        return f"{self.public_url}/twilio/voice/{quote(call_id, safe='')}/{what}"

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except ProviderError as exc:
                log.warning("twilio: %s", exc)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _has(actions: list[Action], kind: type) -> bool:
    return any(isinstance(action, kind) for action in actions)


def _is_machine(answered_by: str) -> bool:
    """``AnsweredBy`` of answering-machine detection: machine_start, machine_end_beep/silence/other, fax."""
    return answered_by.startswith("machine") or answered_by == "fax"


def _region_of(number: str) -> str:
    """The region national numbers are read in: that of our own Twilio number."""
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return "US"
    if parsed.country_code is None:
        return "US"
    return phonenumbers.region_code_for_country_code(parsed.country_code) or "US"


def _trim(memory: dict[str, Any]) -> None:
    """Keep the newest ``_MEMORY`` entries of an insertion-ordered dict."""
    while len(memory) > _MEMORY:
        del memory[next(iter(memory))]
