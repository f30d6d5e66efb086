"""Several gateways on one PostgreSQL: membership, pushes between gateways, taking over a dead one's work.

- **Membership.** Each gateway registers in ``gateways`` and holds a session-level advisory lock on a
  connection of its own, outside the pool. A gateway killed with ``kill -9`` loses that connection at once
  (a machine lost without a word: after TCP keepalives, about 8 s), and PostgreSQL releases the lock.
  Every gateway looks, every ``check_interval_s``, for locks of the others that nobody holds; one free
  for ``grace_s`` in a row (longer than a live gateway needs to notice a dropped connection and join
  again) is taken, and its gateway's work taken over in one transaction (``PgStore.inherit``), so
  exactly one survivor does. A lock, unlike a heartbeat lease, never expires because a live gateway was
  slow (a busy event loop, a pause): only a dead connection frees it. A gateway whose work was taken
  while it was away dials nothing it had queued: a page is dialled only by its owner (``call_wanted``).
- **Pushes.** The same connection LISTENs on channel ``gateway``: an alert closed on another gateway
  (``PgStore.change_status`` notifies in its transaction, so the push leaves exactly when the change is
  committed) and lines freed (``gateway_free_line`` in migration 003).
- **Lines.** ``PgLines`` takes and frees lines in the shared ledger (migration 003's functions): one
  round trip per dial, serialized by an advisory transaction lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any

from gateway.cluster import Lines, Peers
from gateway.pg_store import LOST, PgStore

log = logging.getLogger(__name__)

CHANNEL = "gateway"
GATEWAY_LOCKS = 1735355244  # the advisory lock namespace of gateway membership (migration 003)
# The other gateways whose membership lock is held by nobody (two-key advisory locks show the first key
# as classid, the second as objid, and objsubid 2).
_FREE_LOCKS = """
SELECT g.id, g.lock_key FROM gateways g
WHERE g.id <> $1 AND NOT EXISTS (
    SELECT FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = $2::bigint::oid AND l.objid = g.lock_key::bigint::oid)
