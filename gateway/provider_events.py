"""The gateway's side of ProviderEvents: where providers report outcomes, callers and inbound SMS."""

from __future__ import annotations

import logging
from typing import Any

from gateway.hotline import HotlineService
from gateway.notices import NoticeService
from gateway.paging import Paging
from gateway.sms_replies import SmsReplies
from ivr_flows.model import Flow
from providers.base import (
    CallerFinished,
    CallerWaiting,
    CallOutcome,
    CallResult,
    InboundCall,
    InboundSms,
    Reply,
    SmsStatus,
    SmsStatusChanged,
)

log = logging.getLogger(__name__)


class GatewayEvents:
    """Never raises into a provider: a bad event is logged and dropped."""

    def __init__(self, paging: Paging, replies: SmsReplies, hotline: HotlineService,
                 notices: NoticeService | None = None) -> None:
        self.paging = paging
        self.replies = replies
        self.hotline = hotline
        self.notices = notices

    async def call_ended(self, event: CallResult) -> None:
        try:
            await self.paging.call_ended(event)
        except Exception:
            log.exception("could not record the outcome of call %s", event.call_id)

    async def sms_status(self, event: SmsStatusChanged) -> None:
        if event.status != SmsStatus.FAILED:
            log.info("SMS %s %s", event.sms_id, event.status.value)
            return
        if self.notices is not None and self.notices.owns(event.sms_id):
            try:
                await self.notices.delivery_failed(event.sms_id, event.detail or "SMS not delivered")
            except Exception:
                log.exception("could not record that SMS %s was not delivered", event.sms_id)
            return
        await self.call_ended(CallResult(call_id=event.sms_id, outcome=CallOutcome.FAILED,
                                         detail=event.detail or "SMS not delivered"))

    async def sms_received(self, sms: InboundSms) -> Reply:
        try:
            return await self.replies.handle(sms)
        except Exception:
            log.exception("could not handle an inbound SMS")
            return Reply(text="Sorry, something went wrong; your reply changed nothing.")

    async def inbound_call(self, call: InboundCall) -> Flow[Any] | None:
        try:
            return await self.hotline.inbound_call(call)
        except Exception:
            log.exception("could not take hotline call %s", call.call_id)
            return None

    async def caller_waiting(self, event: CallerWaiting) -> None:
        try:
            await self.hotline.caller_waiting(event)
        except Exception:
            log.exception("could not queue hotline call %s", event.call_id)

    async def caller_finished(self, event: CallerFinished) -> None:
        try:
            await self.hotline.caller_finished(event)
        except Exception:
            log.exception("could not close hotline call %s", event.call_id)
