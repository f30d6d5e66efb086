"""Paging: a written page becomes a call or an SMS, and its outcome comes back here.

Durable first, then act: a page is written as due (by the scheduler or the alert service) before it is
sent here; it is marked sent once the provider took it, and done with its outcome. After a crash the
pages still due are sent again (:meth:`Paging.start`); an acknowledged alert's pages never are.
Positive answers go to the page's kind (acknowledge, or connect a hotline caller); when every page of a
step has failed, ``on_step_failed`` tells the scheduler, which moves on at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from core.clock import Clock
from core.enums import AlertStatus, Channel, PageStatus
from core.phone import mask
from gateway.cluster import Lines
from gateway.config import Config, Engineer
from gateway.dispatch import Dispatcher
from gateway.message_pages import MessageFailed, MessagePages, MessageWithdrawn
from gateway.page_kinds import PageKinds
from gateway.send_gate import SendGate
from gateway.store import Alert, Page, Store, TimelineEntry
from gateway.telemetry import Telemetry
from gateway.templates import Templates
from providers.base import (
    CallOutcome,
    CallRequest,
    CallResult,
    ProviderError,
    SmsProvider,
    SmsRequest,
    VoiceProvider,
)

log = logging.getLogger(__name__)

#: outcomes after which a page no longer stands in the way of the next step
NEGATIVE = frozenset({
    CallOutcome.DECLINED,
    CallOutcome.NO_ANSWER,
    CallOutcome.MACHINE,
    CallOutcome.BUSY,
    CallOutcome.FAILED,
    CallOutcome.CANCELED,
})
_OUTCOME_TEXT: dict[str, str] = {
    CallOutcome.ACKNOWLEDGED: "acknowledged (pressed 1)",
    CallOutcome.ACCEPTED: "accepted",
    CallOutcome.DECLINED: "declined",
    CallOutcome.NO_ANSWER: "did not answer",
    CallOutcome.MACHINE: "voicemail picked up (not an acknowledgement)",
    CallOutcome.BUSY: "was busy",
    CallOutcome.FAILED: "could not be reached",
    CallOutcome.CANCELED: "call canceled",
}
#: the ring time of a page sent outside a step (a direct call, a page recovered after a restart)
DEFAULT_RING_S = 60


def call_id_for(page: Page) -> str:
    return f"page-{page.id}"


def page_id_from(call_id: str) -> int | None:
    prefix, _, number = call_id.partition("-")
    return int(number) if prefix == "page" and number.isascii() and number.isdigit() else None


class Paging:
    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        clock: Clock,
        voice: VoiceProvider,
        sms: SmsProvider | None,
        templates: Templates,
        kinds: PageKinds,
        on_step_failed: Callable[[Page], Awaitable[None]],
        lines: Lines | None = None,
        telemetry: Telemetry | None = None,
        engineers: Callable[[str], Engineer | None] | None = None,
        on_later_page: Callable[[float], None] | None = None,
        messages: MessagePages | None = None,
    ) -> None:
        self.config = config
        # An engineer by id, configured or from a directory (gateway.directory.roster.Roster.engineer)
        self.engineer = engineers if engineers is not None else config.engineers.get
        self._on_later_page = on_later_page  # a page due later was written: the scheduler wakes then
        self.telemetry = telemetry or Telemetry()
        self.store = store
        self.clock = clock
        self.voice = voice
        self.sms = sms
        self.templates = templates
        self.kinds = kinds
        self._on_step_failed = on_step_failed
        self.messages = messages  # email and chat pages (None: neither configured)
        self.dispatcher = Dispatcher(
            voice,
            now=clock.now,
            reserved_share=config.reserved_for_high,
            low_wait_warning_s=config.low_wait_warning_s,
            is_wanted=self.page_wanted,
            on_placed=self._call_placed,
            on_failed=self._call_failed,
            lines=lines,
        )
        self._sms_gate = SendGate()
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start dialling, and send what was due but not sent before the last stop."""
        await self.dispatcher.start()
        unsent = await self.store.unsent_pages()
        if unsent:
            log.info("recovery: %d page(s) were due but not sent before the last stop; sending now", len(unsent))
        await self.send_again(unsent)

    async def send_again(self, pages: list[Page]) -> None:
        """Send pages written earlier (before a restart, or by a gateway that died)."""
        for page in pages:
            alert = await self.store.get_alert(page.alert_id)
            if alert is not None:
                await self.send_written(page, alert)

    async def send_written(self, page: Page, alert: Alert) -> None:
        """Send a page written earlier (``resent``: its dial latency is not the alert's), ringing as its step says."""
        await self.send(page, alert, ring_s=self._ring_s(alert, page), resent=True)

    async def stop(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.dispatcher.stop()

    def _first_calls(self, alert: Alert, page: Page) -> bool:
        """Whether ``page`` is among the alert's first calls: of the policy's first step that calls, in its
        first run (or outside any policy). Only those are timed from the alert
        (``gateway_alert_to_first_dial_seconds``): the memory of alerts dialled already is lost with a
        restart, and a later step's call after a restart or a takeover would be timed again."""
        if page.step is None:
            return True
        policy = self.config.policies.get(alert.policy)
        first = next((index for index, step in enumerate(policy.steps) if Channel.CALL in self.kinds.of(alert)
                      .channels(step)), None) if policy is not None else None
        return page.step == first and not page.repeat

    def _ring_s(self, alert: Alert, page: Page) -> int:
        policy = self.config.policies.get(alert.policy)
        if policy is None or page.step is None or page.step >= len(policy.steps):
            return DEFAULT_RING_S
        return policy.steps[page.step].ring_s

    # ---------------------------------------------------------------- send

    async def send(self, page: Page, alert: Alert, *, ring_s: int = DEFAULT_RING_S, resent: bool = False) -> None:
        """Send one written page: a call through the priority queues, or an SMS in the background.

        ``resent``: written earlier and sent again (after a restart or a takeover). A page due later (a
        personal rule's) is not sent now: the scheduler sends it when due (gateway.later_pages)."""
        if page.due_at is not None:
            if self._on_later_page is not None:
                self._on_later_page(page.due_at)
            return
        engineer = self.engineer(page.engineer or "")
        language = engineer.language if engineer else self.config.default_language
        if page.channel == Channel.CALL:
            if not resent and self._first_calls(alert, page):
                self.telemetry.dial_requested(call_id_for(page), alert_id=alert.id,
                                              alert_created_at=alert.created_at)
            await self.dispatcher.submit(CallRequest(
                call_id=call_id_for(page),
                to=page.number,
                caller_id=None,
                flow=self.kinds.of(alert).flow(alert, page, language),
                ring_timeout_s=ring_s,
                priority=alert.priority,
            ))
            return
        if page.channel in (Channel.EMAIL, Channel.CHAT):
            self.spawn(self.send_message_page(page, alert))
            return
        if self.sms is None:
            await self._failed(page, "no SMS provider configured")
            return
        self.spawn(self.send_sms_page(page, self.templates.render("alert_sms", alert=alert)))

    async def send_sms_page(self, page: Page, body: str, *, only_while_open: bool = True) -> None:
        """Send one SMS page; it is marked sent, or finished as failed (which may move escalation on).

        ``only_while_open``: an alert page is not sent once its alert is closed (the send gate makes that
        hold even when the close races the send); a notice about a closed alert (the hotline's missed-call
        text) is sent anyway.
        """
        if self.sms is None:
            await self._failed(page, "no SMS provider configured")
            return
        sms_id = call_id_for(page)
        self._sms_gate.begin(sms_id)
        try:
            if only_while_open and (not await self.store.call_wanted(page.id) or self._sms_gate.withdrawn(sms_id)):
                log.info("SMS %s to %s dropped before sending: alert %d is closed", sms_id, mask(page.number),
                         page.alert_id)
                await self.finish(page, CallOutcome.CANCELED, "alert closed; SMS not sent", log_it=False)
                return
            await self.sms.send_sms(SmsRequest(sms_id=sms_id, to=page.number, body=body))
        except ProviderError as exc:
            log.warning("SMS %s to %s failed: %s", sms_id, mask(page.number), exc)
            await self._failed(page, f"SMS not sent: {exc}")
            return
        finally:
            self._sms_gate.end(sms_id)
        await self.store.mark_page_sent(page.id, now=self.clock.now())
        log.info("SMS %s to %s sent for alert %d", sms_id, mask(page.number), page.alert_id)

    async def _failed(self, page: Page, detail: str) -> None:
        """A page that could not go out at all: like an unanswered call, it may move its step on."""
        finished = await self.finish(page, CallOutcome.FAILED, detail)
        if finished is not None:
            await self._on_step_failed(finished)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run side work in the background (kept until done, cancelled on stop)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -------------------------------------------------------------- stopping

    async def cancel_pages(self, alert_id: int) -> None:
        """The alert is closed: nothing more of it reaches a provider, and calls in progress are hung up."""
        for page in await self.store.pages_for(alert_id):
            if page.status == PageStatus.DUE and page.due_at is not None:  # a personal rule's later page
                await self.finish(page, CallOutcome.CANCELED, "alert closed before it was due; not sent", log_it=False)
                continue
            if page.status == PageStatus.DUE and page.channel == Channel.SMS:
                await self._sms_gate.withdraw(call_id_for(page))  # an SMS being sent now reaches the provider first
            if (page.status == PageStatus.DUE and page.channel in (Channel.EMAIL, Channel.CHAT)
                    and not (self.messages is not None and self.messages.sending(page.id))):
                # Not being handed over now (not started, or waiting to try again): it will not be.
                await self.finish(page, CallOutcome.CANCELED, "alert closed; not sent", log_it=False)
                continue
            if page.status == PageStatus.DONE or page.channel != Channel.CALL:
                continue
            call_id = call_id_for(page)
            if not await self.dispatcher.withdraw(call_id):
                # In the background: this often runs inside a provider's webhook (an engineer pressed 1),
                # which must answer at once, while hanging up may mean slow REST calls with retries.
                await self.hang_up(call_id)
            await self.finish(page, CallOutcome.CANCELED, "alert closed; call canceled", log_it=False)

    async def release_local(self, alert_id: int) -> None:
        """Another gateway closed the alert (and finished its pages): stop what this gateway still has of it."""
        for page in await self.store.pages_for(alert_id):
            call_id = call_id_for(page)
            if page.channel == Channel.SMS:
                await self._sms_gate.withdraw(call_id)
            elif page.outcome == CallOutcome.ACCEPTED:
                continue  # an engineer's leg bridged to the hotline caller: the hotline ends it
            elif self.dispatcher.holds(call_id) and not await self.dispatcher.withdraw(call_id):
                log.info("call %s to %s: alert %d was closed on another gateway; hanging up", call_id,
                         mask(page.number), alert_id)
                await self.hang_up(call_id)

    async def recheck_local(self) -> None:
        """After a time cut off from the other gateways (their pushes lost): hang up this gateway's calls
        whose alert was closed meanwhile."""
        alert_ids: set[int] = set()
        for call_id in self.dispatcher.calls_here():
            page_id = page_id_from(call_id)
            page = await self.store.get_page(page_id) if page_id is not None else None
            if page is not None:
                alert_ids.add(page.alert_id)
        for alert_id in sorted(alert_ids):
            alert = await self.store.get_alert(alert_id)
            if alert is not None and alert.status != AlertStatus.TRIGGERED:
                await self.release_local(alert_id)

    async def lost_with_gateway(self, page: Page, gateway_id: str) -> None:
        """A call in progress whose gateway died, on a provider where calls end with their gateway: it is
        over (hung up here too, in case the provider still has it), and counts as unanswered."""
        await self.hang_up(call_id_for(page))
        await self._failed(page, f"its gateway {gateway_id} stopped during the call")

    async def hang_up(self, call_id: str) -> None:
        """Hang up a call in the background and free its line (a provider may never report it)."""

        async def cancel() -> None:
            try:
                await self.voice.cancel_call(call_id)
            except ProviderError as exc:
                log.warning("could not cancel call %s: %s", call_id, exc)

        self.spawn(cancel())
        await self.dispatcher.finished(call_id)

    async def raise_priority(self, alert_id: int) -> int:
        """Move the alert's queued calls to the high queue; returns how many moved."""
        queued = {call_id_for(p) for p in await self.store.pages_for(alert_id) if p.status == PageStatus.DUE}
        return await self.dispatcher.raise_priority(queued)

    # ------------------------------------------------------------- outcomes

    async def call_ended(self, event: CallResult) -> None:
        """A provider reports how a call (or an SMS) ended."""
        if event.outcome == CallOutcome.ACCEPTED:
            # An accepted screening call stays up, bridged to the caller: it keeps its line until the
            # hotline call is over (the hotline hangs it up then).
            await self.dispatcher.bridged(event.call_id)
        else:
            await self.dispatcher.finished(event.call_id)
        page_id = page_id_from(event.call_id)
        page = await self.store.get_page(page_id) if page_id is not None else None
        if page is None:
            log.warning("outcome %s for unknown call %s ignored", event.outcome, event.call_id)
            return
        finished = await self.finish(page, event.outcome, event.detail)
        if finished is None:
            if event.outcome == CallOutcome.ACKNOWLEDGED:
                # A person pressed 1 on a call already counted as over: a replayed callback (the alert is
                # acknowledged already: no change), or a call whose gateway was taken for dead while it
                # rang on. An acknowledgement is an acknowledgement.
                alert = await self.store.get_alert(page.alert_id)
                if alert is not None and alert.status == AlertStatus.TRIGGERED:
                    await self.kinds.of(alert).answered(alert, page, event.outcome, self._who(page))
            return  # already finished (a replayed callback, or canceled)
        page = finished
        if event.outcome in (CallOutcome.ACKNOWLEDGED, CallOutcome.ACCEPTED):
            alert = await self.store.get_alert(page.alert_id)
            if alert is not None:
                await self.kinds.of(alert).answered(alert, page, event.outcome, self._who(page))
        elif event.outcome in NEGATIVE:
            await self._on_step_failed(page)

    async def finish(self, page: Page, outcome: CallOutcome | str, detail: str, *, log_it: bool = True) -> Page | None:
        """Record a page's outcome once (None when it was already finished)."""
        who = self._who(page)
        text = f"{who} {_OUTCOME_TEXT.get(outcome, outcome)}" + (f" ({detail})" if detail else "")
        if page.channel != Channel.CALL:
            medium = {Channel.SMS: "SMS to", Channel.EMAIL: "email to", Channel.CHAT: "chat post to"}[page.channel]
            text = f"{medium} {who}: {outcome}" + (f" ({detail})" if detail else "")
        note = TimelineEntry(alert_id=page.alert_id, at=self.clock.now(), kind="page",
                             message=text, data={"page": page.id, "channel": page.channel, "outcome": str(outcome)})
        finished = await self.store.finish_page(page.id, outcome=str(outcome), detail=detail,
                                                now=self.clock.now(), note=note)
        if finished is not None:
            self.telemetry.page_finished(call_id_for(page), channel=page.channel, outcome=str(outcome))
        if finished is not None and log_it:
            log.info("alert %d: %s", page.alert_id, text)
        return finished

    def _who(self, page: Page) -> str:
        if page.channel == Channel.CHAT:
            return page.number  # the destination's name
        engineer = self.engineer(page.engineer or "")
        return engineer.name if engineer else mask(page.number)

    async def page_wanted(self, call_id: str) -> bool:
        """Whether the page behind a call or SMS id may still go out (its alert is open); a message that is no
        page (a handoff notice, a reply to an SMS) has no alert to close, so it may."""
        page_id = page_id_from(call_id)
        return page_id is None or await self.store.call_wanted(page_id)

    async def _call_placed(self, call_id: str) -> None:
        self.telemetry.dialled(call_id, now=self.clock.now())
        page_id = page_id_from(call_id)
        if page_id is not None:
            await self.store.mark_page_sent(page_id, now=self.clock.now())

    async def _call_failed(self, call_id: str, reason: str) -> None:
        await self.call_ended(CallResult(call_id=call_id, outcome=CallOutcome.FAILED, detail=reason))

    async def carried_by(self, call_id: str, provider: str, detail: str) -> None:
        """The provider manager says which provider carried a page (and after which failures)."""
        page_id = page_id_from(call_id)
        page = await self.store.get_page(page_id) if page_id is not None else None
        if page is None:
            return
        message = f"{page.channel} to {self._who(page)} carried by {provider}" + (f" {detail}" if detail else "")
        await self.store.add_timeline(TimelineEntry(alert_id=page.alert_id, at=self.clock.now(), kind="page",
                                                    message=message, data={"page": page.id, "provider": provider}))

    # ------------------------------------------------------ email and chat

    async def send_message_page(self, page: Page, alert: Alert) -> None:
        """Send one email or chat page (with its tries); it ends ``sent`` or ``failed``, never as an answer."""
        if self.messages is None:
            await self._failed(page, f"no {page.channel} configured")
            return
        try:
            detail = await self.messages.deliver(page, alert)
        except MessageWithdrawn as exc:
            await self.finish(page, CallOutcome.CANCELED, str(exc), log_it=False)
            return
        except MessageFailed as exc:
            log.warning("alert %d: %s to %s failed: %s", page.alert_id, page.channel, self._who(page), exc)
            await self._failed(page, str(exc))
            return
        await self.finish(page, "sent", detail)  # straight from due to done: no crash can leave it "sent" forever
