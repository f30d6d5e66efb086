"""One manager over the operator's providers: picks by capability and order, fails over, tracks health.

The gateway's services see one voice provider and one SMS provider: this manager. A call goes to the
first provider in the operator's order that is up and has a free line; when that provider cannot place
it, or reports that it failed (a network or provider failure, never a person's answer: busy, declined
and no answer are answers), the same call is placed on the next provider, within the same escalation
step. A provider that fails ``down_after`` times in a row is marked down and skipped; after a back-off
one request probes it, and a success brings it back (LinkedIn Iris's vendor manager has this shape).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from core.phone import mask
from gateway.cluster import Lines
from gateway.telemetry import Telemetry
from ivr_flows.model import Event, Flow
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
    Reply,
    SmsProvider,
    SmsRequest,
    SmsStatus,
    SmsStatusChanged,
    VoiceProvider,
)

log = logging.getLogger(__name__)

#: (call or SMS id, provider name, what happened): the timeline's record of which provider carried a page
CarriedBy = Callable[[str, str, str], Awaitable[None]]


@dataclass(kw_only=True)
class Health:
    """A provider's record of failures; ``down_until`` > now means skip it (until a probe may go)."""

    failures: int = 0
    down_until: float = 0.0
    backoff_s: float = 0.0
    last_error: str = ""
    probing: bool = False  # down, and one request is finding out whether it is back


@dataclass(kw_only=True)
class _Attempt:
    """Where a call or SMS stands: the providers still to try, the one carrying it now."""

    request: Any  # CallRequest | SmsRequest
    remaining: list[str]
    carrier: str = ""
    errors: list[str] = field(default_factory=list)
    accepted: bool = False  # an accepted screening leg: it keeps its line, bridged, until canceled
    uncertain: bool = False  # the last provider's answer was lost: it may have placed the call after all


#: calls and SMS remembered at most (a provider that never reports an outcome must not grow memory)
_MAX_TRACKED = 20_000
T = TypeVar("T")


@runtime_checkable
class ForgetsCalls(Protocol):
    """A provider that keeps calls in memory which other gateways may finish (its calls outlive a gateway)."""

    def forget(self, call_id: str) -> None: ...


