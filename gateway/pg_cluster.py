"""Several gateways on one PostgreSQL: membership, pushes between gateways, taking over a dead one's work.

- **Membership.** Each gateway registers in ``gateways`` and holds a session-level advisory lock on a
  connection of its own, outside the pool. A gateway killed with ``kill -9`` loses that connection at once
  (a machine lost without a word: after TCP keepalives, about 8 s), and PostgreSQL releases the lock.
  Every gateway tries, every ``check_interval_s``, to take the locks of the others: whoever gets one
  takes over that gateway's work in one transaction (``PgStore.inherit``), so exactly one survivor does.
  A lock, unlike a heartbeat lease, never expires because a live gateway was slow (a busy event loop, a
  pause): only a dead connection frees it.
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
_RECONNECT_S = 1.0


class PgLines:
    """The line ledger shared by every gateway on the database."""

    def __init__(self, store: PgStore) -> None:
        self._store = store

    async def take(self, call_id: str, priority: str, *, capacity: int, reserved: int, rate: float,
                   high_waiting: int) -> float:
        wait = await self._store.single(lambda db: db.fetchval(
            "SELECT gateway_take_line($1, $2, $3, $4, $5, $6, $7)",
            call_id, priority, self._store.gateway_id, capacity, reserved, rate, high_waiting))
        return float(wait)

    async def free(self, call_id: str) -> None:
        await self._store.single(lambda db: db.execute(
            "SELECT gateway_free_line($1, $2)", call_id, self._store.gateway_id))


class PgCluster:
    def __init__(self, store: PgStore, *, check_interval_s: float = 0.25) -> None:
        self.store = store
        self.gateway_id = store.gateway_id
        self.lines: Lines | None = PgLines(store)
        self.check_interval_s = check_interval_s
        self._peers: Peers | None = None
        self._conn: Any = None  # asyncpg.Connection, outside the pool
        self._task: asyncio.Task[None] | None = None
        self._pushes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._handler: asyncio.Task[None] | None = None

    async def start(self, peers: Peers) -> None:
        self._peers = peers
        await self._join()
        self._handler = asyncio.create_task(self._handle_pushes(), name="gateway pushes")
        self._task = asyncio.create_task(self._watch(), name="gateway membership")
        log.info("cluster: gateway %s joined (other gateways on this database share its work)", self.gateway_id)

    @property
    def problem(self) -> str | None:
        if self._task is not None and self._conn is None:
            return "lost its connection to the other gateways; they may be taking over its work"
        return None

    async def stop(self) -> None:
        for task in (self._task, self._handler):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._task = self._handler = None
        await self._drop_connection()  # its lock goes with it: the others take over what is left

    # ------------------------------------------------------------ membership

    async def _join(self) -> None:
        conn = await self.store.connect_alone(
            application_name="oncall-gateway-membership",
            # A machine lost without closing the connection is noticed in about 5 + 3 x 1 s.
            tcp_keepalives_idle="5", tcp_keepalives_interval="1", tcp_keepalives_count="3",
        )
        try:
            key = await conn.fetchval(
                "INSERT INTO gateways (id, host, pid, started_at) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (id) DO UPDATE SET pid = excluded.pid RETURNING lock_key",
                self.gateway_id, socket.gethostname(), os.getpid(), time.time())
            await conn.execute("SELECT pg_advisory_lock($1, $2)", GATEWAY_LOCKS, key)
            await conn.add_listener(CHANNEL, self._heard)
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except (TimeoutError, *LOST):
                conn.terminate()

    async def _watch(self) -> None:
        while True:
            try:
                await self._take_over_the_dead()
            except asyncio.CancelledError:
                raise
            except LOST as exc:
                log.error("cluster: lost the membership connection (%s); other gateways may take over this "
                          "gateway's work meanwhile; reconnecting", exc)
                await self._drop_connection()
                while self._conn is None:
                    await asyncio.sleep(_RECONNECT_S)
                    try:
                        await self._join()
                        log.warning("cluster: gateway %s joined again", self.gateway_id)
                    except (*LOST, OSError) as again:
                        log.error("cluster: could not join again: %s", again)
            except Exception:
                log.exception("cluster: error while checking the other gateways; trying again")
            await asyncio.sleep(self.check_interval_s)

    async def _take_over_the_dead(self) -> None:
        conn = self._conn
        if conn is None or self._peers is None:
            return
        # MATERIALIZED: the filter on our own id runs first, so we never take our own (re-entrant) lock.
        dead = await conn.fetch(
            "WITH others AS MATERIALIZED (SELECT id, lock_key FROM gateways WHERE id <> $1)"
            " SELECT id, lock_key FROM others WHERE pg_try_advisory_lock($2, lock_key)",
            self.gateway_id, GATEWAY_LOCKS)
        for row in dead:
            gone, key = row["id"], row["lock_key"]
            try:
                inherited = await self.store.inherit(gone)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", GATEWAY_LOCKS, key)
            if inherited is None:
                continue  # another survivor was first
            unsent, live = inherited
            log.warning("cluster: gateway %s is gone; this gateway took over its work: %d unsent page(s), "
                        "%d call(s) in progress", gone, len(unsent), len(live))
            await self._peers.took_over(gone, unsent=unsent, live_calls=live)

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
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster: error while handling a push from another gateway: %.200r", message)
