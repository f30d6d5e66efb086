"""The SQLite store's own guarantees (the Store contract both engines keep is in test_store_contract.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.enums import Channel
from gateway.migrations import scripts
from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert, NewPage

ALL_VERSIONS = [(m.version,) for m in scripts("sqlite")]


def _new(key: str = "k") -> NewAlert:
    return NewAlert(dedup_key=key, priority="low", source="api", summary="s", team="sre", policy="default",
                    route="r", labels={"a": "b"}, details={"n": 1})


async def test_migrations_apply_once_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "g.db"
    store = SqliteStore(path)
    await store.open()
    alert, created, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
    await store.close()
    store = SqliteStore(path)
    await store.open()
    try:
        assert (await store.get_alert(alert.id)) == alert
        assert created and alert.labels == {"a": "b"} and alert.details == {"n": 1}
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == ALL_VERSIONS
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_group_commit_keeps_each_write_atomic_and_answers_after_commit(tmp_path: Path) -> None:
    import asyncio

    from gateway.store import TimelineEntry

    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    try:
        # Many writers at once land in shared transactions; duplicates still make one alert.
        results = await asyncio.gather(*(
            store.create_alert(_new(f"k{i % 50}"), now=float(i), escalate_at=None, note="t") for i in range(200)
        ))
        assert sum(1 for _, created, _ in results if created) == 50
        # A write that fails (foreign key) in the middle of a batch undoes itself only.
        outcomes = await asyncio.gather(
            store.add_timeline(TimelineEntry(alert_id=1, at=1.0, kind="note", message="kept")),
            store.add_timeline(TimelineEntry(alert_id=999_999, at=1.0, kind="note", message="refused")),
            store.add_timeline(TimelineEntry(alert_id=2, at=1.0, kind="note", message="kept too")),
            return_exceptions=True,
        )
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], sqlite3.IntegrityError)
        assert [e.message for e in await store.timeline(1)][-1] == "kept"
        assert [e.message for e in await store.timeline(2)][-1] == "kept too"
        # A caller that gives up does not break the batch for the others.
        task = asyncio.ensure_future(store.create_alert(_new("gone"), now=1.0, escalate_at=None, note="t"))
        task.cancel()
        alert, created, _ = await store.create_alert(_new("stays"), now=1.0, escalate_at=None, note="t")
        assert created and (await store.find_open_alert("stays")) == alert
    finally:
        await store.close()
    # Everything answered was durable: a fresh connection sees it.
    with sqlite3.connect(tmp_path / "g.db") as db:
        assert db.execute("SELECT COUNT(*) FROM alerts WHERE dedup_key LIKE 'k%'").fetchone()[0] == 50


async def test_a_file_the_previous_release_wrote_opens_unchanged(tmp_path: Path) -> None:
    # Before the history had one script per engine, 001_initial.sql was applied and recorded as version 1.
    # The same file, now 001_initial.sqlite.sql, keeps that number: nothing is applied again, nothing is lost.
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.executescript(PREVIOUS_RELEASE_SCHEMA)
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        db.execute("INSERT INTO alerts (dedup_key, status, priority, source, summary, team, policy, route,"
                   " created_at, updated_at) VALUES ('old', 'triggered', 'high', 'api', 'from before', 'sre', 'p',"
                   " 'r', 1.0, 1.0)")
        db.execute("INSERT INTO escalations (alert_id, step, repeat, next_due) VALUES (1, 0, 0, 5.0)")
    store = SqliteStore(path)
    await store.open()
    try:
        old = await store.find_open_alert("old")
        assert old is not None and old.id == 1 and old.summary == "from before"
        new, created, _ = await store.create_alert(_new(), now=2.0, escalate_at=None, note="t")
        assert created and new.id == 2
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == ALL_VERSIONS


# gateway/migrations/001_initial.sql as the previous release shipped it (git show d4432ef:gateway/migrations/...).
PREVIOUS_RELEASE_SCHEMA = """
CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key       TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('triggered', 'acknowledged', 'resolved')),
    priority        TEXT    NOT NULL CHECK (priority IN ('high', 'low')),
    source          TEXT    NOT NULL,
    summary         TEXT    NOT NULL,
    details         TEXT    NOT NULL DEFAULT '{}',
    labels          TEXT    NOT NULL DEFAULT '{}',
    team            TEXT    NOT NULL,
    policy          TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at REAL,
    resolved_at     REAL
);
CREATE UNIQUE INDEX alerts_open_dedup ON alerts (dedup_key) WHERE status != 'resolved';
CREATE INDEX alerts_status ON alerts (status, id);
CREATE TABLE escalations (
    alert_id INTEGER PRIMARY KEY REFERENCES alerts (id),
    step     INTEGER NOT NULL,
    repeat   INTEGER NOT NULL,
    next_due REAL
);
CREATE INDEX escalations_due ON escalations (next_due) WHERE next_due IS NOT NULL;
CREATE TABLE pages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id   INTEGER NOT NULL REFERENCES alerts (id),
    step       INTEGER,
    repeat     INTEGER,
    engineer   TEXT,
    number     TEXT    NOT NULL,
    channel    TEXT    NOT NULL CHECK (channel IN ('call', 'sms')),
    status     TEXT    NOT NULL CHECK (status IN ('due', 'sent', 'done')),
    outcome    TEXT,
    detail     TEXT    NOT NULL DEFAULT '',
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
CREATE INDEX pages_alert ON pages (alert_id, step, repeat);
CREATE INDEX pages_status ON pages (status) WHERE status != 'done';
CREATE INDEX pages_engineer ON pages (engineer, alert_id);
CREATE TABLE timeline (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id INTEGER NOT NULL REFERENCES alerts (id),
    at       REAL    NOT NULL,
    kind     TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    data     TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX timeline_alert ON timeline (alert_id, id);
"""


def _pages_schema(db: sqlite3.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[str]]:
    """The pages table as SQLite knows it: every column (type, NOT NULL, default, key), every index with its
    SQL, and every foreign key."""
    columns = db.execute("PRAGMA table_xinfo(pages)").fetchall()
    indexes = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'pages'"
                         " ORDER BY name").fetchall()
    keys = [repr(row) for row in db.execute("PRAGMA foreign_key_list(pages)")]
    return columns, indexes, keys


def test_migration_008_keeps_every_column_index_and_key_that_001_to_007_gave_pages(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "g.db") as db:
        for migration in scripts("sqlite")[:7]:
            db.executescript(migration.sql)
        before = _pages_schema(db)
        db.executescript(scripts("sqlite")[7].sql)
        after = _pages_schema(db)
        table = db.execute("SELECT sql FROM sqlite_master WHERE name = 'pages'").fetchone()[0]
    assert after == before  # whatever a later migration adds to pages before 008 must be carried over too
    assert "CHECK (channel IN ('call', 'sms', 'email', 'chat'))" in table


async def test_migration_008_rebuilds_pages_keeping_rows_ids_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for migration in scripts("sqlite")[:7]:
            db.executescript(migration.sql)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (migration.version,))
        db.execute("INSERT INTO alerts (dedup_key, status, priority, source, summary, team, policy, route,"
                   " created_at, updated_at) VALUES ('old', 'triggered', 'high', 'api', 's', 'sre', 'p', 'r', 1, 1)")
        db.execute("INSERT INTO pages (id, alert_id, step, repeat, engineer, number, channel, status, outcome,"
                   " detail, created_at, updated_at, owner, due_at) VALUES (41, 1, 0, 0, 'alice', '+15550000001',"
                   " 'call', 'done', 'no_answer', 'rang out', 1, 2, NULL, 7.5)")
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):  # before 008 an email page is refused
            db.execute("INSERT INTO pages (alert_id, number, channel, status, created_at, updated_at)"
                       " VALUES (1, 'a@example.com', 'email', 'due', 1, 1)")
    store = SqliteStore(path)
    await store.open()
    try:
        [old] = await store.pages_for(1)
        assert (old.id, old.engineer, old.channel, old.outcome, old.detail, old.due_at) == (
            41, "alice", "call", "no_answer", "rang out", 7.5)
        [email] = await store.add_pages(1, [NewPage(engineer="alice", number="a@example.com", channel=Channel.EMAIL)],
                                        notes=[], now=3.0)
        assert email.id == 42  # AUTOINCREMENT carries on from the rows copied
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                                " AND tbl_name = 'pages' AND name NOT LIKE 'sqlite_%'")}
        assert indexes == {"pages_alert", "pages_status", "pages_engineer", "pages_due_at"}
        assert db.execute("SELECT version FROM schema_version").fetchall() == ALL_VERSIONS