class ProviderManager:
    """Implements VoiceProvider and SmsProvider (and the ProviderEvents each provider reports to)."""

    def __init__(
        self,
        *,
        voice: Sequence[VoiceProvider],
        sms: Sequence[SmsProvider],
        down_after: int = 3,
        first_backoff_s: float = 30.0,
        max_backoff_s: float = 300.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.voice_order = [p.name for p in voice]
        self.name = "+".join(self.voice_order) or "none"  # what the queues and the log call the whole
        self.sms_order = [p.name for p in sms]
        self._voice = {p.name: p for p in voice}
        self._sms = {p.name: p for p in sms}
        self.health = {name: Health() for name in {*self._voice, *self._sms}}
        self.down_after = down_after
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self._now = now
        self._calls: dict[str, _Attempt] = {}
        self._lines: dict[str, set[str]] = {name: set() for name in self._voice}
        self._texts: dict[str, _Attempt] = {}
        self._delivered: dict[str, None] = {}  # SMS counted delivered (a provider may say so twice); bounded
        self.events: ProviderEvents | None = None
        self.carried_by: CarriedBy | None = None
        #: whether a page is still wanted (its alert open): checked before a failover sends it again
        self.wanted: Callable[[str], Awaitable[bool]] | None = None
        #: the line ledger shared with other gateways (PostgreSQL): each provider's own trunk holds across them
        self.lines: Lines | None = None
        self.telemetry = Telemetry()  # the app's (gateway/web/metrics.py sets it)
        self._tasks: set[asyncio.Task[None]] = set()
        self.capabilities = Capabilities(
            voice=bool(voice),
            sms=bool(sms),
            max_concurrent_calls=sum(p.capabilities.max_concurrent_calls for p in voice) or 1,
            calls_per_second=max((p.capabilities.calls_per_second for p in voice), default=1.0),
            calls_outlive_gateway=bool(voice) and all(p.capabilities.calls_outlive_gateway for p in voice),
        )

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------- health

    def _failed(self, provider: str, error: str) -> None:
        health = self.health[provider]
        health.failures += 1
        health.last_error = error
        self.telemetry.provider_failed(provider)
        health.probing = False
        if health.failures >= self.down_after:
            health.backoff_s = min(self.max_backoff_s, health.backoff_s * 2 or self.first_backoff_s)
            health.down_until = self._now() + health.backoff_s
            log.error("provider %s is down after %d failures in a row (last: %s); skipped for %.0f s, then probed",
                      provider, health.failures, error, health.backoff_s)

    def _succeeded(self, provider: str) -> None:
        health = self.health[provider]
        if health.failures >= self.down_after:
            log.info("provider %s is up again", provider)
        self.health[provider] = Health()

    def is_down(self, provider: str) -> bool:
        return self.health[provider].failures >= self.down_after

    def _usable(self, order: list[str]) -> list[str]:
        """The providers to try, in order: those up, and a down one whose probe is due (one at a time)."""
        return [name for name in order if not self.is_down(name) or self._probe_due(name)]

    def _probe_due(self, name: str) -> bool:
        health = self.health[name]
        return health.down_until <= self._now() and not health.probing

    def _trying(self, name: str) -> bool:
        """About to send a request to ``name``: False when it is down and another request probes it now."""
        if not self.is_down(name):
            return True
        if not self._probe_due(name):
            return False
        self.health[name].probing = True
        log.info("provider %s: probing whether it is back", name)
        return True

    def _probe_over(self, name: str) -> None:
        """The probe ended without telling whether the provider is back (canceled, outcome lost)."""
        self.health[name].probing = False

    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        now = self._now()
        for name, health in self.health.items():
            if self.is_down(name):
                wait = max(0.0, health.down_until - now)
                checks[f"provider:{name}"] = (f"down: {health.failures} failures in a row, last {health.last_error}; "
                                              + (f"next probe in {wait:.0f} s" if wait else "probing"))
            else:
                checks[f"provider:{name}"] = "ok"
        return checks

    # -------------------------------------------------------------- voice

    async def place_call(self, request: CallRequest) -> None:
        attempt = _Attempt(request=request, remaining=self._usable(self.voice_order))
        if not attempt.remaining:
            attempt.remaining = list(self.voice_order)  # all down: try them anyway, in order
        _remember(self._calls, request.call_id, attempt)
        await self._place(attempt)

    async def _place(self, attempt: _Attempt) -> None:
        request: CallRequest = attempt.request
        full = False
        while attempt.remaining:
            name = attempt.remaining.pop(0)
            provider = self._voice[name]
            if len(self._lines[name]) >= provider.capabilities.max_concurrent_calls or not await self._carries(
                    request.call_id, name):
                full = True
                continue  # its lines are full: never more calls than its trunk carries
            if not self._trying(name):
                continue
            if attempt.carrier and attempt.carrier != name and attempt.uncertain:
                # The previous provider may have placed it after all (its answer was lost): hang that copy up.
                self._spawn_cancel(attempt.carrier, request.call_id)
            attempt.carrier, attempt.uncertain = name, False
            self._lines[name].add(request.call_id)
            try:
                await provider.place_call(request)
            except ProviderError as exc:
                self._lines[name].discard(request.call_id)
                self._failed(name, str(exc))
                attempt.uncertain = not exc.permanent
                attempt.errors.append(f"{name}: {exc}")
                log.warning("call %s to %s: %s could not place it (%s)%s", request.call_id, mask(request.to), name,
                            exc, "; trying the next provider" if attempt.remaining else "")
                continue
            if self.is_down(name):
                self._succeeded(name)  # the probe went through: back in use (failures count again from here)
            self.telemetry.carried(request.call_id, name)
            await self._note(request.call_id, name, attempt.errors)
            return
        self._calls.pop(request.call_id, None)
        if full and not attempt.errors:
            raise ProviderError("every provider's lines are in use", permanent=False)
        raise ProviderError("; ".join(attempt.errors) or "no voice provider", permanent=False)

    async def _carries(self, call_id: str, name: str) -> bool:
        """With several voice providers and gateways: whether ``name``'s trunk has a line for the call across
        all gateways (with one provider, the dispatcher's line from the shared ledger is that trunk's)."""
        if self.lines is None or len(self.voice_order) < 2:
            return True
        try:
            return await self.lines.carry(call_id, name, capacity=self._voice[name].capabilities.max_concurrent_calls)
        except Exception as exc:  # the database is away: rather page than not
            log.error("call %s: could not check %s's lines in the shared ledger (%s); placing it", call_id, name,
                      exc)
            return True

    def ended_elsewhere(self, call_id: str) -> None:
        """Another gateway heard how a call placed here ended: forget it (its line here, the provider's copy)."""
        attempt = self._calls.pop(call_id, None)
        if attempt is None or not attempt.carrier:
            return
        self._lines[attempt.carrier].discard(call_id)
        provider = self._voice[attempt.carrier]
        if isinstance(provider, ForgetsCalls):
            provider.forget(call_id)

    def _spawn_cancel(self, provider: str, call_id: str) -> None:
        async def cancel() -> None:
            try:
                await self._voice[provider].cancel_call(call_id)
            except ProviderError as exc:
                log.warning("call %s: could not hang up its copy on %s: %s", call_id, provider, exc)

        task = asyncio.ensure_future(cancel())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel_call(self, call_id: str) -> None:
        attempt = self._calls.pop(call_id, None)
        if attempt is not None and attempt.carrier:
            attempt.remaining = []  # canceled: no failover for it any more
            self._lines[attempt.carrier].discard(call_id)  # providers report nothing for a call we canceled
            self._probe_over(attempt.carrier)
            await self._voice[attempt.carrier].cancel_call(call_id)
            return
        for provider in self._voice.values():  # placed before a restart: whichever provider has it hangs up
            await provider.cancel_call(call_id)

    async def notify(self, call_id: str, event: Event) -> None:
        attempt = self._calls.get(call_id)
        if attempt is not None and attempt.carrier:
            await self._voice[attempt.carrier].notify(call_id, event)
            return
        for provider in self._voice.values():  # a hotline caller: whichever provider took the call
            await provider.notify(call_id, event)

    # ---------------------------------------------------------------- SMS

    async def send_sms(self, request: SmsRequest) -> None:
        attempt = _Attempt(request=request, remaining=self._usable(self.sms_order) or list(self.sms_order))
        _remember(self._texts, request.sms_id, attempt)
        await self._send(attempt)

    async def _send(self, attempt: _Attempt) -> None:
        request: SmsRequest = attempt.request
        while attempt.remaining:
            name = attempt.remaining.pop(0)
            if not self._trying(name):
                continue
            attempt.carrier = name
            try:
                await self._sms[name].send_sms(request)
            except ProviderError as exc:
                self._failed(name, str(exc))
                attempt.errors.append(f"{name}: {exc}")
                log.warning("SMS %s to %s: %s could not send it (%s)%s", request.sms_id, mask(request.to), name,
                            exc, "; trying the next provider" if attempt.remaining else "")
                if attempt.remaining and not await self._still_wanted(request.sms_id):
                    attempt.errors.append("not sent by another provider: the alert was closed meanwhile")
                    break  # acknowledged while this provider was trying (retries can take tens of seconds)
                continue
            self._succeeded(name)
            self.telemetry.carried(request.sms_id, name)
            await self._note(request.sms_id, name, attempt.errors)
            return
        self._texts.pop(request.sms_id, None)
        raise ProviderError("; ".join(attempt.errors) or "no SMS provider", permanent=True)

    async def _note(self, page_id: str, provider: str, errors: list[str]) -> None:
        if self.carried_by is None or (not errors and len(self.voice_order) + len(self.sms_order) <= 2):
            return  # with one provider per channel and no failover, there is nothing to tell
        detail = f"after {'; '.join(errors)}" if errors else ""
        try:
            await self.carried_by(page_id, provider, detail)
        except Exception:
            log.exception("could not record which provider carried %s", page_id)

    async def _still_wanted(self, page_id: str) -> bool:
        """Whether a failover may send the page again (its alert may have closed meanwhile)."""
        return self.wanted is None or await self.wanted(page_id)

    # ------------------------------------------------------ provider events

    def events_for(self, provider: str) -> ProviderEvents:
        """What ``provider`` reports to: failures are failed over here, the rest goes to the gateway."""
        return _Reports(self, provider)

    async def _call_ended(self, provider: str, event: CallResult) -> None:
        attempt = self._calls.get(event.call_id)
        if attempt is not None and attempt.carrier != provider:
            # A copy on a provider that no longer carries the call (it answered too late): not this page's
            # result. Hang that copy up; the carrier reports the page.
            log.warning("call %s: %s reports %s, but %s carries the call; hanging that copy up",
                        event.call_id, provider, event.outcome.value, attempt.carrier)
            self._spawn_cancel(provider, event.call_id)
            return
        if attempt is not None:
            if event.outcome == CallOutcome.ACCEPTED:
                attempt.accepted = True
            else:
                self._lines[provider].discard(event.call_id)
            if event.outcome == CallOutcome.CANCELED:
                self._probe_over(provider)
            if event.outcome == CallOutcome.FAILED:
                self._failed(provider, event.detail or "call failed")
                attempt.errors.append(f"{provider}: {event.detail or 'failed'}")
                if attempt.remaining and await self._still_wanted(event.call_id):
                    log.warning("call %s: %s reports it failed (%s); placing it on the next provider",
                                event.call_id, provider, event.detail)
                    try:
                        await self._place(attempt)
                        return
                    except ProviderError as exc:
                        event = CallResult(call_id=event.call_id, outcome=CallOutcome.FAILED, detail=str(exc))
            elif event.outcome != CallOutcome.CANCELED:
                self._succeeded(provider)
            if event.outcome != CallOutcome.ACCEPTED:  # an accepted leg lives on, bridged
                self._calls.pop(event.call_id, None)
        if self.events is not None:
            await self.events.call_ended(event)

    async def _sms_status(self, provider: str, event: SmsStatusChanged) -> None:
        attempt = self._texts.get(event.sms_id)
        if attempt is not None and attempt.carrier != provider:
            log.info("SMS %s: %s status from %s ignored: %s carries it", event.sms_id, event.status.value, provider,
                     attempt.carrier)
            return
        if attempt is not None and event.status == SmsStatus.FAILED and attempt.remaining \
                and await self._still_wanted(event.sms_id):
            self._failed(provider, event.detail or "not delivered")
            attempt.errors.append(f"{provider}: {event.detail or 'not delivered'}")
            try:
                await self._send(attempt)
                return
            except ProviderError as exc:
                event = SmsStatusChanged(sms_id=event.sms_id, status=SmsStatus.FAILED, detail=str(exc))
        if attempt is not None and event.status in (SmsStatus.DELIVERED, SmsStatus.FAILED):
            self._texts.pop(event.sms_id, None)
        if event.status == SmsStatus.DELIVERED and event.sms_id not in self._delivered:
            _remember(self._delivered, event.sms_id, None)  # once: a repeated callback is not a second page
            self.telemetry.page_finished(event.sms_id, channel="sms", outcome="delivered")  # the page's outcome
        if self.events is not None:
            await self.events.sms_status(event)


def _remember(memory: dict[str, T], key: str, value: T) -> None:
    memory[key] = value
    while len(memory) > _MAX_TRACKED:
        memory.pop(next(iter(memory)))


class _Reports:
    """The ProviderEvents one provider reports to (never raises: the gateway's events do not)."""

    def __init__(self, manager: ProviderManager, provider: str) -> None:
        self._manager = manager
        self._provider = provider

    def _gateway(self) -> ProviderEvents:
        assert self._manager.events is not None, "the manager is opened before its providers"
        return self._manager.events

    async def call_ended(self, event: CallResult) -> None:
        try:
            await self._manager._call_ended(self._provider, event)
        except Exception:
            log.exception("call %s: handling its outcome from %s failed", event.call_id, self._provider)

    async def sms_status(self, event: SmsStatusChanged) -> None:
        try:
            await self._manager._sms_status(self._provider, event)
        except Exception:
            log.exception("SMS %s: handling its status from %s failed", event.sms_id, self._provider)

    async def inbound_call(self, call: InboundCall) -> Flow[Any] | None:
        return await self._gateway().inbound_call(call)

    async def caller_waiting(self, event: CallerWaiting) -> None:
        await self._gateway().caller_waiting(event)

    async def caller_finished(self, event: CallerFinished) -> None:
        await self._gateway().caller_finished(event)

    async def sms_received(self, sms: InboundSms) -> Reply:
        return await self._gateway().sms_received(sms)
