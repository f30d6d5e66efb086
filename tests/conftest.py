"""Fixtures shared by every test folder: a real PostgreSQL, started once per session (tests/postgres.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from gateway.pg_store import PgStore
from tests.postgres import PgDatabase, PgServer, Postgres, create_database, drop_database, running_server

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to the end on a loop of its own, in a thread: callable even while a test's loop runs."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def _migrated_template(server: PgServer) -> str:
    name = await create_database(server)
    store = PgStore(server.database_url(name), password=server.password)
    await store.open()
    await store.close()
    return name


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """Never skipped: without a server the tests that need one fail, saying why."""
    with running_server() as server:
        template = _run(_migrated_template(server))
        try:
            yield Postgres(server=server, template=template)
        finally:
            _run(drop_database(server, template))


@pytest.fixture
async def pg_database(postgres: Postgres) -> AsyncIterator[PgDatabase]:
    name = await create_database(postgres.server, template=postgres.template)
    try:
        yield PgDatabase(server=postgres.server, name=name, url=postgres.server.database_url(name))
    finally:
        await drop_database(postgres.server, name)
