"""Which phone providers a config asks for, built in one place.

Providers are constructed synchronously (their webhook routes must be on the
router before the app starts) and opened/closed with the app.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import web

from core.clock import Clock
from gateway.config import Config
from providers.asterisk import AsteriskProvider
from providers.base import ProviderEvents, SmsProvider, VoiceProvider
from providers.call_session import SessionStore
from providers.sandbox import SandboxProvider, Script
from providers.twilio import TwilioProvider

log = logging.getLogger(__name__)


class ProviderLifecycle(Protocol):
    """What a provider does with the app: open with the gateway's events, close, say if it is ready."""

    async def open(self, events: ProviderEvents) -> None: ...

    async def close(self) -> None: ...

    def readiness(self) -> dict[str, str]:
        """``{"voice:<name>": "ok" | "<what is wrong>"}`` for /readyz."""
        ...


@dataclass(kw_only=True)
class Providers:
    voice: VoiceProvider
    sms: SmsProvider | None
    sandbox: SandboxProvider | None = None
    routes: list[web.RouteDef] = field(default_factory=list)
    #: each opened on startup with the gateway's events, closed on cleanup, asked for readiness
    lifecycle: list[ProviderLifecycle] = field(default_factory=list)

    async def open(self, events: ProviderEvents) -> None:
        for part in self.lifecycle:
            await part.open(events)

    async def close(self) -> None:
        for part in reversed(self.lifecycle):
            await part.close()

    def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        for part in self.lifecycle:
            checks.update(part.readiness())
        return checks


def build_providers(config: Config, clock: Clock, sessions: SessionStore | None = None) -> Providers:
    """Asterisk when configured, else Twilio, else the sandbox; SMS via Twilio or the sandbox.

    ``sessions`` keeps the flow state of live calls (the gateway's store, opened before any call).
    """
    if config.voice_provider == "asterisk" and config.asterisk is not None:
        return _asterisk_providers(config, clock)
    if config.voice_provider == "sandbox":
        sandbox = SandboxProvider(
            clock=clock,
            caller_id=config.sandbox.caller_id,
            max_concurrent_calls=config.sandbox.lines,
            scripts={p.number: Script(behaviour=p.behaviour, after_s=p.after_s, digits=p.digits)
                     for p in config.sandbox.phones},
        )  # no session store: the simulated phones live in this process and end with it
        return Providers(voice=sandbox, sms=sandbox, sandbox=sandbox, lifecycle=[sandbox])
    if config.voice_provider == "twilio" and config.twilio is not None:
        twilio = TwilioProvider(config.twilio, public_url=config.public_url)
        return Providers(voice=twilio, sms=twilio, routes=twilio.routes(), lifecycle=[twilio])
    raise ValueError(f"voice provider {config.voice_provider!r} is not available in this build")


def _asterisk_providers(config: Config, clock: Clock) -> Providers:
    """Voice on the operator's Asterisk; SMS through Twilio when configured, else none."""
    assert config.asterisk is not None
    asterisk = AsteriskProvider(config.asterisk, clock=clock, default_region=config.default_region,
                                hotlines={hotline.name: hotline.number for hotline in config.hotlines})
    if config.twilio is None:
        log.info("voice via Asterisk; no SMS provider configured (SMS steps will fail)")
        return Providers(voice=asterisk, sms=None, lifecycle=[asterisk])
    twilio = TwilioProvider(config.twilio, public_url=config.public_url)
    return Providers(voice=asterisk, sms=twilio, routes=twilio.routes(voice=False), lifecycle=[asterisk, twilio])
