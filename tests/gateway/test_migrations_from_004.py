"""Migrations 005-008 on a database a release at 004 wrote, with its data: both engines, through the stores."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest

from core.enums import Channel
from gateway import pg_store, sqlite_store
from gateway.migrations import scripts
from gateway.pg_store import PgStore
from gateway.sqlite_store import SqliteStore
from gateway.store import NewPage
from tests.postgres import Postgres, create_database, drop_database

# What a gateway at 004 had written: an alert, its escalation, a page that rang, a note, an override, a feed.
DATA_AT_004 = [
    "INSERT INTO alerts (dedup_key, status, priority, source, summary, team, policy, route, created_at,"
    " updated_at) VALUES ('old', 'triggered', 'high', 'api', 'from 004', 'sre', 'default', 'r', 1, 1)",
    "INSERT INTO escalations (alert_id, step, repeat, next_due) VALUES (1, 1, 0, 50)",
    "INSERT INTO pages (alert_id, step, repeat, engineer, number, channel, status, outcome, detail, created_at,"
    " updated_at) VALUES (1, 0, 0, 'alice', '+15550000001', 'sms', 'done', 'delivered', 'ok', 1, 2)",
    "INSERT INTO timeline (alert_id, at, kind, message) VALUES (1, 1, 'triggered', 'from 004')",
    "INSERT INTO overrides (team, role, engineer, start_at, end_at, created_by, created_at)"
    " VALUES ('sre', 'primary', 'bob', 10, 20, 'admin', 1)",
    "INSERT INTO calendar_feeds (team, secret_sha256, created_by, created_at) VALUES ('sre', 'abc', 'admin', 1)",
]
LATER = [migration for migration in scripts("sqlite") if migration.version > 4]


def _at_004(monkeypatch: pytest.MonkeyPatch, module: object) -> None:
    monkeypatch.setattr(module, "scripts", lambda engine: scripts(engine)[:4])


async def _check_carried_on(store: SqliteStore | PgStore) -> None:
    alert = await store.get_alert(1)
    assert alert is not None and alert.summary == "from 004"
    [old] = await store.pages_for(1)
    assert (old.id, old.channel, old.outcome, old.due_at) == (1, "sms", "delivered", None)
    assert [o.engineer for o in await store.list_overrides("sre")] == ["bob"]
    # 008: an email page is taken, and 005-007's tables are there to write to
    [email] = await store.add_pages(1, [NewPage(engineer="alice", number="a@example.com", channel=Channel.EMAIL)],
                                    notes=[], now=3.0)
    assert email.id == 2  # ids carry on from the rows written at 004
    assert await store.next_due() == 50


async def test_sqlite_at_004_with_data_takes_005_to_008(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.db"
    _at_004(monkeypatch, sqlite_store)
    store = SqliteStore(path)
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        for statement in DATA_AT_004:
            db.execute(statement)
    monkeypatch.undo()
    store = SqliteStore(path)
    await store.open()
    try:
        await _check_carried_on(store)
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions[-len(LATER):] == [m.version for m in LATER]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_postgres_at_004_with_data_takes_005_to_008(postgres: Postgres, monkeypatch: pytest.MonkeyPatch) -> None:
    name = await create_database(postgres.server)  # empty: not the suite's migrated template
    url = postgres.server.database_url(name)
    try:
        _at_004(monkeypatch, pg_store)
        store = PgStore(url, password=postgres.server.password)
        await store.open()
        await store.close()
        db = await asyncpg.connect(url, password=postgres.server.password)
        try:
            for statement in DATA_AT_004:
                await db.execute(statement)
        finally:
            await db.close()
        monkeypatch.undo()
        store = PgStore(url, password=postgres.server.password)
        await store.open()
        try:
            await _check_carried_on(store)
        finally:
            await store.close()
        db = await asyncpg.connect(url, password=postgres.server.password)
        try:
            checks = await db.fetch("SELECT conname FROM pg_constraint WHERE conrelid = 'pages'::regclass"
                                    " AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%channel%'")
            assert [row["conname"] for row in checks] == ["pages_channel_check"]  # the narrower one is gone
            versions = [row[0] for row in await db.fetch("SELECT version FROM schema_version ORDER BY version")]
            assert versions == [m.version for m in scripts("postgres")]
        finally:
            await db.close()
    finally:
        await drop_database(postgres.server, name)
