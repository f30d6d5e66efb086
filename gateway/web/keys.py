"""Typed application keys shared by the handlers and the composition root."""

from __future__ import annotations

from aiohttp import web

from core.clock import Clock
from gateway.alerts import AlertService
from gateway.cluster import Cluster
from gateway.config import Config
from gateway.directory.roster import Roster
from gateway.mailer import Mailer
from gateway.paging import Paging
from gateway.provider_setup import Providers
from gateway.scheduler import Scheduler
from gateway.store import Store
from gateway.telemetry import Telemetry
from gateway.templates import Templates
from providers.sandbox import SandboxProvider

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
ALERTS = web.AppKey("alerts", AlertService)
SCHEDULER = web.AppKey("scheduler", Scheduler)
PAGING = web.AppKey("paging", Paging)
SANDBOX = web.AppKey("sandbox", SandboxProvider)
PROVIDERS = web.AppKey("providers", Providers)
CLUSTER = web.AppKey("cluster", Cluster)
TELEMETRY = web.AppKey("telemetry", Telemetry)
ROSTER = web.AppKey("roster", Roster)  # directory teams' members and people
TEMPLATES = web.AppKey("templates", Templates)  # every text the gateway says, writes or mails (templates_dir wins)
MAILER = web.AppKey("mailer", Mailer)  # set when an email: section is configured (for any notice by mail)
