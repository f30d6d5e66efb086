"""The PostgreSQL store: the same Store as ``sqlite_store``, for when one machine is not enough.

Driver: asyncpg. ``python -m bench.pg_driver`` ran the same statements through psycopg 3 (async, same pool
size) on 2 cores: asyncpg used half the client CPU per alert, did 1.6-1.9x the alerts/s at concurrency 50
and answered faster alone (p50 1.1 ms vs 2.0-5.5); its pool is built in. Untyped: rows are ``Any`` (``_Db``).

Every method that changes state is one transaction, committed before it returns (``synchronous_commit``
stays on: an alert is durable before the 202). Two rules keep it right when several gateways share the
database later:

- A transaction that reads an alert's state and then changes it locks the alert's row first
  (``SELECT ... FOR UPDATE``), and reads the rest in a later statement, which (READ COMMITTED) sees
  whatever the previous holder of that lock committed.
- ``create_alert`` takes a transaction-level advisory lock on the dedup key before it looks for the
  open alert, so two requests with one key never both insert: the second finds the first's alert, and
  an ignored duplicate never draws a number from the id sequence. (A sequence is not transactional: a
  transaction that fails after its insert, or a server crash, can still leave a gap. Duplicates never do.)

PostgreSQL's ``text`` cannot hold NUL, which a client may send (JSON ``"\\u0000"``) and SQLite stores;
text goes through ``_in``/``_out``, which escape it reversibly, so every Python string round-trips.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

import asyncpg

from core.enums import AlertStatus, Channel, PageStatus, Priority
from gateway.cluster import new_gateway_id
from gateway.migrations import scripts
from gateway.notification_rules import NotificationRule, rules_from_text, rules_to_text
from gateway.store import (
    Alert,
    CalendarFeed,
    Escalation,
    Hold,
    HoldWindow,
    NewAlert,
    NewMaintenance,
    NewOverride,
    NewPage,
    Notice,
    NoticeKey,
    NotificationRuleChange,
    Page,
    StepPlan,
    StoredMaintenance,
    StoredOverride,
    TimelineEntry,
)

log = logging.getLogger(__name__)

T = TypeVar("T")
# What a connection the server dropped (restart, failover, idle timeout) raises on its next use.
LOST = (
    asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError, OSError,
)

_LOCKS = 0x6761_7465  # advisory lock namespace of the gateway ("gate"); the second key says what is locked
_MIGRATION_LOCK = 0
_PING_TIMEOUT_S = 5.0
# Every connection's TCP keepalives: a gateway machine lost without a word (mid-transaction, holding row
# locks, or holding its membership lock) is dropped by the server after about 5 + 3 x 1 s.
KEEPALIVES = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "3"}
_ALERT_COLUMNS = (
    "id, dedup_key, status, priority, source, summary, details, labels, team, policy, route, "
    "created_at, updated_at, acknowledged_by, acknowledged_at, resolved_at"
)
_PAGE_COLUMNS = ("id, alert_id, step, repeat, engineer, number, channel, status, outcome, detail, created_at,"
                 " updated_at, due_at")
_STATUS_ORDER = {AlertStatus.TRIGGERED: 0, AlertStatus.ACKNOWLEDGED: 1, AlertStatus.RESOLVED: 2}

# Alert intake in one round trip: migration 003's gateway_create_alert (the dedup key's lock, then the
# alert with its escalation, first pages and notes, or the open alert with that key).
CREATE_ALERT = "SELECT * FROM gateway_create_alert(" + ", ".join(f"${n}" for n in range(1, 25)) + ")"
_INSERT_PAGES = """
INSERT INTO pages (alert_id, step, repeat, engineer, number, channel, status, created_at, updated_at, owner)
SELECT $1, $2, $3, p.engineer, p.number, p.channel, 'due', $4, $4, $8
FROM unnest($5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS p (engineer, number, channel, n)
ORDER BY p.n
RETURNING id
"""
_INSERT_NOTES = """
INSERT INTO timeline (alert_id, at, kind, message, data)
SELECT t.alert_id, t.at, t.kind, t.message, t.data
FROM unnest($1::bigint[], $2::float8[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY
    AS t (alert_id, at, kind, message, data, n)
ORDER BY t.n
"""
# Writes whose loss in a crash of the database server costs no page and no acknowledgement commit without
# waiting for the disk (synchronous_commit off for their own transaction only: a server crash may forget the
# last few hundred milliseconds of them; a crash of the gateway loses nothing). A "sent" mark lost makes the
# page be sent again (as a gateway crash between dialling and marking does). Everything an alert, a step, an
# outcome or a live call needs stays durable.
_ASYNC_COMMIT = "(SELECT set_config('synchronous_commit', 'off', true)) AS async_commit"
# reschedule in one statement: the alert locked and still triggered, the escalation still as expected; then
# next_due (back to step 1, round 1, with $7) and the owner, which is whoever moves an escalation (an
# engineer's answer may reach any gateway: that one runs the escalation from then on); and the note.
_RESCHEDULE = """
WITH alert AS (
    SELECT id FROM alerts WHERE id = $1 AND status = 'triggered' FOR UPDATE
), moved AS (
    UPDATE escalations e SET next_due = $5, owner = $6,
        step = CASE WHEN $7 THEN 0 ELSE e.step END, repeat = CASE WHEN $7 THEN 0 ELSE e.repeat END
    FROM alert
    WHERE e.alert_id = alert.id AND e.step = $2 AND e.repeat = $3 AND e.next_due IS NOT DISTINCT FROM $4
    RETURNING e.alert_id
), note AS (
    INSERT INTO timeline (alert_id, at, kind, message, data)
    SELECT t.alert_id, t.at, t.kind, t.message, t.data
    FROM moved, unnest($8::bigint[], $9::float8[], $10::text[], $11::text[], $12::text[])
        AS t (alert_id, at, kind, message, data)
)
SELECT count(*) FROM moved
"""
MARK_PAGE_SENT = (f"UPDATE pages SET status = 'sent', updated_at = $1 FROM {_ASYNC_COMMIT}"
                  " WHERE id = $2 AND status = 'due'")


@dataclass(frozen=True, kw_only=True)
class Inheritance:
    """What a survivor took over from a dead gateway (``PgStore.inherit``)."""

    alerts: list[int]  # the alerts whose escalation it ran
    unsent: list[Page]  # pages written, not sent
    live_calls: list[Page]  # calls placed, no outcome yet


@dataclass(frozen=True, kw_only=True)
class CreateAlertSql:
    """How ``create_alert`` runs (shared with bench/pg_driver.py): CREATE_ALERT with ``args``, one statement
    in a transaction of its own (the dedup key's lock is its first argument)."""

    args: tuple[object, ...]
    pages: Sequence[NewPage]
    page_step: int | None
    repeat: int

    @classmethod
    def of(cls, new: NewAlert, *, now: float, escalate_at: float | None, note: str,
           first_step: StepPlan | None, owner: str) -> CreateAlertSql:
        if first_step is None:
            step, repeat, next_due, page_step, pages = 0, 0, escalate_at, None, []
        else:
            step, repeat, next_due = first_step.step + 1, first_step.repeat, first_step.next_due
            page_step, pages = first_step.step, first_step.pages
        notes = [TimelineEntry(alert_id=0, at=now, kind="triggered", message=note),
                 *(first_step.notes if first_step is not None else [])]
        args = (
            _dedup_lock(new.dedup_key), _in(new.dedup_key), new.priority, _in(new.source), _in(new.summary),
            json.dumps(new.details), json.dumps(new.labels), _in(new.team), _in(new.policy), _in(new.route), now,
            step, repeat, next_due, page_step, repeat, *_page_arrays(pages),
            [n.at for n in notes], [_in(n.kind) for n in notes], [_in(n.message) for n in notes],
            [json.dumps(n.data) for n in notes], owner,
        )
        return cls(args=args, pages=pages, page_step=page_step, repeat=repeat)


class _Db(Protocol):
    """What the store uses of an asyncpg connection (rows are asyncpg Records, indexed by position)."""

    async def execute(self, query: str, *args: object) -> str: ...

    async def fetch(self, query: str, *args: object) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: object) -> Any: ...

    async def fetchval(self, query: str, *args: object) -> Any: ...

    def is_in_transaction(self) -> bool: ...

    def terminate(self) -> None: ...


# ------------------------------------------------------------------ text and rows

_ESC = "\ue000"  # a private-use character: the escape of the escaping below
_ESCAPED = re.compile(_ESC + "(.)", re.DOTALL)
_UNESCAPE = {_ESC: _ESC, "0": "\x00"}


def _in(text: str) -> str:
    """``text`` as PostgreSQL can store it: NUL becomes ESC 0, ESC itself ESC ESC."""
    if "\x00" not in text and _ESC not in text:
        return text
    return text.replace(_ESC, _ESC + _ESC).replace("\x00", _ESC + "0")


def _out(text: str) -> str:
    return text if _ESC not in text else _ESCAPED.sub(lambda m: _UNESCAPE.get(m[1], m[0]), text)


def _in_opt(text: str | None) -> str | None:
    return None if text is None else _in(text)


def _out_opt(text: str | None) -> str | None:
    return None if text is None else _out(text)


def _alert(row: Sequence[Any]) -> Alert:
    return Alert(
        id=row[0], dedup_key=_out(row[1]), status=AlertStatus(row[2]), priority=Priority(row[3]), source=_out(row[4]),
        summary=_out(row[5]), details=json.loads(row[6]), labels=json.loads(row[7]), team=_out(row[8]),
        policy=_out(row[9]), route=_out(row[10]), created_at=row[11], updated_at=row[12],
        acknowledged_by=_out_opt(row[13]), acknowledged_at=row[14], resolved_at=row[15],
    )  # fmt: skip


def _page(row: Sequence[Any]) -> Page:
    return Page(
        id=row[0], alert_id=row[1], step=row[2], repeat=row[3], engineer=_out_opt(row[4]), number=_out(row[5]),
        channel=Channel(row[6]), status=PageStatus(row[7]), outcome=_out_opt(row[8]), detail=_out(row[9]),
        created_at=row[10],
        updated_at=row[11], due_at=row[12],
    )  # fmt: skip


def _escalation(row: Sequence[Any]) -> Escalation:
    return Escalation(alert_id=row[0], step=row[1], repeat=row[2], next_due=row[3])


def _page_arrays(pages: Sequence[NewPage]) -> tuple[list[str | None], list[str], list[str]]:
    return [_in_opt(p.engineer) for p in pages], [_in(p.number) for p in pages], [p.channel for p in pages]


def _new_pages(ids: Sequence[int], alert_id: int, pages: Sequence[NewPage], step: int | None,
               repeat: int | None, now: float) -> list[Page]:
    return [Page(id=page_id, alert_id=alert_id, step=step, repeat=repeat, engineer=p.engineer, number=p.number,
                 channel=p.channel, status=PageStatus.DUE, outcome=None, detail="", created_at=now, updated_at=now)
            for page_id, p in zip(ids, pages, strict=True)]


def _dedup_lock(dedup_key: str) -> int:
    """The advisory lock's second key for a dedup key (a 32-bit hash: a collision only makes two wait)."""
    digest = hashlib.blake2b(dedup_key.encode("utf-8", "surrogatepass"), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _note_arrays(entries: Sequence[TimelineEntry]) -> tuple[list[int], list[float], list[str], list[str], list[str]]:
    return ([e.alert_id for e in entries], [e.at for e in entries], [_in(e.kind) for e in entries],
            [_in(e.message) for e in entries], [json.dumps(e.data) for e in entries])


async def _log(db: _Db, entries: Sequence[TimelineEntry]) -> None:
    if entries:
        await db.execute(_INSERT_NOTES, *_note_arrays(entries))


async def _rollback(db: _Db) -> None:
    try:
        if db.is_in_transaction():
            await db.execute("ROLLBACK")
    except Exception:  # its state is unknown (a query was cancelled mid-way): never hand it out again
        db.terminate()


async def _no_reset(db: _Db) -> None:
    """The store leaves no session state behind (transactions end before release): skip asyncpg's reset query."""


# ------------------------------------------------------------------- the store


class PgStore:
    def __init__(self, url: str, *, password: str | None = None, pool_size: int = 10,
                 gateway_id: str | None = None) -> None:
        self.url = url
        #: this gateway: the owner written on the escalations and pages it runs (see gateway/pg_cluster.py)
        self.gateway_id = gateway_id or new_gateway_id()
        self._password = password
        self._pool_size = pool_size
        self._pool: Any = None  # asyncpg.Pool

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.url, password=self._password, min_size=1, max_size=self._pool_size, reset=_no_reset,
            timeout=10,
            server_settings={"application_name": "oncall-gateway", **KEEPALIVES},
        )
        try:
            for migration in scripts("postgres"):
                if await self._migrate(migration.version, migration.sql):
                    log.info("store: applied migration %03d (%s) to PostgreSQL", migration.version, migration.name)
        except BaseException:
            await self.close()
            raise

    async def connect_alone(self, *, application_name: str) -> Any:
        """A connection of its own, outside the pool (it keeps session state: locks, LISTEN)."""
        return await asyncpg.connect(self.url, password=self._password, timeout=10,
                                     server_settings={"application_name": application_name, **KEEPALIVES})

    async def gateways(self) -> list[dict[str, Any]]:
        """The gateways registered on this database now (gateway/pg_cluster.py), oldest first."""
        rows = await self._fetch("SELECT id, host, pid, started_at FROM gateways ORDER BY started_at")
        return [dict(row) for row in rows]

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=10)
            except TimeoutError:
                pool.terminate()

    async def _migrate(self, version: int, sql: str) -> bool:
        async with self.transaction() as db:
            await db.execute("SELECT pg_advisory_xact_lock($1, $2)", _LOCKS, _MIGRATION_LOCK)
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            if await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version") >= version:
                return False  # done by then (or by a newer release, which runs beside us: expand/contract)
            await db.execute(sql)
            await db.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
            return True

    def _live_pool(self) -> Any:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self, begin: str = "BEGIN") -> AsyncIterator[_Db]:
        """One transaction on a pooled connection, committed when the block ends without an error."""
        pool = self._live_pool()
        db = await self._begun(pool, begin)
        try:
            try:
                yield db
            except BaseException:
                await _rollback(db)
                raise
            await db.execute("COMMIT")
        finally:
            await pool.release(db)

    @staticmethod
    async def _begun(pool: Any, begin: str) -> _Db:
        """A connection in a new transaction. ``begin`` changes nothing, so when it meets a connection the
        server dropped (a restart, a failover) it is safe to try again, once, on a fresh connection."""
        for attempt in range(2):
            db: _Db = await pool.acquire()
            try:
                await db.execute(begin)
                return db
            except LOST:
                await pool.release(db)
                if attempt:
                    raise
                await pool.expire_connections()  # the others were dropped with it: replace them all
        raise AssertionError("unreachable")

    async def single(self, run: Callable[[_Db], Awaitable[T]]) -> T:
        """One statement in a transaction of its own (one round trip). Only reads and idempotent writes come
        here, so a statement that meets a connection the server dropped is run again on a fresh one."""
        pool = self._live_pool()
        try:
            return await run(pool)
        except LOST:
            await pool.expire_connections()
            return await run(pool)

    async def _fetch(self, query: str, *args: object) -> list[Any]:
        return await self.single(lambda db: db.fetch(query, *args))

    async def _fetchrow(self, query: str, *args: object) -> Any:
        return await self.single(lambda db: db.fetchrow(query, *args))

    async def _fetchval(self, query: str, *args: object) -> Any:
        return await self.single(lambda db: db.fetchval(query, *args))

    async def ping(self) -> None:
        try:
            await asyncio.wait_for(self._fetchval("SELECT 1"), timeout=_PING_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"PostgreSQL did not answer within {_PING_TIMEOUT_S:g} s") from None

    # --------------------------------------------------------------- alerts

    async def create_alert(
        self, new: NewAlert, *, now: float, escalate_at: float | None, note: str, first_step: StepPlan | None = None
    ) -> tuple[Alert, bool, list[Page]]:
        sql = CreateAlertSql.of(new, now=now, escalate_at=escalate_at, note=note, first_step=first_step,
                                owner=self.gateway_id)
        if any(page.due_at is not None for page in sql.pages):
            return await self._create_alert_with_later_pages(new, sql, now)
        pool = self._live_pool()
        try:
            row = await pool.fetchrow(CREATE_ALERT, *sql.args)
        except LOST:
            # The server dropped the connection (a restart, a failover): the statement may have committed or
            # not. Run it again: the dedup key makes that safe, and an open alert that this very request
            # created (same key, same creation time and summary) is returned as created, with its pages.
            await pool.expire_connections()
            row = await pool.fetchrow(CREATE_ALERT, *sql.args)
            if row["new_id"] is None and row["created_at"] == now and _out(row["summary"]) == new.summary:
                alert = _alert(row)
                return alert, True, [p for p in await self.pages_for(alert.id) if p.status == PageStatus.DUE]
        if row["new_id"] is None:
            return _alert(row), False, []
        alert = Alert(
            id=row["new_id"], dedup_key=new.dedup_key, status=AlertStatus.TRIGGERED, priority=new.priority,
            source=new.source,
            summary=new.summary, details=new.details, labels=new.labels, team=new.team, policy=new.policy,
            route=new.route, created_at=now, updated_at=now,
        )
        return alert, True, _new_pages(row["page_ids"], alert.id, sql.pages, sql.page_step, sql.repeat, now)

    async def get_alert(self, alert_id: int) -> Alert | None:
        row = await self._fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)
        return _alert(row) if row else None

    async def find_open_alert(self, dedup_key: str) -> Alert | None:
        row = await self._fetchrow(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE dedup_key = $1 AND status <> 'resolved'", _in(dedup_key)
        )
        return _alert(row) if row else None

    async def list_alerts(
        self, *, status: str | None = None, limit: int = 100, before_id: int | None = None,
        source: str | None = None, team: str | None = None, priority: str | None = None,
    ) -> list[Alert]:
        rows = await self._fetch(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE ($1::text IS NULL OR status = $1)"
            " AND ($2::bigint IS NULL OR id < $2) AND ($4::text IS NULL OR source = $4)"
            " AND ($5::text IS NULL OR team = $5) AND ($6::text IS NULL OR priority = $6)"
            " ORDER BY id DESC LIMIT $3",
            status, before_id, limit, source, team, priority,
        )
        return [_alert(r) for r in rows]

    async def change_status(
        self, alert_id: int, status: AlertStatus, *, now: float, by: str | None, note: str
    ) -> tuple[Alert, bool] | None:
        async with self.transaction() as db:
            row = await db.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
            if row is None:
                return None
            alert = _alert(row)
            if _STATUS_ORDER[alert.status] >= _STATUS_ORDER[status]:
                return alert, False
            if status == "acknowledged":
                await db.execute(
                    "UPDATE alerts SET status = $1, updated_at = $2, acknowledged_by = $3, acknowledged_at = $2"
                    " WHERE id = $4",
                    status, now, _in_opt(by), alert_id,
                )
                alert = replace(alert, status=status, updated_at=now, acknowledged_by=by, acknowledged_at=now)
            else:
                await db.execute(
                    "UPDATE alerts SET status = $1, updated_at = $2, resolved_at = $2 WHERE id = $3",
                    status, now, alert_id,
                )
                alert = replace(alert, status=status, updated_at=now, resolved_at=now)
            await db.execute("UPDATE escalations SET next_due = NULL WHERE alert_id = $1", alert_id)
            await _log(db, [TimelineEntry(alert_id=alert_id, at=now, kind=status, message=note,
                                          data={"by": by} if by else {})])
            # Pushed on commit to every gateway: the others hang up their calls of this alert.
            await db.execute("SELECT pg_notify('gateway', $1)",
                             json.dumps({"closed": alert_id, "by": self.gateway_id}))
            return alert, True

    async def set_priority(self, alert_id: int, priority: str, *, now: float, note: str) -> Alert | None:
        async with self.transaction() as db:
            row = await db.fetchrow(
                f"UPDATE alerts SET priority = $1, updated_at = $2 WHERE id = $3 AND status <> 'resolved'"
                f" AND priority <> $1 RETURNING {_ALERT_COLUMNS}",
                priority, now, alert_id,
            )
            if row is not None:
                await _log(db, [TimelineEntry(alert_id=alert_id, at=now, kind="priority", message=note)])
                return _alert(row)
            row = await db.fetchrow(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = $1", alert_id)
            alert = _alert(row) if row else None
            return alert if alert is not None and alert.is_open else None

    # ----------------------------------------------------------- escalation

    async def begin_escalation(self, alert_id: int, *, priority: str, now: float, note: str) -> bool:
        async with self.transaction() as db:
            status = await db.fetchval("SELECT status FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
            if status != "triggered":
                return False
            started = await db.execute(
                "UPDATE escalations SET next_due = $1, owner = $3 WHERE alert_id = $2 AND next_due IS NULL"
                " AND step = 0 AND repeat = 0 AND NOT EXISTS (SELECT FROM pages WHERE alert_id = $2)",
                now, alert_id, self.gateway_id,
            )
            if started != "UPDATE 1":
                return False
            await db.execute("UPDATE alerts SET priority = $1, updated_at = $2 WHERE id = $3", priority, now, alert_id)
            await _log(db, [TimelineEntry(alert_id=alert_id, at=now, kind="waiting", message=note)])
            return True

    async def get_escalation(self, alert_id: int) -> Escalation | None:
        row = await self._fetchrow(
            "SELECT alert_id, step, repeat, next_due FROM escalations WHERE alert_id = $1", alert_id
        )
        return _escalation(row) if row else None

    async def next_due(self) -> float | None:
        due: float | None = await self._fetchval(
            "SELECT MIN(next_due) FROM escalations WHERE next_due IS NOT NULL AND (owner = $1 OR owner IS NULL)",
            self.gateway_id,
        )
        return due

    async def due_escalations(self, now: float) -> list[Escalation]:
        rows = await self._fetch(
            "SELECT alert_id, step, repeat, next_due FROM escalations WHERE next_due IS NOT NULL"
            " AND next_due <= $1 AND (owner = $2 OR owner IS NULL) ORDER BY next_due, alert_id",
            now, self.gateway_id,
        )
        return [_escalation(r) for r in rows]

    async def reschedule(
        self,
        alert_id: int,
        *,
        expect: Escalation,
        next_due: float | None,
        note: str | None,
        now: float,
        restart: bool = False,
    ) -> bool:
        # One statement (every unanswered step comes here). The alert's row is locked first, as in
        # _matches: a concurrent acknowledgement commits before this reads it, or waits for this.
        notes = [TimelineEntry(alert_id=alert_id, at=now, kind="escalation", message=note)] if note else []
        moved = await self._live_pool().fetchval(
            _RESCHEDULE, alert_id, expect.step, expect.repeat, expect.next_due, next_due, self.gateway_id, restart,
            *_note_arrays(notes))
        return bool(moved)

    async def start_step(self, alert_id: int, *, expect: Escalation, plan: StepPlan, now: float) -> list[Page] | None:
        async with self.transaction() as db:
            if not await _matches(db, expect):
                return None
            await db.execute("UPDATE escalations SET step = $1, repeat = $2, next_due = $3, owner = $5"
                             " WHERE alert_id = $4", plan.step + 1, plan.repeat, plan.next_due, alert_id,
                             self.gateway_id)
            pages = await _insert_pages(db, alert_id, plan.pages, plan.step, plan.repeat, now, self.gateway_id)
            await _log(db, [replace(n, alert_id=alert_id) for n in plan.notes])
            return await _set_due_at(db, pages, plan.pages)

    async def add_pages(
        self, alert_id: int, pages: list[NewPage], *, notes: list[TimelineEntry], now: float
    ) -> list[Page]:
        async with self.transaction() as db:
            created = await _insert_pages(db, alert_id, pages, None, None, now, self.gateway_id)
            await _log(db, notes)
            return created

    # ---------------------------------------------------------------- pages

    async def inherit(self, dead: str, lock_key: int) -> Inheritance | None:
        """Make a dead gateway's work this gateway's, in one transaction: its escalations, its unfinished
        pages and the lines its calls hold. None when another gateway took it over first or it joined
        again (with a new ``lock_key``)."""
        async with self.transaction() as db:
            gone = await db.fetchval("DELETE FROM gateways WHERE id = $1 AND lock_key = $2 RETURNING true",
                                     dead, lock_key)
            if gone is None:
                return None
            alerts = await db.fetch("UPDATE escalations SET owner = $1 WHERE owner = $2 RETURNING alert_id",
                                    self.gateway_id, dead)
            rows = await db.fetch(f"UPDATE pages SET owner = $1 WHERE owner = $2 AND status <> 'done'"
                                  f" RETURNING {_PAGE_COLUMNS}", self.gateway_id, dead)
            # Its lines: those of calls over (it died before freeing them) are free; the rest are ours.
            await db.execute("DELETE FROM line_use l USING pages p WHERE l.owner = $1 AND p.status = 'done'"
                             " AND p.outcome <> 'accepted' AND l.call_id = 'page-' || p.id", dead)
            await db.execute("UPDATE line_use SET owner = $1 WHERE owner = $2", self.gateway_id, dead)
            await db.execute("DELETE FROM line_demand WHERE owner = $1", dead)
        pages = sorted((_page(r) for r in rows), key=lambda p: p.id)
        return Inheritance(alerts=sorted(r[0] for r in alerts),
                           unsent=[p for p in pages if p.status == PageStatus.DUE and p.due_at is None],
                           live_calls=[p for p in pages if p.status == PageStatus.SENT and p.channel == Channel.CALL])

    async def get_page(self, page_id: int) -> Page | None:
        row = await self._fetchrow(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE id = $1", page_id)
        return _page(row) if row else None

    async def call_wanted(self, page_id: int) -> bool:
        # Only the page's owner dials it: a gateway whose work was taken over while it was cut off from
        # the database drops what it still had queued (the new owner sends it).
        wanted = await self._fetchval(
            "SELECT EXISTS (SELECT FROM pages p JOIN alerts a ON a.id = p.alert_id"
            " WHERE p.id = $1 AND p.status <> 'done' AND a.status = 'triggered'"
            " AND (p.owner = $2 OR p.owner IS NULL))",
            page_id, self.gateway_id,
        )
        return bool(wanted)

    async def pages_for(self, alert_id: int) -> list[Page]:
        rows = await self._fetch(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE alert_id = $1 ORDER BY id", alert_id)
        return [_page(r) for r in rows]

    async def pages_for_alerts(self, alert_ids: list[int]) -> list[Page]:
        rows = await self._fetch(
            f"SELECT {_PAGE_COLUMNS} FROM pages WHERE alert_id = ANY($1::bigint[]) ORDER BY id", alert_ids
        )
        return [_page(r) for r in rows]

    async def unsent_pages(self) -> list[Page]:
        """This gateway's unsent pages, and those of nobody (written before migration 003), claimed."""
        rows = await self._fetch(
            f"UPDATE pages p SET owner = $1 FROM alerts a WHERE a.id = p.alert_id AND p.status = 'due'"
            f" AND a.status = 'triggered' AND (p.owner = $1 OR p.owner IS NULL) AND p.due_at IS NULL"
            f" RETURNING {', '.join(f'p.{c.strip()}' for c in _PAGE_COLUMNS.split(','))}",
            self.gateway_id,
        )
        return sorted((_page(r) for r in rows), key=lambda page: page.id)

    async def mark_page_sent(self, page_id: int, *, now: float) -> None:
        await self.single(lambda db: db.execute(MARK_PAGE_SENT, now, page_id))  # idempotent

    async def finish_page(
        self, page_id: int, *, outcome: str, detail: str, now: float, note: TimelineEntry | None
    ) -> Page | None:
        # One statement (every call's outcome comes here): the page, and its note only when the page changed.
        entries = [note] if note is not None else []
        row = await self._live_pool().fetchrow(
            f"WITH page AS (UPDATE pages SET status = 'done', outcome = $1, detail = $2, updated_at = $3"
            f" WHERE id = $4 AND status <> 'done' RETURNING {_PAGE_COLUMNS}),"
            f" note AS (INSERT INTO timeline (alert_id, at, kind, message, data)"
            f" SELECT t.alert_id, t.at, t.kind, t.message, t.data FROM page,"
            f" unnest($5::bigint[], $6::float8[], $7::text[], $8::text[], $9::text[]) AS t (alert_id, at, kind,"
            f" message, data))"
            f" SELECT {_PAGE_COLUMNS} FROM page",
            _in(outcome), _in(detail), now, page_id, *_note_arrays(entries),
        )
        return _page(row) if row is not None else None

    async def latest_alert_paged_to(self, engineer: str, *, statuses: tuple[str, ...]) -> Alert | None:
        columns = ", ".join(f"a.{c.strip()}" for c in _ALERT_COLUMNS.split(","))
        row = await self._fetchrow(
            f"SELECT {columns} FROM alerts a JOIN pages p ON p.alert_id = a.id"
            " WHERE p.engineer = $1 AND a.status = ANY($2::text[]) ORDER BY p.id DESC LIMIT 1",
            _in(engineer), list(statuses),
        )
        return _alert(row) if row else None

    async def was_paged(self, alert_id: int, engineer: str) -> bool:
        paged = await self._fetchval(
            "SELECT EXISTS (SELECT FROM pages WHERE alert_id = $1 AND engineer = $2)", alert_id, _in(engineer)
        )
        return bool(paged)

    # ------------------------------------------------------------- timeline

    async def add_timeline(self, entry: TimelineEntry) -> None:
        # One statement, never run twice (not idempotent).
        await self._live_pool().execute(_INSERT_NOTES, *_note_arrays([entry]))

    # --------------------------------------------------------- call sessions

    async def save_call_session(self, call_id: str, data: dict[str, Any]) -> None:
        await self.single(lambda db: db.execute(
            "INSERT INTO call_sessions (call_id, data, updated_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (call_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            _in(call_id), json.dumps(data), time.time()))

    async def load_call_session(self, call_id: str) -> dict[str, Any] | None:
        text = await self._fetchval("SELECT data FROM call_sessions WHERE call_id = $1", _in(call_id))
        return None if text is None else dict(json.loads(text))

    async def delete_call_session(self, call_id: str) -> None:
        # Not waited for on disk: a delete lost in a server crash leaves the row of a call that is over.
        await self.single(lambda db: db.execute(
            f"DELETE FROM call_sessions USING {_ASYNC_COMMIT} WHERE call_id = $1", _in(call_id)))

    async def timeline(self, alert_id: int) -> list[TimelineEntry]:
        rows = await self._fetch(
            "SELECT alert_id, at, kind, message, data FROM timeline WHERE alert_id = $1 ORDER BY id", alert_id
        )
        return [TimelineEntry(alert_id=r[0], at=r[1], kind=_out(r[2]), message=_out(r[3]), data=json.loads(r[4]))
                for r in rows]

    async def timelines_for_alerts(self, alert_ids: list[int]) -> list[TimelineEntry]:
        rows = await self._fetch(
            "SELECT alert_id, at, kind, message, data FROM timeline WHERE alert_id = ANY($1::bigint[]) ORDER BY id",
            alert_ids,
        )
        return [TimelineEntry(alert_id=r[0], at=r[1], kind=_out(r[2]), message=_out(r[3]), data=json.loads(r[4]))
                for r in rows]

    # ------------------------------------------------------------ overrides

    async def add_override(self, new: NewOverride, *, now: float) -> StoredOverride:
        async with self.transaction() as db:
            override_id = await db.fetchval(
                "INSERT INTO overrides (team, role, engineer, start_at, end_at, created_by, created_at)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                _in(new.team), new.role, _in(new.engineer), new.start, new.end, _in(new.created_by), now)
            await _push_overrides(db, new.team)
            return StoredOverride(**vars(new), id=override_id, created_at=now)

    async def list_overrides(self, team: str | None = None) -> list[StoredOverride]:
        if team is None:
            rows = await self._fetch(
                f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE deleted_at IS NULL ORDER BY id")
        else:
            rows = await self._fetch(
                f"SELECT {OVERRIDE_COLUMNS} FROM overrides WHERE deleted_at IS NULL AND team = $1 ORDER BY id",
                _in(team))
        return [override_from_row(r) for r in rows]

    async def delete_override(self, override_id: int, *, team: str, by: str, now: float) -> StoredOverride | None:
        async with self.transaction() as db:
            row = await db.fetchrow(
                f"UPDATE overrides SET deleted_at = $1, deleted_by = $2 WHERE id = $3 AND team = $4"
                f" AND deleted_at IS NULL RETURNING {OVERRIDE_COLUMNS}", now, _in(by), override_id, _in(team))
            if row is None:
                return None
            await _push_overrides(db, team)
            return override_from_row(row)

    # ------------------------------------------------------- calendar feeds

    async def add_calendar_feed(self, *, team: str | None, engineer: str | None, secret_sha256: str,
                                created_by: str, now: float) -> CalendarFeed:
        feed_id = await self.single(lambda db: db.fetchval(
            "INSERT INTO calendar_feeds (team, engineer, secret_sha256, created_by, created_at)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id",
            _in_opt(team), _in_opt(engineer), secret_sha256, _in(created_by), now))
        return CalendarFeed(id=feed_id, team=team, engineer=engineer, created_by=created_by, created_at=now)

    async def list_calendar_feeds(self) -> list[CalendarFeed]:
        rows = await self._fetch(f"SELECT {_FEED_COLUMNS} FROM calendar_feeds WHERE revoked_at IS NULL ORDER BY id")
        return [_feed(r) for r in rows]

    async def find_calendar_feed(self, secret_sha256: str) -> CalendarFeed | None:
        row = await self._fetchrow(
            f"SELECT {_FEED_COLUMNS} FROM calendar_feeds WHERE secret_sha256 = $1 AND revoked_at IS NULL",
            secret_sha256)
        return _feed(row) if row is not None else None

    async def revoke_calendar_feed(self, feed_id: int, *, by: str, now: float) -> CalendarFeed | None:
        row = await self.single(lambda db: db.fetchrow(
            f"UPDATE calendar_feeds SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL"
            f" RETURNING {_FEED_COLUMNS}", now, _in(by), feed_id))
        return _feed(row) if row is not None else None

    # ---------------------------------------------- maintenance and heartbeats

    async def add_maintenance(self, new: NewMaintenance, *, now: float) -> StoredMaintenance:
        async with self.transaction() as db:
            window_id = await db.fetchval(
                "INSERT INTO maintenance_windows (matchers, start_at, end_at, action, comment, created_by,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                json.dumps(list(new.matchers)), new.start, new.end, new.action, _in(new.comment),
                _in(new.created_by), now)
            await _push_maintenance(db, window_id)
            return StoredMaintenance(**vars(new), id=window_id, created_at=now)

    async def list_maintenance(self) -> list[StoredMaintenance]:
        rows = await self._fetch(f"SELECT {MAINTENANCE_COLUMNS} FROM maintenance_windows ORDER BY id")
        return [maintenance_from_row(r) for r in rows]

    async def end_maintenance(self, window_id: int, *, by: str, now: float) -> StoredMaintenance | None:
        async with self.transaction() as db:
            row = await db.fetchrow(
                f"UPDATE maintenance_windows SET ended_at = $1, ended_by = $2 WHERE id = $3 AND ended_at IS NULL"
                f" AND end_at > $1 RETURNING {MAINTENANCE_COLUMNS}", now, _in(by), window_id)
            if row is None:
                return None
            await _push_maintenance(db, window_id)
            return maintenance_from_row(row)

    async def create_held_alert(self, new: NewAlert, *, now: float, note: str,
                                windows: tuple[HoldWindow, ...]) -> tuple[Alert, bool]:
        sql = CreateAlertSql.of(new, now=now, escalate_at=None, note=note, first_step=None, owner=self.gateway_id)
        async with self.transaction() as db:
            row = await db.fetchrow(CREATE_ALERT, *sql.args)
            if row["new_id"] is None:
                return _alert(row), False
            await db.execute("INSERT INTO maintenance_holds (alert_id, windows, held_at) VALUES ($1, $2, $3)",
                             row["new_id"], _hold_windows_json(windows), now)
            # Every gateway learns when it may have to release it (if this one is gone by then).
            await db.execute("SELECT pg_notify('gateway', $1)", json.dumps(
                {"maintenance": "held", "until": max((w.until for w in windows), default=now)}))
        alert = Alert(
            id=row["new_id"], dedup_key=new.dedup_key, status=AlertStatus.TRIGGERED, priority=new.priority,
            source=new.source, summary=new.summary, details=new.details, labels=new.labels, team=new.team,
            policy=new.policy, route=new.route, created_at=now, updated_at=now,
        )
        return alert, True

    async def list_holds(self) -> list[Hold]:
        rows = await self._fetch("SELECT alert_id, windows, held_at FROM maintenance_holds ORDER BY alert_id")
        return [Hold(alert_id=r[0], windows=_hold_windows_from_json(r[1]), held_at=r[2]) for r in rows]

    async def release_hold(self, alert_id: int, *, now: float, note: str) -> bool:
        async with self.transaction() as db:
            status = await db.fetchval("SELECT status FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
            gone = await db.fetchval("DELETE FROM maintenance_holds WHERE alert_id = $1 RETURNING alert_id", alert_id)
            if gone is None or status != "triggered":
                return False  # released already (here or on another gateway), or closed meanwhile
            started = await db.execute(
                "UPDATE escalations SET next_due = $1, owner = $3 WHERE alert_id = $2 AND next_due IS NULL"
                " AND step = 0 AND repeat = 0", now, alert_id, self.gateway_id)
            if started != "UPDATE 1":
                return False
            await _log(db, [TimelineEntry(alert_id=alert_id, at=now, kind="maintenance", message=note)])
            return True

    async def heartbeat_seen(self, name: str, *, now: float) -> None:
        await self.single(lambda db: db.execute(
            "INSERT INTO heartbeats (name, last_seen) VALUES ($1, $2) ON CONFLICT (name)"
            " DO UPDATE SET last_seen = GREATEST(heartbeats.last_seen, excluded.last_seen)", _in(name), now))

    async def heartbeats_seen(self) -> dict[str, float]:
        rows = await self._fetch("SELECT name, last_seen FROM heartbeats")
        return {_out(r[0]): r[1] for r in rows}


    # ------------------------------------------------- notification rules

    async def _create_alert_with_later_pages(self, new: NewAlert, sql: CreateAlertSql,
                                             now: float) -> tuple[Alert, bool, list[Page]]:
        """``create_alert`` when the first step has pages due later: their ``due_at`` is set in the same
        transaction (gateway_create_alert knows nothing of it), so none of them is ever taken for unsent."""
        async with self.transaction() as db:
            row = await db.fetchrow(CREATE_ALERT, *sql.args)
            if row["new_id"] is None:
                return _alert(row), False, []
            alert = Alert(
                id=row["new_id"], dedup_key=new.dedup_key, status=AlertStatus.TRIGGERED, priority=new.priority,
                source=new.source, summary=new.summary, details=new.details, labels=new.labels, team=new.team,
                policy=new.policy, route=new.route, created_at=now, updated_at=now,
            )
            pages = _new_pages(row["page_ids"], alert.id, sql.pages, sql.page_step, sql.repeat, now)
            return alert, True, await _set_due_at(db, pages, sql.pages)

    async def change_notification_rules(self, engineer: str, rules: tuple[NotificationRule, ...] | None, *,
                                        by: str, now: float) -> NotificationRuleChange:
        async with self.transaction() as db:
            change_id = await db.fetchval(
                "INSERT INTO notification_rule_changes (engineer, rules, changed_by, changed_at)"
                " VALUES ($1, $2, $3, $4) RETURNING id", _in(engineer), rules_to_text(rules), _in(by), now)
            await db.execute("SELECT pg_notify('gateway', $1)", json.dumps({"notification_rules": engineer}))
        return NotificationRuleChange(id=change_id, engineer=engineer, rules=rules, changed_by=by, changed_at=now)

    async def notification_rule_sets(self, engineer: str | None = None) -> list[NotificationRuleChange]:
        rows = await self._fetch(
            "SELECT DISTINCT ON (engineer) id, engineer, rules, changed_by, changed_at FROM notification_rule_changes"
            " WHERE ($1::text IS NULL OR engineer = $1) ORDER BY engineer, id DESC", _in_opt(engineer))
        return [rule_change_from_row(row) for row in rows if row[2] is not None]

    async def next_page_due(self) -> float | None:
        due: float | None = await self._fetchval(
            "SELECT MIN(p.due_at) FROM pages p JOIN alerts a ON a.id = p.alert_id WHERE p.due_at IS NOT NULL"
            " AND p.status = 'due' AND a.status = 'triggered' AND (p.owner = $1 OR p.owner IS NULL)",
            self.gateway_id)
        return due

    async def later_pages_due(self, now: float) -> list[Page]:
        rows = await self._fetch(
            f"SELECT {', '.join(f'p.{c.strip()}' for c in _PAGE_COLUMNS.split(','))} FROM pages p"
            f" JOIN alerts a ON a.id = p.alert_id WHERE p.due_at IS NOT NULL AND p.due_at <= $1 AND p.status = 'due'"
            f" AND a.status = 'triggered' AND (p.owner = $2 OR p.owner IS NULL) ORDER BY p.id", now, self.gateway_id)
        return [_page(r) for r in rows]

    async def release_page(self, page_id: int) -> Page | None:
        # Only the page's owner releases it (the row is locked by the update: of an owner and a gateway taking
        # its work over, one wins). Without "due_at IS NOT NULL", so running it again after a lost answer
        # (``single``) returns the page released by the first run instead of losing it.
        row = await self.single(lambda db: db.fetchrow(
            f"UPDATE pages SET due_at = NULL, owner = $2 WHERE id = $1 AND status = 'due'"
            f" AND (owner = $2 OR owner IS NULL) RETURNING {_PAGE_COLUMNS}", page_id, self.gateway_id))
        return _page(row) if row is not None else None

    # ------------------------------------------------------------- notices

    async def claim_notice(self, key: NoticeKey, *, now: float, lease_s: float) -> Notice | None:
        # Of two gateways claiming at once, the unique key lets one insert (or take over an expired claim); the
        # other's statement waits for that row, then finds nothing to do. Not run again on a lost connection
        # (``single``): a claim that did commit would look taken, and the notice would wait for its lease.
        async with self.transaction() as db:
            row = await db.fetchrow(
                "INSERT INTO notices (kind, team, role, moment, engineer, channel, claimed_at, claimed_until)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (kind, team, role, moment, engineer, channel) DO UPDATE"
                " SET claimed_at = excluded.claimed_at, claimed_until = excluded.claimed_until"
                " WHERE notices.outcome IS NULL AND notices.claimed_until <= excluded.claimed_at"
                f" RETURNING {NOTICE_COLUMNS}",
                key.kind, _in(key.team), key.role, key.moment, _in(key.engineer), key.channel, now, now + lease_s)
        return notice_from_row(row) if row is not None else None

    async def finish_notice(self, notice_id: int, *, outcome: str, detail: str, now: float) -> None:
        await self.single(lambda db: db.execute(
            "UPDATE notices SET finished_at = $1, outcome = $2, detail = $3 WHERE id = $4",
            now, outcome, _in(detail), notice_id))

    async def find_notice(self, key: NoticeKey) -> Notice | None:
        row = await self._fetchrow(
            f"SELECT {NOTICE_COLUMNS} FROM notices WHERE kind = $1 AND team = $2 AND role = $3 AND moment = $4"
            " AND engineer = $5 AND channel = $6",
            key.kind, _in(key.team), key.role, key.moment, _in(key.engineer), key.channel)
        return notice_from_row(row) if row is not None else None

    async def use_action_link(self, nonce: str, *, alert_id: int, action: str, engineer: str, now: float) -> bool:
        # The primary key decides: of two gateways inserting the same nonce, the second waits for the first
        # to commit and then inserts nothing. Not through single(): run again after a lost reply, the insert
        # would find its own row and call the link used.
        async with self.transaction() as db:
            used = await db.fetchval(
                "INSERT INTO action_links_used (nonce, alert_id, action, engineer, used_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (nonce) DO NOTHING RETURNING true",
                nonce, alert_id, action, _in(engineer), now)
        return used is True

    async def latest_alert(self, dedup_key: str) -> Alert | None:
        row = await self._fetchrow(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE dedup_key = $1 ORDER BY id DESC LIMIT 1", _in(dedup_key))
        return _alert(row) if row else None

    async def extend_hold(self, alert_id: int, *, expect: tuple[HoldWindow, ...], windows: tuple[HoldWindow, ...],
                          now: float, note: str) -> bool:
        async with self.transaction() as db:
            if await db.fetchval("UPDATE maintenance_holds SET windows = $1 WHERE alert_id = $2 AND windows = $3"
                                 " RETURNING alert_id", _hold_windows_json(windows), alert_id,
                                 _hold_windows_json(expect)) is None:
                return False
            await _log(db, [TimelineEntry(alert_id=alert_id, at=now, kind="maintenance", message=note)])
            return True



MAINTENANCE_COLUMNS = "id, matchers, start_at, end_at, action, comment, created_by, created_at, ended_at, ended_by"

def maintenance_from_row(row: Sequence[Any]) -> StoredMaintenance:
    return StoredMaintenance(
        id=row[0], matchers=tuple(json.loads(row[1])), start=row[2], end=row[3], action=row[4],
        comment=_out(row[5]), created_by=_out(row[6]), created_at=row[7], ended_at=row[8],
        ended_by=_out_opt(row[9]),
    )  # fmt: skip


def _hold_windows_json(windows: tuple[HoldWindow, ...]) -> str:
    return json.dumps([{"key": w.key, "name": w.name, "until": w.until} for w in windows])


def _hold_windows_from_json(text: str) -> tuple[HoldWindow, ...]:
    return tuple(HoldWindow(key=w["key"], name=w["name"], until=w["until"]) for w in json.loads(text))


async def _push_maintenance(db: _Db, what: object) -> None:
    """Pushed on commit to every gateway: each reads the run-time windows again and looks at the holds."""
    await db.execute("SELECT pg_notify('gateway', $1)", json.dumps({"maintenance": what}))


def rule_change_from_row(row: Sequence[Any]) -> NotificationRuleChange:
    return NotificationRuleChange(id=row[0], engineer=_out(row[1]), rules=rules_from_text(row[2]),
                                  changed_by=_out(row[3]), changed_at=row[4])


async def _set_due_at(db: _Db, pages: list[Page], wanted: Sequence[NewPage]) -> list[Page]:
    """Give the pages just inserted the due times of their NewPages (the later pages of personal rules)."""
    later = [(page.id, new.due_at) for page, new in zip(pages, wanted, strict=True) if new.due_at is not None]
    if later:
        await db.execute("UPDATE pages SET due_at = t.due_at FROM unnest($1::bigint[], $2::float8[]) AS t (id, due_at)"
                         " WHERE pages.id = t.id", [i for i, _ in later], [d for _, d in later])
    return [replace(page, due_at=new.due_at) for page, new in zip(pages, wanted, strict=True)]


OVERRIDE_COLUMNS = "id, team, role, engineer, start_at, end_at, created_by, created_at, deleted_at, deleted_by"
_FEED_COLUMNS = "id, team, engineer, created_by, created_at, revoked_at, revoked_by"


def override_from_row(row: Sequence[Any]) -> StoredOverride:
    return StoredOverride(
        id=row[0], team=_out(row[1]), role=row[2], engineer=_out(row[3]), start=row[4], end=row[5],
        created_by=_out(row[6]), created_at=row[7], deleted_at=row[8], deleted_by=_out_opt(row[9]),
    )  # fmt: skip


def _feed(row: Sequence[Any]) -> CalendarFeed:
    return CalendarFeed(id=row[0], team=_out_opt(row[1]), engineer=_out_opt(row[2]), created_by=_out(row[3]),
                        created_at=row[4], revoked_at=row[5], revoked_by=_out_opt(row[6]))


async def _push_overrides(db: _Db, team: str) -> None:
    """Pushed on commit to every gateway: each reloads this team's overrides."""
    await db.execute("SELECT pg_notify('gateway', $1)", json.dumps({"overrides": team}))


async def _matches(db: _Db, expect: Escalation) -> bool:
    """The escalation is still as ``expect`` says and its alert still triggered (the alert's row locked)."""
    status = await db.fetchval("SELECT status FROM alerts WHERE id = $1 FOR UPDATE", expect.alert_id)
    if status != "triggered":
        return False
    row = await db.fetchrow("SELECT step, repeat, next_due FROM escalations WHERE alert_id = $1", expect.alert_id)
    return row is not None and (row[0], row[1], row[2]) == (expect.step, expect.repeat, expect.next_due)


async def _insert_pages(db: _Db, alert_id: int, pages: Sequence[NewPage], step: int | None, repeat: int | None,
                        now: float, owner: str) -> list[Page]:
    if not pages:
        return []
    rows = await db.fetch(_INSERT_PAGES, alert_id, step, repeat, now, *_page_arrays(pages), owner)
    return _new_pages(sorted(r[0] for r in rows), alert_id, pages, step, repeat, now)


NOTICE_COLUMNS = ("id, kind, team, role, moment, engineer, channel, claimed_at, claimed_until, finished_at, outcome,"
                  " detail")


def notice_from_row(row: Sequence[Any]) -> Notice:
    return Notice(id=row[0], kind=row[1], team=_out(row[2]), role=row[3], moment=row[4], engineer=_out(row[5]),
                  channel=row[6], claimed_at=row[7], claimed_until=row[8], finished_at=row[9], outcome=row[10],
                  detail=_out(row[11]))
