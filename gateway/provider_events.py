"""The gateway's side of ProviderEvents: where providers report outcomes and inbound SMS."""

from __future__ import annotations

import logging

from gateway.escalation import EscalationEngine
from gateway.sms_replies import SmsReplies
from providers.base import CallEnded, CallOutcome, InboundSms, Reply, SmsStatus, SmsStatusChanged

log = logging.getLogger(__name__)


class GatewayEvents:
    """Never raises into a provider: a bad event is logged and dropped."""

    def __init__(self, engine: EscalationEngine, replies: SmsReplies) -> None:
        self.engine = engine
        self.replies = replies

    async def call_ended(self, event: CallEnded) -> None:
        try:
            await self.engine.call_ended(event)
        except Exception:
            log.exception("could not record the outcome of call %s", event.call_id)

    async def sms_status(self, event: SmsStatusChanged) -> None:
        if event.status != SmsStatus.FAILED:
            log.info("SMS %s %s", event.sms_id, event.status.value)
            return
        await self.call_ended(CallEnded(call_id=event.sms_id, outcome=CallOutcome.FAILED,
                                        detail=event.detail or "SMS not delivered"))

    async def sms_received(self, sms: InboundSms) -> Reply:
        try:
            return await self.replies.handle(sms)
        except Exception:
            log.exception("could not handle an inbound SMS")
            return Reply(text="Sorry, something went wrong; your reply changed nothing.")
