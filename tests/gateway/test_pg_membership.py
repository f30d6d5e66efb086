"""Gateway membership and the line ledger on a real PostgreSQL, in-process (``gateway/pg_cluster.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from core.enums import Channel, Priority
from gateway.pg_cluster import GATEWAY_LOCKS, PgCluster
from gateway.pg_store import PgStore
from gateway.store import NewAlert, NewPage, Page, StepPlan
from tests.postgres import PgDatabase
from tests.support import eventually


class Peers:
    def __init__(self) -> None:
        self.took: list[tuple[str, list[int], list[Page], list[Page]]] = []
        self.rejoins = 0

    async def alert_closed_elsewhere(self, alert_id: int) -> None:
        return None

    async def line_freed(self, call_id: str, *, placed_here: bool) -> None:
        return None

    async def took_over(self, gateway_id: str, *, alerts: list[int], unsent: list[Page],
                        live_calls: list[Page]) -> None:
        self.took.append((gateway_id, alerts, unsent, live_calls))

    async def resend_unsent(self) -> None:
        return None

    async def rejoined(self) -> None:
        self.rejoins += 1


@pytest.fixture
async def admin(pg_database: PgDatabase) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(pg_database.url, password=pg_database.password)
    try:
        yield conn
    finally:
        await conn.close()


async def _member(db: PgDatabase, gateway_id: str) -> tuple[PgStore, PgCluster, Peers]:
    store = PgStore(db.url, password=db.password, gateway_id=gateway_id, pool_size=3)
    await store.open()
    cluster = PgCluster(store, check_interval_s=0.05, grace_s=0.3)
    peers = Peers()
    await cluster.start(peers)
    return store, cluster, peers


async def _leave(store: PgStore, cluster: PgCluster) -> None:
    await cluster.stop()
    await store.close()


async def _alert(store: PgStore, key: str) -> tuple[int, Page]:
    plan = StepPlan(step=0, repeat=0, pages=[NewPage(engineer="a", number="+15550000001", channel=Channel.CALL)],
                    next_due=1e12)
    alert, _, pages = await store.create_alert(
        NewAlert(dedup_key=key, priority=Priority.LOW, source="api", summary="s", team="ops", policy="page",
                 route="r"), now=0.0, escalate_at=None, note="t", first_step=plan)
    return alert.id, pages[0]


async def _holder(admin: Any, key: int) -> int | None:
    pid: int | None = await admin.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted",
        GATEWAY_LOCKS, key)
    return pid


async def _owners(admin: Any, alert_id: int) -> list[str]:
    rows = await admin.fetch("SELECT owner FROM escalations WHERE alert_id = $1 UNION ALL"
                             " SELECT owner FROM pages WHERE alert_id = $1", alert_id)
    return [row[0] for row in rows]


async def test_a_gateway_whose_connection_drops_joins_again_keeps_its_work_and_can_still_be_taken_over(
    pg_database: PgDatabase, admin: Any,
) -> None:
    d_store, d, d_peers = await _member(pg_database, "D")
    s_store, s, s_peers = await _member(pg_database, "S")
    try:
        alert_id, page = await _alert(d_store, "work-of-d")
        old_key = await admin.fetchval("SELECT lock_key FROM gateways WHERE id = 'D'")
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", await _holder(admin, old_key))

        async def joined_again() -> int | None:
            key: int | None = await admin.fetchval("SELECT lock_key FROM gateways WHERE id = 'D'")
            return key if d_peers.rejoins and key != old_key and await _holder(admin, key or 0) else None

        new_key = await eventually(joined_again, timeout=10)
        await asyncio.sleep(1.0)  # three graces: S would have taken D over by now if it took the blip for death
        assert s_peers.took == [] and await _owners(admin, alert_id) == ["D", "D"]
        assert await _holder(admin, old_key) is None and await _holder(admin, new_key) is not None
    finally:
        await _leave(d_store, d)  # now D really goes
    try:
        await eventually(lambda: asyncio.sleep(0, bool(s_peers.took)), timeout=10)
        [(gone, alerts, unsent, live)] = s_peers.took
        assert (gone, alerts, [p.id for p in unsent], live) == ("D", [alert_id], [page.id], [])
        assert await _owners(admin, alert_id) == ["S", "S"]
    finally:
        await _leave(s_store, s)


async def test_a_line_expires_and_a_dead_gateways_finished_calls_free_theirs(
    pg_database: PgDatabase, admin: Any,
) -> None:
    d_store, d, _ = await _member(pg_database, "D")
    assert d.lines is not None
    _, finished = await _alert(d_store, "finished")
    _, ringing = await _alert(d_store, "ringing")
    for page in (finished, ringing):
        assert await d.lines.take(f"page-{page.id}", "low", capacity=3, reserved=0, rate=100, high_waiting=0,
                                  hold_s=600) == 0
    await d_store.mark_page_sent(ringing.id, now=1.0)
    await d_store.finish_page(finished.id, outcome="no-answer", detail="", now=1.0, note=None)
    await _leave(d_store, d)  # it dies before freeing the finished call's line
    s_store, s, s_peers = await _member(pg_database, "S")
    try:
        await eventually(lambda: asyncio.sleep(0, bool(s_peers.took)), timeout=10)
        rows = await admin.fetch("SELECT call_id, owner FROM line_use ORDER BY call_id")
        assert [tuple(r) for r in rows] == [(f"page-{ringing.id}", "S")]  # the live call's line is S's now
        assert s.lines is not None
        # A line nobody frees ends with its lease.
        assert await s.lines.take("short", "high", capacity=2, reserved=0, rate=100, high_waiting=0,
                                  hold_s=0.2) == 0
        assert await s.lines.take("next", "high", capacity=2, reserved=0, rate=100, high_waiting=0,
                                  hold_s=600) == -1

        async def expired() -> bool:
            return await s.lines.take("next", "high", capacity=2, reserved=0, rate=100,  # type: ignore[union-attr]
                                      high_waiting=0, hold_s=600) == 0

        await eventually(expired, timeout=10)
    finally:
        await _leave(s_store, s)


async def test_low_priority_yields_to_a_high_call_waiting_at_another_gateway(
    pg_database: PgDatabase,
) -> None:
    store, cluster, _ = await _member(pg_database, "A")
    try:
        assert cluster.lines is not None
        lines = cluster.lines
        assert await lines.take("a1", "low", capacity=2, reserved=0, rate=100, high_waiting=0, hold_s=60) == 0
        assert await lines.take("a2", "high", capacity=2, reserved=0, rate=100, high_waiting=0, hold_s=60) == 0
        # Full: gateway B's high call is refused and says so; then a line frees.
        other = PgStore(pg_database.url, password=pg_database.password, gateway_id="B", pool_size=1)
        await other.open()
        try:
            b_lines = PgCluster(other).lines
            assert b_lines is not None
            assert await b_lines.take("b1", "high", capacity=2, reserved=0, rate=100, high_waiting=0,
                                      hold_s=60) == -1
            await lines.free("a1")
            # A's next low call does not take the freed line while B's high call waits for it ...
            assert await lines.take("a3", "low", capacity=2, reserved=0, rate=100, high_waiting=0, hold_s=60) == -1
            # ... which B's high call then takes.
            assert await b_lines.take("b1", "high", capacity=2, reserved=0, rate=100, high_waiting=0,
                                      hold_s=60) == 0
        finally:
            await other.close()
    finally:
        await _leave(store, cluster)
