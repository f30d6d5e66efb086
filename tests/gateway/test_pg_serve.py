"""`gateway serve` on PostgreSQL as a real process: it serves, or it fails at start in one line naming the store."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest

from gateway.cli import store_problem
from gateway.config import load_config
from tests.postgres import PgDatabase, Postgres, create_database, drop_database, free_port
from tests.support import AUTH, BASE_CONFIG, eventually, write_config

PASSWORD_ENV = "GATEWAY_TEST_DB_PASSWORD"
SECRET = "not-the-password-8c1f"


def _config(tmp_path: Path, url: str, *, password_env: bool = True) -> Path:
    store = f"store:\n  url: {url}\n" + (f"  password_env: {PASSWORD_ENV}\n" if password_env else "")
    return write_config(tmp_path, BASE_CONFIG.replace("store:\n  path: gateway.db\n", store))


async def _serve_fails(config: Path, password: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", str(config), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, PASSWORD_ENV: password},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 2, (out + err).decode()
    assert "Traceback" not in (out + err).decode() and password not in (out + err).decode()
    return err.decode().strip().splitlines()


async def test_serve_on_postgres_runs_until_sigterm(tmp_path: Path, pg_database: PgDatabase) -> None:
    port = free_port()
    config = _config(tmp_path, pg_database.url, password_env=pg_database.password is not None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", str(config), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, PASSWORD_ENV: pg_database.password or ""},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def ready() -> bool:
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(ready, timeout=60)
            async with http.post(f"{base}/api/v1/alerts", headers=AUTH, json={"summary": "on postgres"}) as resp:
                assert resp.status == 202
                alert_id = (await resp.json())["id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, output.decode()
    db = await asyncpg.connect(pg_database.url, password=pg_database.password)
    try:
        assert await db.fetchval("SELECT summary FROM alerts WHERE id = $1", alert_id) == "on postgres"
    finally:
        await db.close()


async def test_serve_with_an_unreachable_postgres_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"postgresql://gateway@127.0.0.1:{free_port()}/gateway"  # nothing listens there
    lines = await _serve_fails(_config(tmp_path, url), SECRET)
    assert len(lines) == 1 and lines[0].startswith(f"gateway serve: cannot open the store {url}: "), lines
    assert "Connect call failed" in lines[0] or "refused" in lines[0], lines


async def test_serve_with_a_login_postgres_refuses_says_so_in_one_line(tmp_path: Path, pg_database: PgDatabase) -> None:
    url = pg_database.server.database_url(pg_database.name, user="no_such_gateway_user")
    lines = await _serve_fails(_config(tmp_path, url), SECRET)
    assert len(lines) == 1 and lines[0].startswith(f"gateway serve: cannot open the store {url}: "), lines
    # Under password authentication the server does not say whether the user exists; either way it is named.
    assert 'password authentication failed for user "no_such_gateway_user"' in lines[0] or (
        'role "no_such_gateway_user" does not exist' in lines[0]), lines


async def test_serve_with_a_missing_database_says_so_in_one_line(tmp_path: Path, pg_database: PgDatabase) -> None:
    url = pg_database.server.database_url("no_such_gateway_database")
    lines = await _serve_fails(_config(tmp_path, url), pg_database.password or SECRET)
    assert lines == [f'gateway serve: cannot open the store {url}: database "no_such_gateway_database" does not exist']


async def test_a_user_who_may_not_create_the_tables_is_told_before_the_first_start(
    tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = postgres.server
    name = await create_database(server)  # empty: the first start has to create the tables
    role = f"gateway_reader_{name[-6:]}"
    admin = await asyncpg.connect(server.database_url(name), password=server.password)
    try:
        # Since PostgreSQL 15 only the database owner may create tables in schema public.
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{SECRET}'")
        await admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        monkeypatch.setenv(PASSWORD_ENV, SECRET)
        config = load_config(_config(tmp_path, server.database_url(name, user=role)))
        assert await asyncio.to_thread(store_problem, config) == (
            f"cannot open the store {config.store_url}: user {role} may not create the tables in schema public "
            f"(GRANT CREATE ON SCHEMA public TO {role}, or make {role} the database's owner)"
        )
        await admin.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        assert await asyncio.to_thread(store_problem, config) is None
    finally:
        await admin.close()
        await drop_database(server, name)
        admin = await asyncpg.connect(server.url, password=server.password)
        try:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            await admin.close()
