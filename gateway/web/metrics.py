"""/metrics: the gateway's metrics (gateway/telemetry.py) in Prometheus' text format, behind the API token."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.config import Config
from gateway.dispatch import QueueStats
from gateway.provider_setup import Providers
from gateway.telemetry import LinesStat, LiveState, ProviderStat, Telemetry
from gateway.web.keys import CLOCK, PAGING, TELEMETRY
from providers.kavenegar import KavenegarProvider
from providers.twilio import TwilioProvider

routes = web.RouteTableDef()


def install(app: web.Application, config: Config, providers: Providers) -> Telemetry:
    """Give the app its own registry, read the queues, lines and providers' health at each scrape, and have
    the provider manager and each provider's webhooks report to it."""
    telemetry = app[TELEMETRY] = Telemetry(process=True)
    manager = providers.manager
    manager.telemetry = telemetry

    def queues() -> list[QueueStats] | None:
        return app[PAGING].dispatcher.stats() if PAGING in app else None

    def lines() -> LinesStat | None:
        if PAGING not in app:
            return None
        dispatcher = app[PAGING].dispatcher
        return LinesStat(provider=dispatcher.provider.name, in_use=dispatcher.in_flight,
                         capacity=dispatcher.capacity, reserved_for_high=dispatcher.reserved_for_high,
                         low_waited_too_long=dispatcher.low_waited_too_long)

    def health() -> list[ProviderStat]:
        return [ProviderStat(name=name, up=not manager.is_down(name), consecutive_failures=state.failures)
                for name, state in manager.health.items()]

    telemetry.watch(LiveState(queues=queues, lines=lines, providers=health))
    telemetry.hotlines(hotline.name for hotline in config.hotlines)
    for plugin in providers.plugins:
        if isinstance(plugin, TwilioProvider | KavenegarProvider):
            plugin.on_signature_refused(telemetry.signature_refused(plugin.name))
    return telemetry


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    telemetry = request.app[TELEMETRY]
    telemetry.forget_callers_gone(request.app[CLOCK].now())
    return web.Response(body=telemetry.exposition(), headers={
        "Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
