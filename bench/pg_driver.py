"""Which PostgreSQL driver for the store: asyncpg or psycopg 3 (async), measured on the store's hot path.

    python -m bench.pg_driver                      # starts a throwaway cluster (fsync on), deletes it after
    python -m bench.pg_driver --url postgresql://user:password@host:5432/postgres

The hot path is what every alert costs the store: ``create_alert`` with its first step (the alert, its
escalation, the step's page and the notes, in one transaction with the dedup key's lock), then
``mark_page_sent``. asyncpg runs it through the real ``PgStore``; psycopg runs the very same statements
(``CreateAlertSql``, ``CREATE_ALERT``, ``MARK_PAGE_SENT``) through ``AsyncRawCursor`` and psycopg_pool, with
the same pool size and the same transaction shape. Each driver gets a fresh database; the drivers take
turns for ``--rounds`` rounds and the median round is printed. Figures: latency p50/p99 of one hot path,
hot paths per second, and this process's CPU time per hot path (the gateway shares the machine's cores
with PostgreSQL). Needs ``pip install "psycopg[binary]" psycopg-pool`` for the psycopg half. Nothing here
is a test.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.pg_store import CREATE_ALERT, MARK_PAGE_SENT, CreateAlertSql, PgStore
from gateway.store import NewAlert, NewPage, StepPlan, TimelineEntry
from tests.postgres import PgServer, create_database, drop_database, from_environment, running_server

HotPath = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Figures:
    p50_ms: float
    p99_ms: float
    per_second: float
    cpu_us: float


def _alert(i: int) -> tuple[NewAlert, StepPlan]:
    new = NewAlert(dedup_key=f"bench-{i}", priority="high", source="api", summary=f"disk full on db-{i}",
                   team="sre", policy="default", route="sre-critical", labels={"team": "sre", "host": f"db-{i}"},
                   details={"value": 97.5})
    plan = StepPlan(step=0, repeat=0, next_due=1_000_020.0,
                    pages=[NewPage(engineer="alice", number="+15550000001", channel="call")],
                    notes=[TimelineEntry(alert_id=0, at=1_000_000.0, kind="step", message="step 1: calling Alice")])
    return new, plan


async def _asyncpg(url: str, password: str | None, pool_size: int) -> tuple[HotPath, Callable[[], Awaitable[None]]]:
    store = PgStore(url, password=password, pool_size=pool_size)
    await store.open()

    async def hot_path(i: int) -> None:
        new, plan = _alert(i)
        _, created, pages = await store.create_alert(new, now=1_000_000.0, escalate_at=None, note="triggered",
                                                     first_step=plan,
                                owner="bench")
        assert created
        await store.mark_page_sent(pages[0].id, now=1_000_001.0)

    return hot_path, store.close


async def _psycopg(url: str, password: str | None, pool_size: int) -> tuple[HotPath, Callable[[], Awaitable[None]]]:
    import psycopg
    import psycopg_pool

    migrate = PgStore(url, password=password)  # the same schema, by the same migrations
    await migrate.open()
    await migrate.close()
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": "oncall-gateway-bench"}
    if password is not None:
        kwargs["password"] = password
    pool = psycopg_pool.AsyncConnectionPool(url, min_size=pool_size, max_size=pool_size, kwargs=kwargs, open=False)
    await pool.open(wait=True)

    async def hot_path(i: int) -> None:
        new, plan = _alert(i)
        sql = CreateAlertSql.of(new, now=1_000_000.0, escalate_at=None, note="triggered", first_step=plan,
                                owner="bench")
        async with pool.connection() as db:
            cursor = psycopg.AsyncRawCursor(db)
            await cursor.execute(CREATE_ALERT, sql.args)
            row = await cursor.fetchone()
        assert row is not None and row[-2] is not None
        async with pool.connection() as db:
            await psycopg.AsyncRawCursor(db).execute(MARK_PAGE_SENT, (1_000_001.0, row[-1][0]))

    return hot_path, pool.close


async def _measure(hot_path: HotPath, *, concurrency: int, count: int, first: int) -> Figures:
    numbers = itertools.count(first)
    last = first + count
    latencies: list[float] = []

    async def worker() -> None:
        while (i := next(numbers)) < last:
            started = time.perf_counter()
            await hot_path(i)
            latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    latencies.sort()
    return Figures(p50_ms=latencies[len(latencies) // 2] * 1000, p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
                   per_second=count / wall, cpu_us=cpu / count * 1e6)


async def _round(server: PgServer, driver: str, *, pool_size: int, plan: list[tuple[int, int]]) -> list[Figures]:
    name = await create_database(server)
    try:
        make = _asyncpg if driver == "asyncpg" else _psycopg
        hot_path, close = await make(server.database_url(name), server.password, pool_size)
        try:
            await _measure(hot_path, concurrency=10, count=200, first=0)  # warm up: connections, statement caches
            figures, first = [], 1_000
            for concurrency, count in plan:
                figures.append(await _measure(hot_path, concurrency=concurrency, count=count, first=first))
                first += count
            return figures
        finally:
            await close()
    finally:
        await drop_database(server, name)


def _median(runs: list[Figures]) -> Figures:
    fields = Figures.__dataclass_fields__
    return Figures(**{field: statistics.median(getattr(r, field) for r in runs) for field in fields})


async def _bench(server: PgServer, args: argparse.Namespace) -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401

        drivers = ["asyncpg", "psycopg"]
    except ImportError:
        print('psycopg is not installed (pip install "psycopg[binary]" psycopg-pool): asyncpg only')
        drivers = ["asyncpg"]
    plan = [(1, args.count_1), (50, args.count_50)]
    results: dict[tuple[str, int], list[Figures]] = {}
    for round_number in range(1, args.rounds + 1):
        for driver in drivers if round_number % 2 else reversed(drivers):
            for (concurrency, _), figures in zip(plan, await _round(server, driver, pool_size=args.pool_size,
                                                                     plan=plan), strict=True):
                results.setdefault((driver, concurrency), []).append(figures)
                print(f"round {round_number} {driver:8} concurrency {concurrency:2}: {figures.p50_ms:6.2f} ms p50 "
                      f"{figures.p99_ms:7.2f} ms p99 {figures.per_second:7.0f}/s {figures.cpu_us:5.0f} us CPU",
                      flush=True)
    print(f"\nhot path = create_alert with its first step + mark_page_sent; pool of {args.pool_size}; "
          f"median of {args.rounds} rounds; {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'driver':8} {'conc.':>5} {'p50 ms':>8} {'p99 ms':>8} {'paths/s':>8} {'CPU us/path':>12}")
    for (driver, concurrency), runs in results.items():
        m = _median(runs)
        print(f"{driver:8} {concurrency:5d} {m.p50_ms:8.2f} {m.p99_ms:8.2f} {m.per_second:8.0f} {m.cpu_us:12.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_driver", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a PostgreSQL server whose user may create databases "
                                      "(default: GATEWAY_TEST_POSTGRES_URL, else a throwaway cluster with fsync on)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--count-1", type=int, default=500, help="hot paths at concurrency 1 per round")
    parser.add_argument("--count-50", type=int, default=5000, help="hot paths at concurrency 50 per round")
    args = parser.parse_args()
    if args.url:
        os.environ["GATEWAY_TEST_POSTGRES_URL"] = args.url
    if from_environment() is None:
        print("starting a throwaway PostgreSQL cluster (fsync on, as in production)", flush=True)
    with running_server(durable=True) as server:
        asyncio.run(_bench(server, args))


if __name__ == "__main__":
    main()
