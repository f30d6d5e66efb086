"""The composition root: ``create_app()`` is the one place that wires concrete parts together."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from gateway.clock import Clock, SystemClock
from gateway.config import Config, ConfigError
from gateway.escalation import EscalationEngine
from gateway.hotline import HotlineService
from gateway.phone import mask
from gateway.provider_events import GatewayEvents
from gateway.sms_replies import SmsReplies
from gateway.sqlite_store import SqliteStore
from gateway.templates import Templates
from gateway.web import alerts, calls, health, integrations, oncall, sandbox
from gateway.web.errors import error_middleware
from gateway.web.keys import CLOCK, CONFIG, ENGINE, SANDBOX, STORE
from providers.sandbox import SandboxProvider, Script

log = logging.getLogger(__name__)


def create_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    """Build the gateway for ``config``; resources open on startup and close on cleanup."""
    if not config.sandbox.enabled:
        raise ConfigError([f"{config.source}: sandbox.enabled: no phone provider is configured; "
                           "enable the sandbox or configure a provider"])
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware])
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app.cleanup_ctx.append(_gateway)
    for module in (health, alerts, integrations, calls, oncall, sandbox):
        app.router.add_routes(module.routes)
    return app


async def _gateway(app: web.Application) -> AsyncIterator[None]:
    config, clock = app[CONFIG], app[CLOCK]
    store = SqliteStore(config.store_path)
    await store.open()
    provider = SandboxProvider(
        clock=clock,
        caller_id=config.sandbox.caller_id,
        scripts={p.number: Script(behaviour=p.behaviour, after_s=p.after_s, digits=p.digits)
                 for p in config.sandbox.phones},
    )
    templates = Templates(config.templates_dir)
    engine = EscalationEngine(config=config, store=store, clock=clock, voice=provider, sms=provider,
                              templates=templates)
    hotline = HotlineService(config=config, engine=engine, templates=templates, voice=provider, sms=provider)
    engine.hotline = hotline
    provider.bind(GatewayEvents(engine, SmsReplies(engine, templates), hotline))
    app[STORE], app[ENGINE], app[SANDBOX] = store, engine, provider
    await engine.start()
    log.info("gateway ready: store %s, voice and SMS via the %s provider, %d team(s)",
             config.store_path, provider.name, len(config.teams))
    try:
        yield
    finally:
        await engine.stop()
        await provider.close()
        await store.close()


_NUMBER = re.compile(r"(?:%2B|\+)\d{7,15}")


class MaskingAccessLogger(AbstractAccessLogger):
    """Access log lines with phone numbers in paths masked."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = _NUMBER.sub(lambda m: mask("+" + m.group(0).removeprefix("%2B").removeprefix("+")), request.path)
        self.logger.info('%s "%s %s" %d %.1fms', request.remote, request.method, path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def run_server(config: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    app = create_app(config)
    web.run_app(
        app,
        host=host or config.host,
        port=port or config.port,
        access_log_class=MaskingAccessLogger,
        print=lambda text: log.info(text.strip()),
    )
