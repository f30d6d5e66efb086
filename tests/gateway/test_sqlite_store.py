"""The SQLite store's own guarantees."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert


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
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_one_open_alert_per_dedup_key_and_status_only_moves_forward(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    try:
        first, created, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
        again, created_again, _ = await store.create_alert(_new(), now=2.0, escalate_at=2.0, note="t")
        assert created and not created_again and again.id == first.id
        result = await store.change_status(first.id, "resolved", now=3.0, by=None, note="r")
        assert result is not None and result[1] and result[0].resolved_at == 3.0
        result = await store.change_status(first.id, "acknowledged", now=4.0, by="x", note="a")
        assert result is not None and not result[1] and result[0].status == "resolved"
        assert (await store.get_escalation(first.id)).next_due is None  # type: ignore[union-attr]
        reopened, created, _ = await store.create_alert(_new(), now=5.0, escalate_at=5.0, note="t")
        assert created and reopened.id != first.id
        assert [e.kind for e in await store.timeline(first.id)] == ["triggered", "resolved"]
        assert await store.change_status(999, "resolved", now=1.0, by=None, note="") is None
    finally:
        await store.close()


async def test_finish_page_only_once(tmp_path: Path) -> None:
    from gateway.store import NewPage, StepPlan

    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    try:
        alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
        esc = await store.get_escalation(alert.id)
        assert esc is not None
        plan = StepPlan(step=0, repeat=0, pages=[NewPage(engineer="a", number="+1", channel="call")], next_due=21.0)
        pages = await store.start_step(alert.id, expect=esc, plan=plan, now=1.0)
        assert pages is not None and pages[0].status == "due"
        assert await store.call_wanted(pages[0].id)
        # A stale expectation writes nothing.
        assert await store.start_step(alert.id, expect=esc, plan=plan, now=2.0) is None
        assert await store.finish_page(pages[0].id, outcome="busy", detail="", now=2.0, note=None) is not None
        assert await store.finish_page(pages[0].id, outcome="acknowledged", detail="", now=3.0, note=None) is None
        assert (await store.get_page(pages[0].id)).outcome == "busy"  # type: ignore[union-attr]
        assert not await store.call_wanted(pages[0].id)
    finally:
        await store.close()


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


async def test_ignored_duplicates_burn_no_alert_id(tmp_path: Path) -> None:
    # Ids are what the phones read out ("Alert 4"): 3 alerts, 3 duplicates of them, 1 new one is 1..4.
    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    try:
        ids = []
        for key in ("a", "b", "c", "a", "b", "c", "d"):
            alert, _, _ = await store.create_alert(_new(key), now=1.0, escalate_at=None, note="t")
            ids.append(alert.id)
        assert ids == [1, 2, 3, 1, 2, 3, 4]
        # The same holds when duplicates share one group-committed transaction.
        import asyncio

        results = await asyncio.gather(*(
            store.create_alert(_new(k), now=2.0, escalate_at=None, note="t") for k in ("e", "a", "e", "f", "d")
        ))
        assert [a.id for a, _, _ in results] == [5, 1, 5, 6, 4]
    finally:
        await store.close()
