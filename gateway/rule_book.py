"""The personal notification rules in force: the store's sets (changed at run time) over the config's.

Kept in memory (the scheduler plans a step without a round trip), reloaded on every change. With several
gateways on one PostgreSQL, a change is pushed to every gateway (``{"notification_rules": engineer}`` on
channel 'gateway', in the transaction that makes it) and each reloads that engineer; every set is read again
every ``REFRESH_S`` in case a push was lost.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.config import Config
from gateway.notification_rules import NotificationRule
from gateway.refresh import read_again_every
from gateway.store import NotificationRuleChange, Store

log = logging.getLogger(__name__)

REFRESH_S = 60.0


class RuleBook:
    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self._stored: dict[str, NotificationRuleChange] = {}
        self._lock = asyncio.Lock()  # one reload at a time: a slow read cannot overwrite a newer one

    async def load(self) -> None:
        async with self._lock:
            self._stored = {change.engineer: change for change in await self.store.notification_rule_sets()}

    async def reload(self, engineer: str) -> None:
        async with self._lock:
            changes = await self.store.notification_rule_sets(engineer)
            if changes:
                self._stored[engineer] = changes[0]
            else:
                self._stored.pop(engineer, None)

    async def keep_fresh(self) -> None:
        """Read every set again every ``REFRESH_S`` (a push from another gateway may be lost); until cancelled."""
        await read_again_every(REFRESH_S, self.load, what="notification rules")

    def rules_for(self, engineer: str) -> tuple[NotificationRule, ...]:
        """The engineer's rules in force; empty: they are paged as each step says."""
        stored = self._stored.get(engineer)
        if stored is not None and stored.rules:
            return stored.rules
        known = self.config.engineers.get(engineer)
        return known.notification_rules if known is not None else ()

    def stored(self, engineer: str) -> NotificationRuleChange | None:
        """The set changed at run time that is in force, if any."""
        return self._stored.get(engineer)

    async def change(self, engineer: str, rules: tuple[NotificationRule, ...] | None, *, by: str,
                     now: float) -> NotificationRuleChange:
        """Replace the engineer's rules (``None``: back to the config's); recorded, logged, in force at once."""
        change = await self.store.change_notification_rules(engineer, rules, by=by, now=now)
        await self.reload(engineer)
        what = ", ".join(rule.describe() for rule in rules) if rules is not None else "back to the config's"
        log.info("notification rules of %s changed by %s: %s", engineer, by, what)
        return change
