"""The one place that wires concrete providers in: each configured provider as a plugin, behind the
provider manager that picks by channel and operator order and fails over.

Providers are constructed synchronously (their webhook routes must be on the router before the app
starts) and opened and closed with the app. Each reports to the manager, the manager to the gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from core.clock import Clock
from gateway.cluster import Lines
from gateway.config import Config
from gateway.provider_manager import CarriedBy, ProviderManager
from providers.asterisk import AsteriskProvider
from providers.base import Capabilities, ProviderEvents, SmsProvider, VoiceProvider
from providers.call_session import SessionStore
from providers.kavenegar import KavenegarProvider
from providers.sandbox import SandboxProvider
from providers.sandbox_api import JsonReader, sandbox_routes
from providers.twilio import TwilioProvider

log = logging.getLogger(__name__)


class ProviderPlugin(Protocol):
    """A provider as the app sees it: what it can carry, and its life with the app."""

    name: str
    capabilities: Capabilities

    async def open(self, events: ProviderEvents) -> None: ...

    async def close(self) -> None: ...

    def readiness(self) -> dict[str, str]:
        """``{"voice:<name>": "ok" | "<what is wrong>"}`` for /readyz."""
        ...


@dataclass(kw_only=True)
class Providers:
    manager: ProviderManager  # the gateway's one voice and SMS provider
    plugins: list[ProviderPlugin]
    sandbox: SandboxProvider | None = None
    webhook_routes: list[web.RouteDef] = field(default_factory=list)  # each checks its provider's signature
    api_routes: list[web.RouteDef] = field(default_factory=list)  # behind the API token (the sandbox's phones)

    @property
    def voice(self) -> VoiceProvider:
        return self.manager

    @property
    def sms(self) -> SmsProvider | None:
        return self.manager if self.manager.sms_order else None

    async def open(self, events: ProviderEvents, *, carried_by: CarriedBy | None = None,
                   wanted: Callable[[str], Awaitable[bool]] | None = None, lines: Lines | None = None) -> None:
        """Open every provider, reporting to the manager, which reports to ``events``. ``carried_by`` hears
        which provider carried a page after a failover (for the alert's timeline); ``wanted`` says whether
        a page may still go out (checked before a failover sends it again); ``lines`` is the line ledger
        shared with other gateways, if any."""
        self.manager.events = events
        self.manager.carried_by = carried_by
        self.manager.wanted = wanted
        self.manager.lines = lines
        for plugin in self.plugins:
            await plugin.open(self.manager.events_for(plugin.name))

    async def close(self) -> None:
        for plugin in reversed(self.plugins):
            await plugin.close()
        await self.manager.close()

    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        for plugin in self.plugins:
            checks.update(plugin.readiness())
        checks.update(self.manager.readiness())
        return checks


def build_providers(config: Config, clock: Clock, *, read_json: JsonReader,
                    sessions: SessionStore | None = None) -> Providers:
    """Every provider the config names, in the operator's order per channel (``providers:``).

    ``read_json`` is the gateway's one bounded JSON body reader, for the routes a provider brings.
    ``sessions`` keeps live calls' flow state (the gateway's store) for the providers that can carry a
    call on after a restart: Twilio, whose calls live in its cloud. The sandbox's phones live in this
    process, and an Asterisk call's FastAGI session ends with it, so neither stores its sessions.
    """
    plugins: dict[str, SandboxProvider | AsteriskProvider | TwilioProvider | KavenegarProvider] = {}
    sandbox: SandboxProvider | None = None
    webhook_routes: list[web.RouteDef] = []
    api_routes: list[web.RouteDef] = []
    names = dict.fromkeys((*config.voice_order, *config.sms_order))
    if "sandbox" in names:
        sandbox = SandboxProvider(
            clock=clock,
            caller_id=config.sandbox.caller_id,
            max_concurrent_calls=config.sandbox.lines,
            scripts={phone.number: phone for phone in config.sandbox.phones},
        )
        plugins["sandbox"] = sandbox
        api_routes += sandbox_routes(sandbox, region=config.default_region, read_json=read_json)
    if "asterisk" in names and config.asterisk is not None:
        plugins["asterisk"] = AsteriskProvider(
            config.asterisk, clock=clock, default_region=config.default_region,
            hotlines={hotline.name: hotline.number for hotline in config.hotlines})
    if "twilio" in names and config.twilio is not None:
        twilio = TwilioProvider(config.twilio, public_url=config.public_url, session_store=sessions,
                                shared_sessions=config.store_url is not None)
        plugins["twilio"] = twilio
        webhook_routes += twilio.routes(voice="twilio" in config.voice_order)
    if "kavenegar" in names and config.kavenegar is not None:
        kavenegar = KavenegarProvider(config.kavenegar, clock=clock)
        plugins["kavenegar"] = kavenegar
        webhook_routes += kavenegar.routes()
    voice: list[VoiceProvider] = [p for n in config.voice_order if isinstance(
        p := plugins.get(n), SandboxProvider | AsteriskProvider | TwilioProvider)]
    sms: list[SmsProvider] = [p for n in config.sms_order
                              if isinstance(p := plugins.get(n), SandboxProvider | TwilioProvider | KavenegarProvider)]
    if not sms:
        log.info("no SMS provider configured: SMS steps will fail")
    return Providers(manager=ProviderManager(voice=voice, sms=sms), plugins=list(plugins.values()), sandbox=sandbox,
                     webhook_routes=webhook_routes, api_routes=api_routes)
