"""The whole story through the real app on PostgreSQL (store.url in the config) and the sandbox phones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.postgres import PgDatabase
from tests.support import ALICE, BASE_CONFIG, BOB, Gateway, eventually, payload, write_config

PASSWORD_ENV = "GATEWAY_TEST_DB_PASSWORD"


@pytest.fixture
def pg_config_path(tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = f"store:\n  url: {pg_database.url}\n"
    if pg_database.password is not None:
        monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
        store += f"  password_env: {PASSWORD_ENV}\n"
    assert "store:\n  path: gateway.db\n" in BASE_CONFIG
    return write_config(tmp_path, BASE_CONFIG.replace("store:\n  path: gateway.db\n", store))


async def _start(aiohttp_client: Callable[..., Any], config_path: Path, clock: FakeClock) -> Gateway:
    config = load_config(config_path)
    assert config.store_url is not None
    client = await aiohttp_client(create_app(config, clock=clock))
    return Gateway(client, clock)


async def _row(database: PgDatabase, query: str, *args: object) -> Any:
    db = await asyncpg.connect(database.url, password=database.password)
    try:
        return await db.fetchrow(query, *args)
    finally:
        await db.close()


async def test_primary_does_not_answer_secondary_acknowledges_all_in_postgres(
    aiohttp_client: Callable[..., Any], pg_config_path: Path, pg_database: PgDatabase
) -> None:
    gateway = await _start(aiohttp_client, pg_config_path, FakeClock())
    status, ready = await gateway.get("/readyz")
    assert status == 200 and ready["checks"]["store"] == "ok", ready
    body = payload("alertmanager-v4-firing-truncated.json")
    body["alerts"][0]["labels"]["team"] = "sre"
    status, answer = await gateway.post("/api/v1/integrations/alertmanager", body)
    assert status == 202, answer
    alert_id = answer["alerts"][0]["id"]
    # Durable before the 202: another connection sees the alert and its first page.
    row = await _row(pg_database, "SELECT status, (SELECT count(*) FROM pages WHERE alert_id = $1) FROM alerts"
                                  " WHERE id = $1", alert_id)
    assert tuple(row) == ("triggered", 1)

    await gateway.ringing(ALICE)
    await gateway.clock.advance(20)  # nobody answers: the next step rings Bob
    await gateway.ringing(BOB)
    await gateway.post(f"/api/v1/sandbox/phones/{BOB}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{BOB}/press", {"digits": "1"})
    alert = await gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "bob"
    assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "no_answer"), ("bob", "acknowledged")]
    assert any("acknowledged by Bob" in t["message"] for t in alert["timeline"])

    await gateway.clock.advance(3600)  # nobody is paged again
    assert (await gateway.phone(ALICE))["calls"] == 1 and (await gateway.phone(BOB))["calls"] == 1
    row = await _row(pg_database, "SELECT acknowledged_by, (SELECT count(*) FROM pages WHERE alert_id = $1)"
                                  " FROM alerts WHERE id = $1", alert_id)
    assert tuple(row) == ("bob", 2)
    assert not (pg_config_path.parent / "gateway.db").exists()  # nothing went to a SQLite file


async def test_a_restarted_gateway_carries_on_from_postgres(
    aiohttp_client: Callable[..., Any], pg_config_path: Path
) -> None:
    clock = FakeClock()
    first = await _start(aiohttp_client, pg_config_path, clock)
    status, body = await first.post("/api/v1/alerts", {"summary": "restart me", "team": "sre"})
    assert status == 202
    alert_id = body["id"]
    await first.ringing(ALICE)
    await first.alert_where(alert_id, lambda a: a["pages"][0]["status"] == "sent")
    await first.client.close()  # the gateway stops while Alice's phone rings

    clock2 = FakeClock(start=clock.now() + 5)
    second = await _start(aiohttp_client, pg_config_path, clock2)
    await clock2.advance(1)
    assert (await second.phone(ALICE))["calls"] == 0  # step 1 was sent: not again
    alert = await second.alert(alert_id)
    assert len(alert["pages"]) == 1 and alert["escalation"]["next_step"] == 2
    await clock2.advance(14)  # the step's timeout, 20 s after it started
    await second.ringing(BOB)
    await second.post(f"/api/v1/sandbox/phones/{BOB}/answer")
    await second.post(f"/api/v1/sandbox/phones/{BOB}/press", {"digits": "1"})
    await second.alert_where(alert_id, lambda a: a["status"] == "acknowledged")


async def test_a_gateway_that_loses_its_membership_connection_says_so_and_joins_again(
    aiohttp_client: Callable[..., Any], pg_config_path: Path, pg_database: PgDatabase,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await _start(aiohttp_client, pg_config_path, FakeClock())
    status, ready = await gateway.get("/readyz")
    assert status == 200 and ready["checks"]["cluster"] == "ok", ready
    # The server drops the connection that holds the gateway's membership lock (a restart, a network cut).
    row = await _row(pg_database, "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE application_name = 'oncall-gateway-membership') AS t")
    assert row[0] == 1

    async def joined_again() -> bool:
        return "joined again" in caplog.text

    await eventually(joined_again)
    assert "lost the membership connection" in caplog.text
    status, ready = await gateway.get("/readyz")
    assert status == 200 and ready["checks"]["cluster"] == "ok", ready
    member = await _row(pg_database, "SELECT count(*) FROM gateways g JOIN pg_locks l ON l.locktype = 'advisory'"
                                     " AND l.objid = g.lock_key AND l.granted")
    assert member[0] == 1  # registered and holding its lock again
