"""The embedded default store: one SQLite file in WAL mode, versioned migrations."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.store import Alert, Escalation, NewAlert, NewPage, Page, StepPlan, TimelineEntry

log = logging.getLogger(__name__)

_MAX_BATCH = 256  # transactions per group commit at the most

_ALERT_COLUMNS = (
    "id, dedup_key, status, priority, source, summary, details, labels, team, policy, route, "
    "created_at, updated_at, acknowledged_by, acknowledged_at, resolved_at"
)
_PAGE_COLUMNS = (
    "id, alert_id, step, repeat, engineer, number, channel, status, outcome, detail, "
    "created_at, updated_at"
)


def _migrations() -> list[tuple[int, str]]:
    folder = resources.files("gateway") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def _alert(row: sqlite3.Row) -> Alert:
    return Alert(
        id=row[0],
        dedup_key=row[1],
        status=row[2],
        priority=row[3],
        source=row[4],
        summary=row[5],
        details=json.loads(row[6]),
        labels=json.loads(row[7]),
        team=row[8],
        policy=row[9],
        route=row[10],
        created_at=row[11],
        updated_at=row[12],
        acknowledged_by=row[13],
        acknowledged_at=row[14],
        resolved_at=row[15],
    )


def _page(row: sqlite3.Row) -> Page:
    return Page(
        id=row[0],
        alert_id=row[1],
        step=row[2],
        repeat=row[3],
        engineer=row[4],
        number=row[5],
        channel=row[6],
        status=row[7],
        outcome=row[8],
        detail=row[9],
        created_at=row[10],
        updated_at=row[11],
    )


def _escalation(row: sqlite3.Row) -> Escalation:
    return Escalation(alert_id=row[0], step=row[1], repeat=row[2], next_due=row[3])


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()  # one connection: transactions must not interleave
        self._waiting = 0  # coroutines waiting for the connection
        self._batch: asyncio.Future[None] | None = None  # the open group-commit transaction
        self._batch_size = 0

    # ------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def ping(self) -> None:
        await self._conn.execute("SELECT 1")

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def _migrate(self) -> None:
        db = self._conn
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with db.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        current = (row[0] if row else None) or 0
        for version, sql in _migrations():
            if version <= current:
                continue
            log.info("store: applying migration %03d to %s", version, self.path)
            try:
                await db.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version (version) VALUES ({version:d});\nCOMMIT;"
                )
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise

    # One connection serves everyone. Write transactions that overlap share one
    # COMMIT (group commit): each runs in its own savepoint while holding the
    # connection, and whoever releases the connection with nobody waiting for it
    # commits the batch. A writer returns only once its batch is committed, so
    # "durable before 2xx" holds, at one fsync per batch instead of per alert.

    @asynccontextmanager
    async def _hold(self) -> AsyncIterator[aiosqlite.Connection]:
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            yield self._conn
        finally:
            try:
                if self._batch is not None and (self._waiting == 0 or self._batch_size >= _MAX_BATCH):
                    await self._commit()
            finally:
                self._lock.release()

    async def _commit(self) -> None:
        batch, self._batch, self._batch_size = self._batch, None, 0
        assert batch is not None
        try:
            await self._conn.execute("COMMIT")
        except Exception as exc:
            log.error("store: commit failed; %s", exc)
            if self._conn.in_transaction:
                await self._conn.execute("ROLLBACK")
            batch.set_exception(exc)
            batch.exception()  # retrieved here too: writers whose bodies failed do not await it
        else:
            batch.set_result(None)

    @asynccontextmanager
    async def _tx(self, *, single_statement: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction in the current group commit; returns once it is durable.

        The body runs in a savepoint, so a failing body undoes only itself. A
        ``single_statement`` body skips it: SQLite undoes a failed statement alone.
        """
        async with self._hold() as db:
            if self._batch is None:
                await db.execute("BEGIN IMMEDIATE")
                self._batch = asyncio.get_running_loop().create_future()
            batch = self._batch
            self._batch_size += 1
            if single_statement:
                yield db
            else:
                await db.execute("SAVEPOINT tx")
                try:
                    yield db
                except BaseException:
                    await db.execute("ROLLBACK TO tx")
                    await db.execute("RELEASE tx")
                    raise
                await db.execute("RELEASE tx")
        await asyncio.shield(batch)  # durable once this returns

    async def _one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._hold() as db:
            async with db.execute(sql, tuple(args)) as cur:
                return await cur.fetchone()

    async def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._hold() as db:
            async with db.execute(sql, tuple(args)) as cur:
                return list(await cur.fetchall())

    # --------------------------------------------------------------- alerts

    async def create_alert(
        self, new: NewAlert, *, now: float, escalate_at: float | None, note: str, first_step: StepPlan | None = None
    ) -> tuple[Alert, bool, list[Page]]:
        # The hot path of intake: as few statements as possible, each a hop to the store's thread.
        async with self._tx() as db:
            async with db.execute(
                "INSERT INTO alerts (dedup_key, status, priority, source, summary, details, labels,"
                " team, policy, route, created_at, updated_at)"
                " VALUES (?, 'triggered', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (dedup_key) WHERE status != 'resolved' DO NOTHING RETURNING id",
                (new.dedup_key, new.priority, new.source, new.summary, json.dumps(new.details),
                 json.dumps(new.labels), new.team, new.policy, new.route, now, now),
            ) as cur:
                inserted = await cur.fetchone()
            if inserted is None:
                async with db.execute(
                    f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE dedup_key = ? AND status != 'resolved'",
                    (new.dedup_key,),
                ) as cur:
                    row = await cur.fetchone()
                assert row is not None
                return _alert(row), False, []
            alert_id = inserted[0]
            notes = [TimelineEntry(alert_id=alert_id, at=now, kind="triggered", message=note)]
            if first_step is None:
                step, repeat, next_due, pages = 0, 0, escalate_at, []
            else:
                step, repeat, next_due = first_step.step + 1, first_step.repeat, first_step.next_due
                pages = [await self._insert_page(db, alert_id, p, first_step.step, first_step.repeat, now)
                         for p in first_step.pages]
                notes += [dataclasses.replace(n, alert_id=alert_id) for n in first_step.notes]
            await db.execute(
                "INSERT INTO escalations (alert_id, step, repeat, next_due) VALUES (?, ?, ?, ?)",
                (alert_id, step, repeat, next_due),
            )
            await self._log_all(db, notes)
        alert = Alert(
            id=alert_id, dedup_key=new.dedup_key, status="triggered", priority=new.priority, source=new.source,
            summary=new.summary, details=new.details, labels=new.labels, team=new.team, policy=new.policy,
            route=new.route, created_at=now, updated_at=now,
        )
        return alert, True, pages

    async def _write_step(self, db: aiosqlite.Connection, alert_id: int, plan: StepPlan, now: float) -> list[Page]:
        pages = [await self._insert_page(db, alert_id, p, plan.step, plan.repeat, now) for p in plan.pages]
        await self._log_all(db, [dataclasses.replace(n, alert_id=alert_id) for n in plan.notes])
        return pages

    async def get_alert(self, alert_id: int) -> Alert | None:
        row = await self._one(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,))
        return _alert(row) if row else None

    async def find_open_alert(self, dedup_key: str) -> Alert | None:
        row = await self._one(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE dedup_key = ? AND status != 'resolved'",
            (dedup_key,),
        )
        return _alert(row) if row else None

    async def list_alerts(
        self, *, status: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Alert]:
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if before_id is not None:
            where.append("id < ?")
            args.append(before_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._all(
            f"SELECT {_ALERT_COLUMNS} FROM alerts {clause} ORDER BY id DESC LIMIT ?", [*args, limit]
        )
        return [_alert(r) for r in rows]

    async def change_status(
        self, alert_id: int, status: str, *, now: float, by: str | None, note: str
    ) -> tuple[Alert, bool] | None:
        order = {"triggered": 0, "acknowledged": 1, "resolved": 2}
        async with self._tx() as db:
            async with db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)) as c:
                row = await c.fetchone()
            if row is None:
                return None
            alert = _alert(row)
            if order[alert.status] >= order[status]:
                return alert, False
            if status == "acknowledged":
                await db.execute(
                    "UPDATE alerts SET status = ?, updated_at = ?, acknowledged_by = ?, acknowledged_at = ?"
                    " WHERE id = ?",
                    (status, now, by, now, alert_id),
                )
            else:
                await db.execute(
                    "UPDATE alerts SET status = ?, updated_at = ?, resolved_at = ? WHERE id = ?",
                    (status, now, now, alert_id),
                )
            await db.execute("UPDATE escalations SET next_due = NULL WHERE alert_id = ?", (alert_id,))
            await self._log(
                db,
                TimelineEntry(alert_id=alert_id, at=now, kind=status, message=note, data={"by": by} if by else {}),
            )
            async with db.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ?", (alert_id,)) as c:
                changed = await c.fetchone()
        assert changed is not None
        return _alert(changed), True

    # ----------------------------------------------------------- escalation

    async def begin_escalation(self, alert_id: int, *, priority: str, now: float, note: str) -> bool:
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE escalations SET next_due = ? WHERE alert_id = ? AND next_due IS NULL AND step = 0"
                " AND repeat = 0 AND NOT EXISTS (SELECT 1 FROM pages WHERE alert_id = ?)"
                " AND EXISTS (SELECT 1 FROM alerts WHERE id = ? AND status = 'triggered')",
                (now, alert_id, alert_id, alert_id),
            )
            if cur.rowcount == 0:
                return False
            await db.execute("UPDATE alerts SET priority = ?, updated_at = ? WHERE id = ?", (priority, now, alert_id))
            await self._log(db, TimelineEntry(alert_id=alert_id, at=now, kind="waiting", message=note))
        return True

    async def set_priority(self, alert_id: int, priority: str, *, now: float, note: str) -> Alert | None:
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE alerts SET priority = ?, updated_at = ? WHERE id = ? AND status != 'resolved'"
                " AND priority != ?",
                (priority, now, alert_id, priority),
            )
            if cur.rowcount:
                await self._log(db, TimelineEntry(alert_id=alert_id, at=now, kind="priority", message=note))
            async with db.execute(
                f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE id = ? AND status != 'resolved'", (alert_id,)
            ) as c:
                row = await c.fetchone()
        return _alert(row) if row else None

    async def get_escalation(self, alert_id: int) -> Escalation | None:
        row = await self._one(
            "SELECT alert_id, step, repeat, next_due FROM escalations WHERE alert_id = ?", (alert_id,)
        )
        return _escalation(row) if row else None

    async def next_due(self) -> float | None:
        row = await self._one("SELECT MIN(next_due) FROM escalations WHERE next_due IS NOT NULL")
        return row[0] if row else None

    async def due_escalations(self, now: float) -> list[Escalation]:
        rows = await self._all(
            "SELECT alert_id, step, repeat, next_due FROM escalations"
            " WHERE next_due IS NOT NULL AND next_due <= ? ORDER BY next_due, alert_id",
            (now,),
        )
        return [_escalation(r) for r in rows]

    async def _matches(self, db: aiosqlite.Connection, expect: Escalation) -> bool:
        async with db.execute(
            "SELECT e.step, e.repeat, e.next_due, a.status FROM escalations e"
            " JOIN alerts a ON a.id = e.alert_id WHERE e.alert_id = ?",
            (expect.alert_id,),
        ) as cur:
            row = await cur.fetchone()
        return (
            row is not None
            and row[3] == "triggered"
            and (row[0], row[1], row[2]) == (expect.step, expect.repeat, expect.next_due)
        )

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
        async with self._tx() as db:
            if not await self._matches(db, expect):
                return False
            if restart:
                await db.execute(
                    "UPDATE escalations SET step = 0, repeat = 0, next_due = ? WHERE alert_id = ?", (next_due, alert_id)
                )
            else:
                await db.execute("UPDATE escalations SET next_due = ? WHERE alert_id = ?", (next_due, alert_id))
            if note:
                await self._log(db, TimelineEntry(alert_id=alert_id, at=now, kind="escalation", message=note))
        return True

    async def start_step(self, alert_id: int, *, expect: Escalation, plan: StepPlan, now: float) -> list[Page] | None:
        async with self._tx() as db:
            if not await self._matches(db, expect):
                return None
            await db.execute(
                "UPDATE escalations SET step = ?, repeat = ?, next_due = ? WHERE alert_id = ?",
                (plan.step + 1, plan.repeat, plan.next_due, alert_id),
            )
            return await self._write_step(db, alert_id, plan, now)

    async def add_pages(
        self, alert_id: int, pages: list[NewPage], *, notes: list[TimelineEntry], now: float
    ) -> list[Page]:
        async with self._tx() as db:
            created = [await self._insert_page(db, alert_id, p, None, None, now) for p in pages]
            await self._log_all(db, notes)
            return created

    # ---------------------------------------------------------------- pages

    async def _insert_page(
        self, db: aiosqlite.Connection, alert_id: int, page: NewPage, step: int | None, repeat: int | None, now: float
    ) -> Page:
        cur = await db.execute(
            "INSERT INTO pages (alert_id, step, repeat, engineer, number, channel, status, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'due', ?, ?)",
            (alert_id, step, repeat, page.engineer, page.number, page.channel, now, now),
        )
        assert cur.lastrowid is not None
        return Page(id=cur.lastrowid, alert_id=alert_id, step=step, repeat=repeat, engineer=page.engineer,
                    number=page.number, channel=page.channel, status="due", outcome=None, detail="",
                    created_at=now, updated_at=now)

    async def _pages_by_id(self, db: aiosqlite.Connection, ids: list[int]) -> list[Page]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        async with db.execute(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE id IN ({marks}) ORDER BY id", ids) as cur:
            return [_page(r) for r in await cur.fetchall()]

    async def get_page(self, page_id: int) -> Page | None:
        row = await self._one(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE id = ?", (page_id,))
        return _page(row) if row else None

    async def call_wanted(self, page_id: int) -> bool:
        row = await self._one(
            "SELECT 1 FROM pages p JOIN alerts a ON a.id = p.alert_id"
            " WHERE p.id = ? AND p.status != 'done' AND a.status = 'triggered'",
            (page_id,),
        )
        return row is not None

    async def pages_for(self, alert_id: int) -> list[Page]:
        rows = await self._all(f"SELECT {_PAGE_COLUMNS} FROM pages WHERE alert_id = ? ORDER BY id", (alert_id,))
        return [_page(r) for r in rows]

    async def unsent_pages(self) -> list[Page]:
        rows = await self._all(
            f"SELECT {', '.join('p.' + c.strip() for c in _PAGE_COLUMNS.split(','))} FROM pages p"
            " JOIN alerts a ON a.id = p.alert_id WHERE p.status = 'due' AND a.status = 'triggered' ORDER BY p.id"
        )
        return [_page(r) for r in rows]

    async def mark_page_sent(self, page_id: int, *, now: float) -> None:
        async with self._tx(single_statement=True) as db:
            await db.execute(
                "UPDATE pages SET status = 'sent', updated_at = ? WHERE id = ? AND status = 'due'", (now, page_id)
            )

    async def finish_page(
        self, page_id: int, *, outcome: str, detail: str, now: float, note: TimelineEntry | None
    ) -> Page | None:
        async with self._tx() as db:
            cur = await db.execute(
                "UPDATE pages SET status = 'done', outcome = ?, detail = ?, updated_at = ?"
                " WHERE id = ? AND status != 'done'",
                (outcome, detail, now, page_id),
            )
            if cur.rowcount == 0:
                return None
            if note is not None:
                await self._log(db, note)
            pages = await self._pages_by_id(db, [page_id])
        return pages[0]

    async def latest_alert_paged_to(self, engineer: str, *, statuses: tuple[str, ...]) -> Alert | None:
        marks = ",".join("?" * len(statuses))
        row = await self._one(
            f"SELECT {', '.join('a.' + c.strip() for c in _ALERT_COLUMNS.split(','))} FROM alerts a"
            f" JOIN pages p ON p.alert_id = a.id WHERE p.engineer = ? AND a.status IN ({marks})"
            " ORDER BY p.id DESC LIMIT 1",
            (engineer, *statuses),
        )
        return _alert(row) if row else None

    async def was_paged(self, alert_id: int, engineer: str) -> bool:
        row = await self._one("SELECT 1 FROM pages WHERE alert_id = ? AND engineer = ? LIMIT 1", (alert_id, engineer))
        return row is not None

    # ------------------------------------------------------------- timeline

    async def _log(self, db: aiosqlite.Connection, entry: TimelineEntry) -> None:
        await self._log_all(db, [entry])

    async def _log_all(self, db: aiosqlite.Connection, entries: list[TimelineEntry]) -> None:
        await db.executemany(
            "INSERT INTO timeline (alert_id, at, kind, message, data) VALUES (?, ?, ?, ?, ?)",
            [(e.alert_id, e.at, e.kind, e.message, json.dumps(e.data)) for e in entries],
        )

    async def add_timeline(self, entry: TimelineEntry) -> None:
        async with self._tx(single_statement=True) as db:
            await self._log(db, entry)

    async def timeline(self, alert_id: int) -> list[TimelineEntry]:
        rows = await self._all(
            "SELECT alert_id, at, kind, message, data FROM timeline WHERE alert_id = ? ORDER BY id", (alert_id,)
        )
        return [TimelineEntry(alert_id=r[0], at=r[1], kind=r[2], message=r[3], data=json.loads(r[4])) for r in rows]
