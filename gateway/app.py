"""The composition root: ``create_app()`` is the one place that wires concrete parts together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import uvloop
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from core.clock import Clock, SystemClock
from gateway.action_links import ActionLinks
from gateway.alerts import AlertService
from gateway.chat import ChatPoster
from gateway.config import Config
from gateway.console import maintenance_page as console_maintenance
from gateway.console import views as console
from gateway.console.hub import EventHub, phone_listener, relayed, watched
from gateway.directory.roster import Roster
from gateway.heartbeats import Heartbeats
from gateway.hotline import SOURCE as HOTLINE_SOURCE
from gateway.hotline import HotlineService
from gateway.later_pages import LaterPages
from gateway.mailer import Mailer
from gateway.maintenance import Maintenance
from gateway.message_pages import MessagePages
from gateway.messages import MessageTemplates
from gateway.notices import NoticeService
from gateway.notifiers import EmailNotifier, SmsNotifier
from gateway.overrides import Schedule
from gateway.page_kinds import AlertCallKind, PageKinds
from gateway.paging import Paging
from gateway.peer_events import PeerEvents
from gateway.provider_events import GatewayEvents
from gateway.provider_setup import build_providers
from gateway.rule_book import RuleBook
from gateway.scheduler import Scheduler
from gateway.sms_replies import SmsReplies
from gateway.store import Store
from gateway.store_factory import describe as describe_store
from gateway.store_factory import make_cluster, make_store
from gateway.templates import Templates
from gateway.web import (
    action_links,
    alerts,
    calendar,
    calls,
    health,
    integrations,
    maintenance,
    metrics,
    notification_rules,
    oncall,
    openapi,
    overrides,
    queues,
)
from gateway.web.auth import auth_middleware, checked_by_provider
from gateway.web.errors import error_middleware
from gateway.web.fallback import catch_all, hardened
from gateway.web.json_body import read_json
from gateway.web.keys import (
    ALERTS,
    CLOCK,
    CLUSTER,
    CONFIG,
    MAILER,
    PAGING,
    PROVIDERS,
    ROSTER,
    SANDBOX,
    SCHEDULER,
    STORE,
    TELEMETRY,
    TEMPLATES,
)
from gateway.web.log_paths import loggable
from providers.base import CallOutcome

log = logging.getLogger(__name__)


def create_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    """Build the gateway for ``config``; resources open on startup and close on cleanup."""
    # Errors outermost (every failure becomes JSON), then authentication, before any handler reads a body.
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[error_middleware, auth_middleware])
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    # Built now, opened on startup: providers are built before (their webhook routes must exist first)
    # and keep their calls' flow state in it.
    app[STORE] = make_store(config)
    providers = build_providers(config, app[CLOCK], read_json=read_json, sessions=app[STORE])
    app[PROVIDERS] = providers
    metrics.install(app, config, providers)
    tables = [health.routes, alerts.routes, integrations.routes, calls.routes, oncall.routes, queues.routes,
              metrics.routes, openapi.routes, overrides.routes,
              calendar.routes, maintenance.routes, notification_rules.routes,
              action_links.routes]
    app[action_links.LINKS] = ActionLinks(config)
    app[TEMPLATES] = Templates(config.templates_dir)
    app[action_links.PAGES] = MessageTemplates(app[TEMPLATES])
    app[action_links.LIMITER] = action_links.RateLimiter()
    if config.email is not None:
        app[MAILER] = Mailer(config.email)
    app[console.HUB] = EventHub()  # the console's browsers hear alert and phone changes through it
    app.on_shutdown.append(console.close_streams)
    tables.append(console.routes)
    tables.append(console_maintenance.routes)
    if providers.sandbox is not None:
        app[SANDBOX] = providers.sandbox
        providers.sandbox.on_change = phone_listener(app[console.HUB])
    routes = [checked_by_provider(route) for route in providers.webhook_routes] + providers.api_routes
    routes += [route for table in tables for route in table if isinstance(route, web.RouteDef)]
    app.router.add_routes([hardened(route) for route in routes] + [catch_all()])
    app[ROSTER] = Roster.build(config, app[CLOCK])  # directory teams: fetched on startup, kept fresh
    app.cleanup_ctx.append(_directories)  # before the gateway: closed after it, and also when its start fails
    app.cleanup_ctx.append(_gateway)
    return app


async def _gateway(app: web.Application) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as running:  # stopped in reverse, also when a later step fails to start
        store = app[STORE]
        await store.open()
        running.push_async_callback(store.close)
        await _start(app, store, running)
        yield


async def _start(app: web.Application, store: Store, running: contextlib.AsyncExitStack) -> None:
    """Build and start the services on the open ``store``; each one's stop is pushed on ``running`` once started."""
    config, clock, providers = app[CONFIG], app[CLOCK], app[PROVIDERS]
    cluster = app[CLUSTER] = make_cluster(config, store)
    roster = app[ROSTER]  # started by _directories: a directory team's members before the first step pages it
    schedule = app[overrides.SCHEDULE] = Schedule(config, store, clock,  # the teams with run-time overrides
                                                  directory_members=roster.members)
    roster.on_change = schedule.rebuild
    await schedule.load()
    rules = app[notification_rules.RULES] = RuleBook(config, store)  # engineers' personal notification rules
    await rules.load()
    store = watched(store, app[console.HUB])  # the services' writes, published to the console once committed
    templates = app[TEMPLATES]
    # One direction: alerts -> scheduler -> paging, the hotline beside alerts. A lower service reports
    # upward only through the callbacks handed to it here (bound late: each names a service built below).
    alert_service: AlertService
    scheduler: Scheduler
    kinds = PageKinds(AlertCallKind(templates, lambda alert_id, by, how: alert_service.acknowledge(
        alert_id, by=by, how=how)))
    chat = ChatPoster()
    running.push_async_callback(chat.close)
    messages = MessagePages(config=config, store=store, clock=clock, links=app[action_links.LINKS],
                            templates=app[action_links.PAGES], mailer=app.get(MAILER), chat=chat,
                            engineers=roster.engineer)
    paging = Paging(config=config, store=store, clock=clock, voice=providers.voice, sms=providers.sms,
                    templates=templates, kinds=kinds, on_step_failed=lambda page: scheduler.step_failed(page),
                    lines=cluster.lines, telemetry=app[TELEMETRY], engineers=roster.engineer, messages=messages,
                    on_later_page=lambda when: scheduler.later_page_written(when))
    later = LaterPages(config=config, store=store, clock=clock,
                       # as resent: a rule's chosen delay is no dial latency (gateway_alert_to_first_dial_seconds)
                       send=paging.send_written,
                       skip=lambda page, detail: paging.finish(page, CallOutcome.CANCELED, detail))
    scheduler = Scheduler(config=config, store=store, clock=clock, paging=paging, kinds=kinds,
                          teams=schedule.team, engineers=roster.engineer, directory_group=roster.group,
                          rules=rules.rules_for, later_pages=later)
    windows = app[maintenance.MAINTENANCE] = Maintenance(config=config, store=store, clock=clock,
                                                         due_at=scheduler.due_at, released=app[TELEMETRY].not_timed)
    await windows.load()
    alert_service = AlertService(config=config, store=store, clock=clock, scheduler=scheduler, paging=paging,
                                 kinds=kinds, maintenance=windows)
    heartbeats = app[maintenance.HEARTBEATS] = Heartbeats(config=config, store=store, clock=clock,
                                                          alerts=alert_service)
    hotline = HotlineService(config=config, store=store, clock=clock, alerts=alert_service, paging=paging,
                             templates=templates, voice=providers.voice, due_at=scheduler.due_at,
                             teams=schedule.team)
    kinds.register(HOTLINE_SOURCE, hotline.page_kind)
    app[ALERTS], app[SCHEDULER], app[PAGING] = alert_service, scheduler, paging
    replies = SmsReplies(config=config, store=store, alerts=alert_service, templates=templates,
                         by_number=roster.by_number)
    notices = NoticeService(config=config, store=store, clock=clock, teams=schedule.team,
                            notifiers=[SmsNotifier(providers.sms), EmailNotifier(app.get(MAILER))],
                            engineers=roster.engineer)
    await providers.open(GatewayEvents(paging, replies, hotline, notices), carried_by=paging.carried_by,
                         wanted=paging.page_wanted, lines=cluster.lines)
    running.push_async_callback(providers.close)
    running.push_async_callback(cluster.stop)  # after paging: its lock goes with it, the others take over what is left
    await paging.start()
    running.push_async_callback(paging.stop)
    await scheduler.start()
    running.push_async_callback(scheduler.stop)
    running.push_async_callback(notices.stop)
    await windows.start()  # windows over while the gateway was down release their held alerts now
    running.push_async_callback(windows.stop)
    await heartbeats.start()
    running.push_async_callback(heartbeats.stop)
    await cluster.start(relayed(PeerEvents(paging, scheduler, providers.manager, hotline, schedule, windows, rules),
                                app[console.HUB]))
    await windows.changed_elsewhere()  # a window another gateway changed before this one listened
    await schedule.load()  # again: a change another gateway made before this one listened was not pushed here
    refresh = asyncio.create_task(schedule.keep_fresh(), name="overrides refresh")
    refresh_rules = asyncio.create_task(rules.keep_fresh(), name="notification rules refresh")
    running.push_async_callback(_cancelled, refresh, refresh_rules)
    schedule.on_change(notices.replan)  # an override changes who takes over: plan the notices again
    await notices.start()
    log.info("gateway ready: store %s, voice via %s, SMS via %s, %d team(s), %d hotline(s)",
             describe_store(config), ", ".join(config.voice_order), ", ".join(config.sms_order) or "nothing",
             len(config.teams), len(config.hotlines))


async def _cancelled(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class MaskingAccessLogger(AbstractAccessLogger):
    """Access log lines with phone numbers in paths masked and calendar feed secrets redacted."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = loggable(request.path)
        self.logger.info('%s "%s %s" %d %.1fms', request.remote, request.method, path, response.status, time * 1000)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def run_server(config: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM, on uvloop (a faster event loop: less CPU per alert and call)."""
    app = create_app(config)
    web.run_app(
        app,
        host=host or config.host,
        port=port or config.port,
        access_log_class=MaskingAccessLogger,
        print=lambda text: log.info(text.strip()),
        loop=uvloop.new_event_loop(),
    )


async def _directories(app: web.Application) -> AsyncIterator[None]:
    """The directory teams' members, fetched before the gateway starts and kept fresh until it has stopped."""
    roster = app[ROSTER]
    await roster.start()
    try:
        yield
    finally:
        await roster.close()
