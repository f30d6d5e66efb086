"""What only the PostgreSQL store promises: its migrations, several gateways starting at once, lost connections."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.migrations import scripts
from gateway.pg_store import PgStore
from gateway.store import HoldWindow, NewAlert
from tests.postgres import PgDatabase, Postgres, create_database, drop_database, free_port
from tests.support import eventually

T = TypeVar("T")


def _new(key: str = "k") -> NewAlert:
    return NewAlert(dedup_key=key, priority="low", source="api", summary="s", team="sre", policy="default",
                    route="r")


async def _fetch(url: str, password: str | None, query: str) -> list[tuple[object, ...]]:
    db = await asyncpg.connect(url, password=password)
    try:
        return [tuple(r) for r in await db.fetch(query)]
    finally:
        await db.close()


async def _terminate_sessions(database: PgDatabase) -> int:
    """End every session of the store (as a server restart would) and wait until the server has closed them."""
    sessions = ("FROM pg_stat_activity WHERE application_name = 'oncall-gateway' AND datname = current_database()")
    db = await asyncpg.connect(database.url, password=database.password)
    try:
        killed = len(await db.fetch(f"SELECT pg_terminate_backend(pid) {sessions}"))
        while await db.fetchval(f"SELECT count(*) {sessions}"):
            await asyncio.sleep(0.01)
        return killed
    finally:
        await db.close()


def _blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result(timeout=60)


async def test_an_empty_database_is_migrated_once_even_by_gateways_starting_together(postgres: Postgres) -> None:
    server = postgres.server
    name = await create_database(server)  # from template0: no tables at all
    url = server.database_url(name)
    try:
        stores = [PgStore(url, password=server.password) for _ in range(4)]
        await asyncio.gather(*(s.open() for s in stores))  # without the migration lock, CREATE TABLE collides
        try:
            alerts = [await s.create_alert(_new(f"k{i}"), now=1.0, escalate_at=None, note="t")
                      for i, s in enumerate(stores)]
            assert [a.id for a, _, _ in alerts] == [1, 2, 3, 4]
        finally:
            await asyncio.gather(*(s.close() for s in stores))
        versions = await _fetch(url, server.password, "SELECT version FROM schema_version ORDER BY version")
        assert versions == [(m.version,) for m in scripts("postgres")]
        tables = await _fetch(url, server.password, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                                    " ORDER BY tablename")
        assert tables == [("action_links_used",), ("alerts",), ("calendar_feeds",), ("call_sessions",),
                          ("escalations",), ("gateways",), ("heartbeats",), ("line_demand",), ("line_pace",),
                          ("line_use",), ("maintenance_holds",), ("maintenance_windows",), ("notices",),
                          ("notification_rule_changes",), ("overrides",), ("pages",), ("schema_version",),
                          ("timeline",)]
    finally:
        await drop_database(server, name)


async def test_a_database_a_newer_release_migrated_still_opens(pg_database: PgDatabase) -> None:
    # Expand/contract: during a rolling upgrade the previous release runs beside the new schema.
    db = await asyncpg.connect(pg_database.url, password=pg_database.password)
    try:
        await db.execute("INSERT INTO schema_version (version) VALUES (900)")
        await db.execute("ALTER TABLE alerts ADD COLUMN added_by_a_newer_release text")
    finally:
        await db.close()
    store = PgStore(pg_database.url, password=pg_database.password)
    await store.open()
    try:
        alert, created, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
        assert created and await store.get_alert(alert.id) == alert
    finally:
        await store.close()


async def test_the_store_carries_on_when_the_server_drops_its_connections(pg_database: PgDatabase) -> None:
    # A PostgreSQL restart or failover ends every session. The next request still succeeds: it meets a dropped
    # connection where that is safe to notice (BEGIN, or a read), and the pool replaces them all.
    store = PgStore(pg_database.url, password=pg_database.password)
    await store.open()
    try:
        await asyncio.gather(*(store.ping() for _ in range(5)))  # several connections in the pool
        first, _, pages = await store.create_alert(_new("before"), now=1.0, escalate_at=None, note="t")
        for operation in ("write", "read", "idempotent write", "held write"):
            # Blocking this loop on purpose: the store's connections are gone before it can notice.
            assert _blocking(_terminate_sessions(pg_database)) > 0
            if operation == "write":
                second, created, _ = await store.create_alert(_new("after"), now=2.0, escalate_at=None, note="t")
                assert created and second.id == first.id + 1
            elif operation == "read":
                assert await store.get_alert(first.id) == first
            elif operation == "idempotent write":
                await store.mark_page_sent(pages[0].id if pages else 0, now=3.0)
            else:  # an alert held by maintenance: BEGIN meets the dropped connection, and is run again
                held, created = await store.create_held_alert(_new("held"), now=4.0, note="held", windows=(
                    HoldWindow(key="config:db", name="db", until=9.0),))
                assert created and [h.alert_id for h in await store.list_holds()] == [held.id]
            await store.ping()
    finally:
        await store.close()


async def test_open_that_fails_leaves_no_connection_behind(postgres: Postgres) -> None:
    with pytest.raises(OSError):  # nothing listens there
        await PgStore(f"postgresql://gateway@127.0.0.1:{free_port()}/gateway", password="x").open()
    # A login that may not create the tables: open() fails in the migration and closes its pool.
    server = postgres.server
    name = await create_database(server)
    role = f"gateway_reader_{name[-6:]}"
    admin = await asyncpg.connect(server.database_url(name), password=server.password)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-password'")
        await admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        store = PgStore(server.database_url(name, user=role), password="reader-password")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await store.open()
        async def none_left() -> bool:  # a backend ends a moment after its client said goodbye
            return await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role) == 0

        await eventually(none_left)
        with pytest.raises(RuntimeError, match="store is not open"):
            await store.ping()
    finally:
        await admin.close()
        await drop_database(server, name)
        admin = await asyncpg.connect(server.url, password=server.password)
        try:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            await admin.close()
