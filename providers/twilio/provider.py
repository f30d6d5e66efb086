"""Twilio as a voice and SMS provider: REST to place calls, webhooks to run the flows.

Twilio drives a call by fetching TwiML from our webhooks; every webhook feeds
one event to the call's flow and answers with the flow's actions rendered as
TwiML (see :mod:`providers.twilio.twiml`). The rules mirror the sandbox:

- An outbound call's :class:`CallResult` is reported once, as soon as the flow
  reaches an outcome (or the status callback says the call is over). An
  accepted screening call is reported at once while the engineer waits in the
  conference named after their own call.
- A hotline caller's :class:`Hold` reports :class:`CallerWaiting`; the caller
  then loops through the hold URL. ``notify`` queues the flow's next actions
  and redirects the live call to the hold URL, which hands them out (also on
  the next loop if that redirect was lost).
- The caller's end is reported once with :class:`CallerFinished`: when the flow
  hangs up, or when the number's status callback says the call is over.
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

Webhook handlers receive the form fields already checked against the
signature (:mod:`providers.twilio.webhooks`); anything unknown, finished or
replayed is answered with TwiML that ends the call, and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
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
    Flow,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NoInput,
    Record,
    RecordingFinished,
    Step,
)
from ivr_flows.screening import ScreeningFlow
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    CallRequest,
    CallResult,
    Capabilities,
    InboundCall,
    InboundSms,
    ProviderError,
    ProviderEvents,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
    call_outcome,
)
from providers.twilio.account import DEFAULT_CHECK_INTERVAL_S, AccountCheck
from providers.twilio.public_url import public_url_problems
from providers.twilio.rest import (
    DEFAULT_REQUEST_TIMEOUT_S,
    Placed,
    RetryPolicy,
    TwilioRest,
    TwilioRestError,
)
from providers.twilio.twiml import render, render_hangup, render_message
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

Report = CallResult | CallerWaiting | CallerFinished


class TwilioSettings(Protocol):
    """What the provider needs from the ``twilio:`` config section (``gateway.config.TwilioConfig``)."""

    @property
    def account_sid(self) -> str: ...
    @property
    def auth_token(self) -> str: ...
    @property
    def signing_key(self) -> str | None: ...
    @property
    def from_number(self) -> str: ...
    @property
    def api_base_url(self) -> str: ...
    @property
    def max_concurrent_calls(self) -> int: ...
    @property
    def calls_per_second(self) -> float: ...
    @property
    def machine_detection(self) -> bool: ...


@dataclass(kw_only=True)
class TwilioCall:
    """One call the provider runs a flow on. ``number`` is the far end (engineer or caller)."""

    call_id: str
    outbound: bool
    number: str
    flow: Flow[Any]
    state: Any
    sid: str | None = None
    answered: bool = False  # our flow has started talking (answer webhook, or an inbound call)
    in_progress: bool = False  # Twilio reported the call picked up
    expecting: str | None = None  # "gather" | "record": the verb whose action webhook may come next
    hold: Hold | None = None  # the caller loops through the hold URL with this music
    held: Hold | None = None  # the last hold, kept while a redirect takes the caller out of it
    pending: list[Action] = field(default_factory=list)  # for the next fetch of the hold URL
    flow_outcome: FlowOutcome | None = None
    recording_url: str | None = None
    linked: str | None = None  # the call bridged (or about to be bridged) with this one
    reported: bool = False  # CallResult / CallerFinished sent
    canceled: bool = False  # hung up by the gateway
    caller_id: str = ""  # the number an outbound call is placed from
    unsure_since: datetime | None = None  # a create's answer was lost at this time: placed or not, unknown
    redirecting: bool = False  # a REST redirect to the hold URL is on its way: it, not the loop, fetches `pending`
    ending: bool = False  # the final status came while a Record action may still be on its way


class TwilioProvider:
    """Voice (outbound and hotline) and SMS through Twilio; implements VoiceProvider and SmsProvider."""

    name = "twilio"

    def __init__(
        self,
        config: TwilioSettings,
        *,
        public_url: str,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        account_check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``request_timeout_s`` bounds each REST request; ``wall_clock`` is compared with Twilio's times."""
        self.config = config
        self.public_url = public_url.rstrip("/")
        self.capabilities = Capabilities(
            voice=True,
            sms=True,
            inbound=True,
            max_concurrent_calls=config.max_concurrent_calls,
            calls_per_second=config.calls_per_second,
        )
        self.events: ProviderEvents | None = None
        self._retry = retry
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
        self._calls: dict[str, TwilioCall] = {}
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
        self.events = events

    async def close(self) -> None:
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
            call = TwilioCall(call_id=request.call_id, outbound=True, number=request.to, flow=request.flow,
                              state=request.flow.start().state,
                              caller_id=request.caller_id or self.config.from_number)
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
                self._forget_failed(call)
                raise
            call.unsure_since = call.unsure_since or attempted
            if await self._placed_earlier(call, quiet=True):
                return
            raise ProviderError(f"Twilio did not answer whether it placed call {call.call_id} to "
                                f"{mask_number(call.number)} ({exc}), and its call log does not show it yet; "
                                "it is looked up again before the next attempt", permanent=False) from None
        except ProviderError:
            self._forget_failed(call)
            raise
        self._placed(call, sid)

    def _amd(self, request: CallRequest) -> dict[str, Any]:
        """Answering-machine detection: asynchronous on alert calls, none on screening calls.

        A screening call (a hotline engineer's leg) proves a person by the press of 1, and synchronous
        AMD would keep the engineer (and the caller on hold) in silence for its ~2.5 s.
        """
        if not self.config.machine_detection or isinstance(request.flow, ScreeningFlow):
            return {"machine_detection": False}
        return {"machine_detection": True, "amd_status_callback": self._voice_url(request.call_id, "amd")}

    def _placed(self, call: TwilioCall, sid: str) -> None:
        call.sid = call.sid or sid
        call.unsure_since = None
        self._remember_sid(call.sid)
        log.info("twilio call %s to %s placed (%s)", call.call_id, mask_number(call.number), call.sid)
        if call.canceled and call.call_id in self._calls:
            self._spawn(self._hang_up(call, "canceled while it was being placed"))

    def _forget_failed(self, call: TwilioCall) -> None:
        if call.unsure_since is None:
            self._calls.pop(call.call_id, None)

    async def _placed_earlier(self, call: TwilioCall, *, quiet: bool = False) -> bool:
        """Did a create whose answer was lost place ``call``? Adopts the call if so.

        Raises a transient ProviderError when the lookup itself fails (``quiet``: then just False).
        """
        if call.sid is not None:  # a webhook for it came with its CallSid
            log.info("twilio call %s: the create whose answer was lost did place the call (a webhook said so)",
                     call.call_id)
            self._placed(call, call.sid)
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
        if call.sid is None and sid is None:
            log.info("twilio call %s to %s: not in the account's call log; it was not placed", call.call_id,
                     mask_number(call.number))
            return False
        log.info("twilio call %s: the create whose answer was lost placed the call; adopting it", call.call_id)
        self._placed(call, call.sid or sid or "")
        return True

    def _unknown_since(self, found: list[Placed], since: datetime, body: str | None = None) -> str | None:
        """The oldest call (message) created since ``since`` whose sid is none of ours (and whose body is)."""
        fresh = [p for p in found if p.sid not in self._sids and (p.created is None or p.created >= since - CLOCK_SKEW)
                 and (body is None or p.body == body)]
        fresh.sort(key=lambda p: p.created or since)
        return fresh[0].sid if fresh else None

    async def cancel_call(self, call_id: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.canceled:
            return
        call.canceled = True
        if call.sid is not None:  # else: hung up as soon as create_call answers
            await self._hang_up(call, "canceled by the gateway")

    async def notify(self, call_id: str, event: Event) -> None:
        call = self._calls.get(call_id)
        if call is None or call.canceled or not call.answered:
            log.info("twilio call %s: %s ignored, the call is not up", call_id, type(event).__name__)
            return
        actions, reports = self._advance(call, event)
        if actions:
            call.pending.extend(actions)
            call.redirecting = True
            self._spawn(self._redirect(call))
        await self._emit(reports)

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
        call = self._known(call_id, form, "answer")
        if call is None or not call.outbound or call.answered or call.canceled:
            return self._polite(call_id, "answer", call)
        call.answered = call.in_progress = True
        answered_by = form.get("AnsweredBy", "")
        machine = _is_machine(answered_by)
        log.info("twilio call %s answered%s", call_id, f" by {answered_by}" if answered_by else "")
        actions, reports = self._advance(call, Answered(machine=machine))
        return await self._respond(call, actions, reports)

    async def on_gather(self, call_id: str, form: Form) -> str:
        call = self._known(call_id, form, "gather")
        if call is None or call.expecting != "gather" or call.canceled:
            return self._polite(call_id, "gather", call)
        digits = form.get("Digits", "")
        event: Event = DigitsReceived(digits=digits) if digits else NoInput()
        actions, reports = self._advance(call, event)
        return await self._respond(call, actions, reports)

    async def on_record(self, call_id: str, form: Form) -> str:
        call = self._known(call_id, form, "record")
        if call is None or call.expecting != "record" or call.canceled:
            return self._polite(call_id, "recording", call)
        url = form.get("RecordingUrl", "")
        if not url:
            log.warning("twilio call %s: the recording came back without a URL; ending the call", call_id)
            call.expecting = None
            return render_hangup()
        call.recording_url = url
        duration = int(form["RecordingDuration"]) if form.get("RecordingDuration", "").isdigit() else 0
        log.info("twilio call %s: recording of %d s received", call_id, duration)
        actions, reports = self._advance(call, RecordingFinished(url=url, duration_s=duration))
        return await self._respond(call, actions, reports)

    async def on_hold(self, call_id: str, form: Form, *, redirected: bool = False) -> str:
        """The hold loop, and where a redirected call fetches what ``notify`` queued.

        While our REST redirect is on its way, the loop keeps holding: the redirect's own fetch takes
        what is queued. Were the loop to take it first, the redirect would arrive after and find nothing
        (a caller just bridged or recording would be cut off). If the redirect fails for good, the loop
        delivers instead.
        """
        call = self._known(call_id, form, "hold")
        if call is None or call.canceled:
            return self._polite(call_id, "hold", call)
        if redirected:
            call.redirecting = False
        if call.pending and (redirected or not call.redirecting):
            actions, call.pending = call.pending, []
            return self._twiml(call, actions)
        if call.pending and call.held is not None:
            return self._twiml(call, [call.held])  # keep holding until the redirect arrives
        if call.hold is not None and not call.reported:
            return self._twiml(call, [call.hold])
        return self._polite(call_id, "hold", call)

    async def on_call_status(self, call_id: str, form: Form) -> str:
        """The status callback of a call we placed."""
        call = self._known(call_id, form, "status callback")
        if call is None or not call.outbound:
            return self._polite(call_id, "status callback", call)
        status = form.get("CallStatus", "")
        if status not in _FINAL_CALL_STATUSES:
            if status == "in-progress":
                call.in_progress = True
            return _NOTHING
        reports: list[Report] = []
        if not call.reported:
            if call.canceled:
                reports.append(self._result(call, CallOutcome.CANCELED, "canceled by the gateway"))
            elif status == "completed":
                if not call.answered and _is_machine(form.get("AnsweredBy", "")):
                    call.answered = True
                    _, reports = self._advance(call, Answered(machine=True))
                else:
                    _, reports = self._advance(call, HungUp(cause="hung up"))
                if not call.reported:
                    reports.append(self._result(call, CallOutcome.NO_ANSWER, "hung up"))
            else:
                outcome, detail = _UNANSWERED[status]
                sip = form.get("SipResponseCode", "")
                reports.append(self._result(call, outcome, f"{detail} (SIP {sip})" if sip else detail))
        log.info("twilio call %s to %s over: %s", call_id, mask_number(call.number), status)
        self._end(call)
        await self._emit(reports)
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
        call = self._known(call_id, form, "AMD callback")
        answered_by = form.get("AnsweredBy", "")
        if call is None or not call.outbound or call.canceled:
            log.info("twilio AMD verdict %s for call %s ignored: the call is not up", answered_by or "-", call_id)
            return _NOTHING
        if not _is_machine(answered_by):
            log.info("twilio call %s: AMD says %s", call_id, answered_by or "nothing")
            return _NOTHING
        if call.reported:
            outcome = call.flow_outcome.value if call.flow_outcome else "its result"
            log.info("twilio call %s: AMD says %s after %s; the result stands", call_id, answered_by, outcome)
            return _NOTHING
        call.expecting = None  # a gather posted after the verdict ends politely
        call.canceled = True  # hung up by us; the final status only confirms it
        reports: list[Report] = [self._result(call, CallOutcome.MACHINE, f"answered by {answered_by}")]
        self._spawn(self._hang_up(call, f"AMD says {answered_by}"))
        await self._emit(reports)
        return _NOTHING

    # ----------------------------------------------- webhooks: the hotline

    async def on_inbound_call(self, form: Form) -> str:
        sid = form.get("CallSid", "")
        call_id = f"tw-{sid}"
        if not sid or call_id in self._calls or call_id in self._finished or call_id in self._arriving:
            return self._polite(call_id, "inbound call", self._calls.get(call_id))
        caller = caller_number(form.get("From", ""), self._region)
        dialled = caller_number(form.get("To", ""), self._region)
        who = mask_number(caller) if caller else "a withheld number"
        if self.events is None:
            log.warning("twilio call %s from %s: the provider is not open; ending it", call_id, who)
            return render_hangup(NOT_IN_SERVICE)
        self._arriving.add(call_id)
        try:
            flow = await self.events.inbound_call(InboundCall(call_id=call_id, caller=caller, dialled=dialled))
        finally:
            self._arriving.discard(call_id)
        if call_id in self._gone_while_arriving:
            self._gone_while_arriving.discard(call_id)
            self._remember(call_id)
            log.info("twilio call %s from %s hung up before the hotline answered", call_id, who)
            if flow is not None:
                await self._emit([CallerFinished(call_id=call_id, outcome=FlowOutcome.ABANDONED)])
            return render_hangup()
        if flow is None:
            log.info("twilio call %s from %s to %s: not a hotline", call_id, who, mask_number(dialled))
            self._remember(call_id)
            return render_hangup(NOT_IN_SERVICE)
        log.info("twilio call %s from %s to hotline %s", call_id, who, mask_number(dialled))
        call = TwilioCall(call_id=call_id, outbound=False, number=caller, flow=flow, state=flow.start().state,
                          sid=sid, answered=True, in_progress=True)
        self._calls[call_id] = call
        actions, reports = self._advance(call, Answered())
        return await self._respond(call, actions, reports)

    async def on_inbound_status(self, form: Form) -> str:
        """The hotline number's status callback: the caller's call is over."""
        call_id = f"tw-{form.get('CallSid', '')}"
        call = self._calls.get(call_id)
        status = form.get("CallStatus", "")
        if call is None and call_id in self._arriving and status in _FINAL_CALL_STATUSES:
            self._gone_while_arriving.add(call_id)  # on_inbound_call finishes it when the gateway answers
            return _NOTHING
        if call is None or call.outbound:
            return self._polite(call_id, "status callback", None)
        if status not in _FINAL_CALL_STATUSES:
            return _NOTHING
        if call.expecting == "record" and not call.reported and not call.ending:
            call.ending = True  # give the recording's action a moment to arrive first
            self._spawn(self._finish_caller_later(call, status))
            return _NOTHING
        await self._finish_caller(call, status)
        return _NOTHING

    async def _finish_caller_later(self, call: TwilioCall, status: str) -> None:
        await asyncio.sleep(self.record_grace_s)
        if call.call_id in self._calls:
            await self._finish_caller(call, status)

    async def _finish_caller(self, call: TwilioCall, status: str) -> None:
        call_id = call.call_id
        reports: list[Report] = []
        if not call.reported:
            _, reports = self._advance(call, HungUp(cause=status))
            reports.append(self._caller_finished(call))
        log.info("twilio call %s from %s over: %s", call_id,
                 mask_number(call.number) if call.number else "a withheld number", status)
        self._end(call)
        await self._emit(reports)

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

    # ---------------------------------------------------------- flow runner

    def _advance(self, call: TwilioCall, event: Event) -> tuple[list[Action], list[Report]]:
        """Feed one event; returns the actions to render and what to report, in order.

        Synchronous on purpose: the call's state is settled before anything is
        awaited, so concurrent webhooks for the same call cannot interleave.
        """
        step: Step[Any] = call.flow.on_event(call.state, event)
        call.state = step.state
        actions = list(step.actions)
        reports: list[Report] = []
        if step.outcome is not None:
            call.flow_outcome = step.outcome
            if call.outbound and step.outcome == FlowOutcome.ACCEPTED and not _has(actions, Hangup):
                actions.append(Bridge(call_id=call.call_id))  # wait in the room the caller joins
        if actions:
            call.expecting = None
            call.hold = None
        for index, action in enumerate(actions):
            if isinstance(action, Gather):
                call.expecting = "gather"
            elif isinstance(action, Record):
                call.expecting = "record"
            elif isinstance(action, Hold):
                call.hold = call.held = action
                reports.append(CallerWaiting(call_id=call.call_id, priority=action.priority))
            elif isinstance(action, Bridge) and action.call_id != call.call_id and not self._link(call, action):
                actions[index] = Hangup()
        hanging_up = _has(actions, Hangup)
        if call.outbound and not call.reported:
            if call.flow_outcome is not None:
                reports.append(self._result(call, self._mapped(call), ""))
            elif hanging_up:
                reports.append(self._result(call, CallOutcome.NO_ANSWER, "flow hung up"))
        if not call.outbound and hanging_up and not call.reported:
            reports.append(self._caller_finished(call))
        return actions, reports

    def _link(self, call: TwilioCall, bridge: Bridge) -> bool:
        other = self._calls.get(bridge.call_id)
        if other is None or other.canceled:
            log.warning("twilio call %s: cannot bridge to %s, that call is not up; ending it",
                        call.call_id, bridge.call_id)
            return False
        call.linked, other.linked = other.call_id, call.call_id
        log.info("twilio call %s: bridging to %s", call.call_id, other.call_id)
        return True

    def _mapped(self, call: TwilioCall) -> CallOutcome:
        assert call.flow_outcome is not None
        return call_outcome(call.flow_outcome, call.state)

    def _result(self, call: TwilioCall, outcome: CallOutcome, detail: str) -> CallResult:
        call.reported = True
        log.info("twilio call %s to %s: %s%s", call.call_id, mask_number(call.number), outcome.value,
                 f" ({detail})" if detail else "")
        return CallResult(call_id=call.call_id, outcome=outcome, detail=detail)

    def _caller_finished(self, call: TwilioCall) -> CallerFinished:
        call.reported = True
        outcome = call.flow_outcome or FlowOutcome.ABANDONED
        log.info("twilio call %s: caller finished, %s", call.call_id, outcome.value)
        return CallerFinished(call_id=call.call_id, outcome=outcome, recording_url=call.recording_url)

    async def _respond(self, call: TwilioCall, actions: list[Action], reports: list[Report]) -> str:
        twiml = self._twiml(call, actions)
        if not actions:
            log.warning("twilio call %s: the flow had nothing to say; the call ends", call.call_id)
        await self._emit(reports)
        return twiml

    def _twiml(self, call: TwilioCall, actions: list[Action]) -> str:
        return render(
            actions,
            gather_action_url=self._voice_url(call.call_id, "gather"),
            record_action_url=self._voice_url(call.call_id, "record"),
            hold_url=self._voice_url(call.call_id, "hold"),
        )

    async def _emit(self, reports: list[Report]) -> None:
        events = self.events
        if events is None:
            return
        for report in reports:
            try:
                if isinstance(report, CallResult):
                    await events.call_ended(report)
                elif isinstance(report, CallerWaiting):
                    await events.caller_waiting(report)
                else:
                    await events.caller_finished(report)
            except Exception:
                log.exception("twilio call %s: reporting %s failed", report.call_id, type(report).__name__)

    # --------------------------------------------------------------- helpers

    def _known(self, call_id: str, form: Form, what: str) -> TwilioCall | None:
        """The live call ``call_id`` if the webhook's CallSid is its own."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        sid = form.get("CallSid", "")
        if call.sid is None and sid and sid not in self._sids:
            call.sid = sid  # the webhook beat create_call's answer
            self._remember_sid(sid)
        elif sid != call.sid:
            log.warning("twilio %s for call %s carries another CallSid; ignored", what, call_id)
            return None
        return call

    def _polite(self, call_id: str, what: str, call: TwilioCall | None) -> str:
        """End the call: the webhook is for an unknown, finished or replayed call, and changes nothing."""
        if call is not None:
            log.info("twilio %s for call %s ignored: not expected now (replayed or late)", what, call_id)
        elif call_id in self._finished:
            log.info("twilio %s for call %s ignored: the call is over", what, call_id)
        else:
            log.warning("twilio %s for unknown call %s; ending it", what, call_id)
        return render_hangup()

    def _end(self, call: TwilioCall) -> None:
        """The call is over: forget it, and hang up the leg it was bridged with."""
        self._calls.pop(call.call_id, None)
        self._remember(call.call_id)
        other = self._calls.get(call.linked or "")
        if other is not None and not other.canceled:
            other.canceled = True
            self._spawn(self._hang_up(other, f"the other party ({call.call_id}) hung up"))

    def _remember(self, call_id: str) -> None:
        self._finished[call_id] = None
        _trim(self._finished)

    def _remember_sid(self, sid: str) -> None:
        self._sids[sid] = None
        _trim(self._sids)

    async def _hang_up(self, call: TwilioCall, why: str) -> None:
        if call.sid is None or self._rest is None:
            return
        log.info("twilio call %s: hanging up, %s", call.call_id, why)
        await self._rest.cancel_call(call.sid, answered=call.answered or call.in_progress)

    async def _redirect(self, call: TwilioCall) -> None:
        if call.sid is None or self._rest is None:
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
