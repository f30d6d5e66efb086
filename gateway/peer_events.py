"""The gateway's side of ``cluster.Peers``: what it does when other gateways on the database tell it something."""

from __future__ import annotations

import logging

from gateway.hotline import HotlineService
from gateway.maintenance import Maintenance
from gateway.overrides import Schedule
from gateway.paging import Paging
from gateway.provider_manager import ProviderManager
from gateway.rule_book import RuleBook
from gateway.scheduler import Scheduler
from gateway.store import Page

log = logging.getLogger(__name__)


class PeerEvents:
    def __init__(self, paging: Paging, scheduler: Scheduler, providers: ProviderManager,
                 hotline: HotlineService, schedule: Schedule | None = None,
                 maintenance: Maintenance | None = None, rules: RuleBook | None = None) -> None:
        self.schedule = schedule
        self.maintenance = maintenance
        self.rules = rules
        self.paging = paging
        self.scheduler = scheduler
        self.providers = providers
        self.hotline = hotline

    async def alert_closed_elsewhere(self, alert_id: int) -> None:
        self.paging.telemetry.hotline_alert_closed_elsewhere(alert_id)  # a caller waiting here is not any more
        await self.paging.release_local(alert_id)

    async def line_freed(self, call_id: str, *, placed_here: bool) -> None:
        if placed_here:  # its outcome reached another gateway: the call is over here too
            self.providers.ended_elsewhere(call_id)
        await self.paging.dispatcher.line_freed(call_id, placed_here=placed_here)

    async def took_over(self, gateway_id: str, *, alerts: list[int], unsent: list[Page],
                        live_calls: list[Page]) -> None:
        self.scheduler.took_over()  # its escalations and later pages are ours now: look at what is due
        if self.maintenance is not None:
            self.maintenance.poke()  # and its held alerts, when their windows end
        outlive = self.providers.capabilities.calls_outlive_gateway
        if not outlive:
            # Its callers' calls ended with it (their dialplan goes on without them): nobody is screened for them.
            for alert_id in alerts:
                await self.hotline.caller_lost_with_gateway(alert_id, gateway_id)
        await self.paging.send_again(unsent)
        if outlive and live_calls:
            log.info("%d call(s) placed by gateway %s go on; their outcomes reach this gateway",
                     len(live_calls), gateway_id)
        elif not outlive:
            for page in live_calls:
                await self.paging.lost_with_gateway(page, gateway_id)

    async def resend_unsent(self) -> None:
        self.scheduler.due_at(0.0)
        await self.paging.send_again(await self.paging.store.unsent_pages())

    async def rejoined(self) -> None:
        self.scheduler.due_at(0.0)
        await self.paging.recheck_local()
        if self.schedule is not None:  # an override change pushed meanwhile may be lost
            await self.schedule.load()
        if self.maintenance is not None:
            await self.maintenance.changed_elsewhere()
        if self.rules is not None:  # so may a change of notification rules
            await self.rules.load()

    async def overrides_changed(self, team: str) -> None:
        if self.schedule is not None:
            await self.schedule.reload(team)

    async def maintenance_changed(self, held_until: float | None = None) -> None:
        if self.maintenance is None:
            return
        if held_until is not None:
            self.maintenance.held_until(held_until)
        else:
            await self.maintenance.changed_elsewhere()

    async def notification_rules_changed(self, engineer: str) -> None:
        if self.rules is not None:
            await self.rules.reload(engineer)
