"""Typed application keys shared by the handlers and the composition root."""

from __future__ import annotations

from aiohttp import web

from gateway.clock import Clock
from gateway.config import Config
from gateway.escalation import EscalationEngine
from gateway.provider_setup import Providers
from gateway.store import Store
from providers.sandbox import SandboxProvider

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
ENGINE = web.AppKey("engine", EscalationEngine)
SANDBOX = web.AppKey("sandbox", SandboxProvider)
PROVIDERS = web.AppKey("providers", Providers)