"""


class PgLines:
    """The line ledger shared by every gateway on the database (each call bounded: a hung database must
    not stall dialling; the caller decides what a timeout means)."""

    def __init__(self, store: PgStore, *, timeout_s: float = 2.0) -> None:
        self._store = store
        self._timeout_s = timeout_s

    async def _value(self, query: str, *args: object) -> Any:
        async with asyncio.timeout(self._timeout_s):  # not wait_for: on Python 3.11 it can swallow a cancel
            return await self._store.single(lambda db: db.fetchval(query, *args))

    async def take(self, call_id: str, priority: str, *, capacity: int, reserved: int, rate: float,
                   high_waiting: int, hold_s: float) -> float:
        return float(await self._value("SELECT gateway_take_line($1, $2, $3, $4, $5, $6, $7, $8)", call_id,
                                       priority, self._store.gateway_id, capacity, reserved, rate, high_waiting,
                                       hold_s))

    async def carry(self, call_id: str, provider: str, *, capacity: int) -> bool:
        return bool(await self._value("SELECT gateway_carry_line($1, $2, $3)", call_id, provider, capacity))

    async def keep(self, call_id: str, hold_s: float) -> None:
        await self._value("SELECT gateway_keep_line($1, $2)", call_id, hold_s)

    async def free(self, call_id: str) -> None:
        await self._value("SELECT gateway_free_line($1, $2)", call_id, self._store.gateway_id)


class PgCluster:
    def __init__(self, store: PgStore, *, check_interval_s: float = 0.25, grace_s: float = 0.75) -> None:
        self.store = store
        self.gateway_id = store.gateway_id
        self.lines: Lines | None = PgLines(store)
        self.check_interval_s = check_interval_s
        # A gateway's lock must stay free this long before a survivor takes its work: longer than a live
        # gateway needs to notice a dropped connection and join again (one check plus a reconnect).
        self.grace_s = grace_s
        self._peers: Peers | None = None
        self._conn: Any = None  # asyncpg.Connection, outside the pool
        self._joined = False
        self._free_since: dict[tuple[str, int], float] = {}  # (gateway, lock key) -> when first seen free
        self._task: asyncio.Task[None] | None = None
        self._pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._handler: asyncio.Task[None] | None = None
        self._resend_unsent = False

    @property
    def problem(self) -> str | None:
        if self._task is not None and self._conn is None:
            return "lost its connection to the other gateways; they may be taking over its work"
        return None

    async def start(self, peers: Peers) -> None:
        self._peers = peers
        await self._join()
        self._handler = asyncio.create_task(self._handle_pushes(), name="gateway pushes")
        self._task = asyncio.create_task(self._watch(), name="gateway membership")
        log.info("cluster: gateway %s joined (other gateways on this database share its work)", self.gateway_id)

    async def stop(self) -> None:
        for task in (self._task, self._handler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._handler = None
        await self._drop_connection()  # its lock goes with it: the others take over what is left

    # ------------------------------------------------------------ membership

    async def _join(self) -> bool:
        """Register (again) and hold the lock; True when, while away, another gateway took this one's work.

        Each join takes a fresh lock key, in the same row: a survivor that saw the old key free deletes the
        row only with that key (``PgStore.inherit``), so either it took the work first (the row is gone and
        is made anew) or this gateway came back first (the survivor finds nothing to take).
        """
        conn = await self.store.connect_alone(application_name="oncall-gateway-membership")
        try:
            async with conn.transaction():
                key = await conn.fetchval(
                    "UPDATE gateways SET lock_key = nextval(pg_get_serial_sequence('gateways', 'lock_key')),"
                    " pid = $2 WHERE id = $1 RETURNING lock_key", self.gateway_id, os.getpid())
                taken_over = key is None and self._joined
                if key is None:
                    key = await conn.fetchval(
                        "INSERT INTO gateways (id, host, pid, started_at) VALUES ($1, $2, $3, $4) RETURNING lock_key",
                        self.gateway_id, socket.gethostname(), os.getpid(), time.time())
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", GATEWAY_LOCKS, key):
                raise RuntimeError(f"the membership lock {key} of a fresh key is held by someone else")
            await conn.add_listener(CHANNEL, self._heard)
        except BaseException:
            conn.terminate()
            raise
        self._conn, self._joined = conn, True
        return taken_over

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except (TimeoutError, *LOST):
                conn.terminate()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                free = await self._free_locks()
            except asyncio.CancelledError:
                raise
            except (*LOST, TimeoutError) as exc:
                await self._join_again(exc)
                continue
            try:
                await self._take_over_the_dead(free)
                if self._resend_unsent and self._peers is not None:
                    self._resend_unsent = False
                    await self._peers.resend_unsent()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._resend_unsent = True
                log.exception("cluster: error while taking over another gateway's work; trying again")

    async def _free_locks(self) -> set[tuple[str, int]]:
        """The other gateways whose membership lock nobody holds now (read, not taken)."""
        if self._conn is None or self._conn.is_closed():
            raise ConnectionError("the membership connection is closed")
        async with asyncio.timeout(5):
            rows = await self._conn.fetch(_FREE_LOCKS, self.gateway_id, GATEWAY_LOCKS)
        return {(row["id"], row["lock_key"]) for row in rows}

    async def _join_again(self, error: BaseException) -> None:
        log.error("cluster: lost the membership connection (%s); joining again (if that takes longer than "
                  "%.2f s, other gateways take over this gateway's work)", str(error) or type(error).__name__,
                  self.grace_s)
        await self._drop_connection()
        while self._conn is None:
            try:
                taken_over = await self._join()
            except (*LOST, TimeoutError, RuntimeError) as again:
                log.error("cluster: could not join again: %s", again)
                await asyncio.sleep(0.2)
                continue
            if taken_over:
                log.error("cluster: gateway %s joined again, but another gateway took over its work meanwhile; "
                          "its calls still ringing stay up, nothing queued here is dialled", self.gateway_id)
            else:
                log.warning("cluster: gateway %s joined again in time; it keeps its work", self.gateway_id)
            if self._peers is not None:
                await self._peers.rejoined()

    async def _take_over_the_dead(self, free: set[tuple[str, int]]) -> None:
        now = asyncio.get_running_loop().time()
        self._free_since = {member: self._free_since.get(member, now) for member in free}
        for (gone, key), since in sorted(self._free_since.items(), key=lambda item: item[1]):
            if now - since < self.grace_s or self._conn is None or self._peers is None:
                continue
            conn = self._conn
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", GATEWAY_LOCKS, key):
                continue  # another survivor is taking it over
            try:
                inherited = await self.store.inherit(gone, key)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", GATEWAY_LOCKS, key)
            self._free_since.pop((gone, key), None)
            if inherited is None:
                continue  # another survivor was first, or it came back in time
            log.warning("cluster: gateway %s is gone; this gateway took over its work: %d escalation(s), "
                        "%d unsent page(s), %d call(s) in progress", gone, len(inherited.alerts),
                        len(inherited.unsent), len(inherited.live_calls))
            await self._peers.took_over(gone, alerts=inherited.alerts, unsent=inherited.unsent,
                                        live_calls=inherited.live_calls)

    # ---------------------------------------------------------------- pushes

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("cluster: unreadable push ignored: %.200r", payload)
            return
        if isinstance(message, dict):
            self._pushes.put_nowait(message)

    async def _handle_pushes(self) -> None:
        while True:
            message = await self._pushes.get()
            if self._peers is None:
                continue
            try:
                if "closed" in message and message.get("by") != self.gateway_id:
                    await self._peers.alert_closed_elsewhere(int(message["closed"]))
                elif "line_freed" in message:
                    await self._peers.line_freed(str(message["line_freed"]),
                                                 placed_here=message.get("owner") == self.gateway_id)
                elif "overrides" in message:
                    await self._peers.overrides_changed(str(message["overrides"]))
                elif "maintenance" in message:
                    until = message.get("until")
                    await self._peers.maintenance_changed(float(until) if isinstance(until, int | float) else None)
                elif "notification_rules" in message:
                    await self._peers.notification_rules_changed(str(message["notification_rules"]))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: error while handling a push from another gateway: %.200r; catching up",
                              message)
                await self._catch_up()

    async def _catch_up(self) -> None:
        """What a push said may be lost: look again as after a rejoin (the overrides read again, and more)."""
        if self._peers is None:
            return
        try:
            await self._peers.rejoined()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cluster: catching up failed too (the overrides are read again within a minute)")
