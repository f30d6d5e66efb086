"""Several gateways on one database: what the services see of the others.

Every gateway is a peer. On PostgreSQL (``gateway/pg_cluster.py``) each one owns the escalations and pages
it runs, takes a line from a ledger all of them share before each dial, hears what the others push (an alert
closed elsewhere, a line freed) and takes over the work of one that died. On SQLite there is one gateway:
``Solo`` does nothing and the dispatcher's own counts are the whole truth.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Protocol

from gateway.store import Page


def new_gateway_id() -> str:
    """A name for this gateway process, unique across restarts and machines (readable in logs)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Lines(Protocol):
    """Provider capacity and pace shared by every gateway (a ledger of the calls holding a line)."""

    async def take(self, call_id: str, priority: str, *, capacity: int, reserved: int, rate: float,
                   high_waiting: int, hold_s: float) -> float:
        """Take a line for a call, for at most ``hold_s`` unless freed or kept: 0 = taken; > 0 = the pace
        allows none yet, try after that many seconds; < 0 = none free for this priority: wait until one is
        freed (``Peers.line_freed``)."""
        ...

    async def carry(self, call_id: str, provider: str, *, capacity: int) -> bool:
        """Whether ``provider`` (with ``capacity`` lines of its own) may carry the call, which holds a line."""
        ...

    async def keep(self, call_id: str, hold_s: float) -> None:
        """The call keeps its line for ``hold_s`` more (an engineer's leg bridged to a caller)."""
        ...

    async def free(self, call_id: str) -> None:
        """The call is over (whichever gateway placed it): its line is free (idempotent)."""
        ...


class Peers(Protocol):
    """What a gateway does when the others tell it something (implemented by paging)."""

    async def alert_closed_elsewhere(self, alert_id: int) -> None:
        """Another gateway acknowledged or resolved the alert: stop this gateway's calls and texts of it."""
        ...

    async def line_freed(self, call_id: str, *, placed_here: bool) -> None:
        """A line was freed somewhere; ``placed_here``: the call was placed by this gateway."""
        ...

    async def took_over(self, gateway_id: str, *, alerts: list[int], unsent: list[Page],
                        live_calls: list[Page]) -> None:
        """Another gateway died and its work is now this one's (already so in the database): the escalations
        of ``alerts`` (the scheduler must look again), its ``unsent`` pages and its ``live_calls`` (placed,
        no outcome)."""
        ...

    async def resend_unsent(self) -> None:
        """Send this gateway's unsent pages again (after a takeover that failed half-way)."""
        ...

    async def rejoined(self) -> None:
        """This gateway was cut off from the others for a while (pushes may be lost): catch up."""
        ...

    async def overrides_changed(self, team: str) -> None:
        """An override of ``team`` was added or removed (here or on another gateway): read them again."""
        ...

    async def maintenance_changed(self, held_until: float | None = None) -> None:
        """A maintenance window was added or ended (here or elsewhere): read them and look at the holds again;
        or (``held_until``) an alert was held until then."""
        ...

    async def notification_rules_changed(self, engineer: str) -> None:
        """``engineer``'s notification rules changed (here or on another gateway): read them again."""
        ...


class Cluster(Protocol):
    gateway_id: str
    lines: Lines | None

    @property
    def problem(self) -> str | None:
        """Why this gateway is not a working member now (for /readyz), or None."""
        ...

    async def start(self, peers: Peers) -> None: ...

    async def stop(self) -> None: ...


class Solo:
    """One gateway on its own (SQLite): nobody to hear from, no shared ledger."""

    lines: Lines | None = None
    problem: str | None = None

    def __init__(self) -> None:
        self.gateway_id = new_gateway_id()

    async def start(self, peers: Peers) -> None:
        return None

    async def stop(self) -> None:
        return None
