"""Where a benchmark's gateways keep their state: SQLite (one gateway), or PostgreSQL with one or two.

Two gateways share one PostgreSQL database, each with its own port and ``public_url`` (so each gets the
callbacks of the calls it placed); the load generator sends requests to them in turn. PostgreSQL is the
server at ``GATEWAY_BENCH_POSTGRES_URL`` (its user may create databases), else a throwaway cluster with
fsync on (as in production) started once for the run; each deployment gets a fresh database.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncpg

from bench.harness import Gateway, free_port
from tests.postgres import ENV_URL, PgServer, create_database, drop_database, running_server

BENCH_URL = "GATEWAY_BENCH_POSTGRES_URL"
PASSWORD_ENV = "BENCH_PG_PASSWORD"  # the gateways read the database password from here
SQLITE_STORE = "{path: bench.db}"
#: the first call page of each alert (``channel = 'call'``, lowest id), for alerts in an id range
FIRST_PAGES = ("SELECT alert_id, min(id) FROM pages WHERE channel = 'call' AND alert_id BETWEEN {lo} AND {hi} "
               "GROUP BY alert_id")

Config = Callable[[int, str], str]  # (port, the store's YAML mapping) -> the gateway's config


@dataclass(frozen=True, kw_only=True)
class Setup:
    name: str
    store: Literal["sqlite", "postgres"]
    gateways: int


SQLITE = Setup(name="sqlite", store="sqlite", gateways=1)
PG_ONE = Setup(name="pg x1", store="postgres", gateways=1)
PG_TWO = Setup(name="pg x2", store="postgres", gateways=2)
SETUPS = (SQLITE, PG_ONE, PG_TWO)


class Postgres:
    """The run's PostgreSQL server, started when first asked for; :meth:`close` stops a throwaway one."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._server: PgServer | None = None

    def server(self) -> PgServer:
        if self._server is None:
            url = os.environ.get(BENCH_URL, "").strip()
            if url:
                os.environ[ENV_URL] = url  # tests.postgres reads its server from there
            elif not os.environ.get(ENV_URL):
                print(f"  (starting a throwaway PostgreSQL cluster, fsync on; set {BENCH_URL} to use a server)",
                      flush=True)
            self._server = self._stack.enter_context(running_server(durable=True))
        return self._server

    def close(self) -> None:
        self._stack.close()
        self._server = None


POSTGRES = Postgres()


@dataclass(kw_only=True)
class Deployment:
    setup: Setup
    gateways: list[Gateway]
    workdir: Path
    database_url: str | None = None  # PostgreSQL: the database (no password in it)
    password: str | None = None

    @property
    def ports(self) -> list[int]:
        return [gw.port for gw in self.gateways]

    async def first_pages(self, lo: int, hi: int) -> dict[int, int]:
        """alert id -> the id of its first call page, for alert ids lo..hi, read from the store."""
        query = FIRST_PAGES.format(lo=int(lo), hi=int(hi))
        if self.database_url is None:
            return await asyncio.to_thread(_sqlite_rows, self.workdir / "bench.db", query)
        db = await asyncpg.connect(self.database_url, password=self.password, timeout=30)
        try:
            return {int(a): int(p) for a, p in await db.fetch(query)}
        finally:
            await db.close()


def _sqlite_rows(path: Path, query: str) -> dict[int, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        return {int(a): int(p) for a, p in db.execute(query)}


@asynccontextmanager
async def deploy(setup: Setup, config: Config, workdir: Path) -> AsyncIterator[Deployment]:
    """Start ``setup``'s gateways (one after the other: the first applies the migrations), stop them after."""
    folder = workdir / setup.name.replace(" ", "-")
    folder.mkdir(parents=True, exist_ok=True)
    server, database, store, env = None, None, SQLITE_STORE, {}
    if setup.store == "postgres":
        server = POSTGRES.server()
        database = await create_database(server)
        store = f'{{url: "{server.database_url(database)}"'
        if server.password is not None:
            store += f", password_env: {PASSWORD_ENV}"
            env[PASSWORD_ENV] = server.password
        store += "}"
    gateways = []
    for i in range(setup.gateways):
        port = free_port()
        gateways.append(Gateway(config(port, store), folder, port, name=f"gateway-{chr(ord('a') + i)}", env=env))
    try:
        for gw in gateways:
            await gw.start()
        yield Deployment(setup=setup, gateways=gateways, workdir=folder,
                         database_url=None if server is None else server.database_url(database or ""),
                         password=None if server is None else server.password)
    finally:
        for gw in gateways:
            await gw.stop()
        if server is not None and database is not None:
            await drop_database(server, database)
