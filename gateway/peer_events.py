"""The gateway's side of ``cluster.Peers``: what it does when other gateways on the database tell it something."""

from __future__ import annotations

import logging

from gateway.paging import Paging
from gateway.scheduler import Scheduler
from gateway.store import Page
from providers.base import VoiceProvider

log = logging.getLogger(__name__)


class PeerEvents:
    def __init__(self, paging: Paging, scheduler: Scheduler, voice: VoiceProvider) -> None:
        self.paging = paging
        self.scheduler = scheduler
        self.voice = voice

    async def alert_closed_elsewhere(self, alert_id: int) -> None:
        await self.paging.release_local(alert_id)

    async def line_freed(self, call_id: str, *, placed_here: bool) -> None:
        await self.paging.dispatcher.line_freed(call_id, placed_here=placed_here)

    async def took_over(self, gateway_id: str, *, unsent: list[Page], live_calls: list[Page]) -> None:
        self.scheduler.due_at(0.0)  # its escalations are ours now: look at what is due
        await self.paging.send_again(unsent)
        if self.voice.capabilities.calls_outlive_gateway:
            if live_calls:
                log.info("%d call(s) placed by gateway %s go on; their outcomes reach this gateway",
                         len(live_calls), gateway_id)
            return
        for page in live_calls:
            await self.paging.lost_with_gateway(page, gateway_id)
