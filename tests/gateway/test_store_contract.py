"""The Store contract, run on both engines: SQLite (a file in tmp_path) and PostgreSQL (a fresh database).

Each test gets a fresh database. What only one engine promises is tested beside it
(test_sqlite_store.py, test_pg_store.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.enums import AlertStatus, Channel
from gateway.notification_rules import NotificationRule
from gateway.pg_store import PgStore
from gateway.sqlite_store import SqliteStore
from gateway.store import (
    Escalation,
    NewAlert,
    NewOverride,
    NewPage,
    NoticeKey,
    StepPlan,
    Store,
    TimelineEntry,
)
from tests.postgres import Postgres, create_database, drop_database


@dataclass(frozen=True, kw_only=True)
class Engine:
    name: str
    make: Callable[[], Store]  # a new store on this test's database


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    if request.param == "sqlite":
        yield Engine(name="sqlite", make=lambda: SqliteStore(tmp_path / "g.db"))
        return
    postgres: Postgres = request.getfixturevalue("postgres")
    server = postgres.server
    name = await create_database(server, template=postgres.template)
    try:
        yield Engine(name="postgres", make=lambda: PgStore(server.database_url(name), password=server.password))
    finally:
        await drop_database(server, name)


@pytest.fixture
async def store(engine: Engine) -> AsyncIterator[Store]:
    opened = engine.make()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _new(key: str = "k", **changes: object) -> NewAlert:
    fields: dict[str, object] = dict(dedup_key=key, priority="low", source="api", summary="s", team="sre",
                                     policy="default", route="r", labels={"a": "b"}, details={"n": 1})
    fields.update(changes)
    return NewAlert(**fields)  # type: ignore[arg-type]


def _plan(step: int = 0, repeat: int = 0, *, next_due: float = 21.0, engineers: tuple[str, ...] = ("alice",),
          notes: tuple[str, ...] = ()) -> StepPlan:
    return StepPlan(
        step=step, repeat=repeat, next_due=next_due,
        pages=[NewPage(engineer=e, number=f"+1555000000{i}", channel="call") for i, e in enumerate(engineers)],
        notes=[TimelineEntry(alert_id=0, at=1.0, kind="step", message=m) for m in notes],
    )


async def _escalation(store: Store, alert_id: int) -> Escalation:
    esc = await store.get_escalation(alert_id)
    assert esc is not None
    return esc


# ----------------------------------------------------------------- alerts


async def test_create_alert_writes_alert_escalation_and_timeline(store: Store) -> None:
    alert, created, pages = await store.create_alert(_new(), now=1.5, escalate_at=3.25, note="triggered via api")
    assert created and pages == []
    assert alert.id == 1 and alert.status == "triggered" and alert.is_open
    assert (alert.labels, alert.details, alert.created_at, alert.updated_at) == ({"a": "b"}, {"n": 1}, 1.5, 1.5)
    assert alert.acknowledged_by is None and alert.acknowledged_at is None and alert.resolved_at is None
    assert await store.get_alert(alert.id) == alert
    assert await store.find_open_alert("k") == alert
    assert await store.get_escalation(alert.id) == Escalation(alert_id=alert.id, step=0, repeat=0, next_due=3.25)
    assert await store.timeline(alert.id) == [
        TimelineEntry(alert_id=alert.id, at=1.5, kind="triggered", message="triggered via api")
    ]
    assert await store.get_alert(999) is None and await store.find_open_alert("other") is None


async def test_create_alert_with_its_first_step_writes_the_pages_in_the_same_transaction(store: Store) -> None:
    plan = _plan(step=0, repeat=0, next_due=21.0, engineers=("alice", "bob"), notes=("calling Alice", "and Bob"))
    alert, created, pages = await store.create_alert(_new(), now=1.0, escalate_at=999.0, note="t", first_step=plan)
    assert created
    assert [(p.engineer, p.number, p.channel, p.status, p.step, p.repeat, p.outcome, p.detail) for p in pages] == [
        ("alice", "+15550000000", "call", "due", 0, 0, None, ""),
        ("bob", "+15550000001", "call", "due", 0, 0, None, ""),
    ]
    assert pages[0].id < pages[1].id and all(p.alert_id == alert.id for p in pages)
    assert await store.pages_for(alert.id) == pages
    # The escalation points at the step after it; escalate_at is ignored.
    assert await store.get_escalation(alert.id) == Escalation(alert_id=alert.id, step=1, repeat=0, next_due=21.0)
    assert [(e.alert_id, e.kind, e.message) for e in await store.timeline(alert.id)] == [
        (alert.id, "triggered", "t"), (alert.id, "step", "calling Alice"), (alert.id, "step", "and Bob"),
    ]


async def test_one_open_alert_per_dedup_key_and_a_duplicate_changes_nothing(store: Store) -> None:
    first, created, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
    again, created_again, pages = await store.create_alert(
        _new(summary="other", priority="high"), now=2.0, escalate_at=2.0, note="t", first_step=_plan()
    )
    assert created and not created_again and pages == [] and again == first
    assert await store.pages_for(first.id) == [] and len(await store.timeline(first.id)) == 1
    # An acknowledged alert is still open: still a duplicate.
    await store.change_status(first.id, "acknowledged", now=3.0, by="alice", note="a")
    assert not (await store.create_alert(_new(), now=4.0, escalate_at=None, note="t"))[1]
    # Once resolved, the key opens a new alert.
    await store.change_status(first.id, "resolved", now=5.0, by=None, note="r")
    reopened, created, _ = await store.create_alert(_new(), now=6.0, escalate_at=6.0, note="t")
    assert created and reopened.id == first.id + 1
    assert await store.find_open_alert("k") == reopened


async def test_ignored_duplicates_burn_no_alert_id(store: Store) -> None:
    # Ids are what the phones read out ("Alert 4"): 3 alerts, 3 duplicates of them, 1 new one is 1..4.
    ids = []
    for key in ("a", "b", "c", "a", "b", "c", "d"):
        alert, _, _ = await store.create_alert(_new(key), now=1.0, escalate_at=None, note="t")
        ids.append(alert.id)
    assert ids == [1, 2, 3, 1, 2, 3, 4]
    results = await asyncio.gather(*(
        store.create_alert(_new(k), now=2.0, escalate_at=None, note="t") for k in ("e", "a", "e", "f", "d")
    ))
    assert sorted({a.id for a, created, _ in results if created}) == [5, 6]
    assert [a.id for a, _, _ in results][1] == 1 and [a.id for a, _, _ in results][4] == 4


async def test_concurrent_creates_of_one_key_make_one_alert_and_consecutive_ids(store: Store) -> None:
    results = await asyncio.gather(*(
        store.create_alert(_new(f"k{i % 10}"), now=float(i), escalate_at=None, note="t", first_step=_plan())
        for i in range(60)
    ))
    created = [(alert, pages) for alert, was_created, pages in results if was_created]
    assert sorted(alert.id for alert, _ in created) == list(range(1, 11))
    assert all(len(pages) == 1 for _, pages in created)
    for i, (alert, was_created, pages) in enumerate(results):
        assert alert.dedup_key == f"k{i % 10}"
        assert was_created or pages == []
    assert len(await store.list_alerts(limit=100)) == 10
    assert sum([len(await store.pages_for(a.id)) for a, _ in created]) == 10


async def test_list_alerts_newest_first_by_status_and_before_an_id(store: Store) -> None:
    for key in ("a", "b", "c", "d"):
        await store.create_alert(_new(key), now=1.0, escalate_at=None, note="t")
    await store.change_status(2, "resolved", now=2.0, by=None, note="r")
    assert [a.id for a in await store.list_alerts()] == [4, 3, 2, 1]
    assert [a.id for a in await store.list_alerts(limit=2)] == [4, 3]
    assert [a.id for a in await store.list_alerts(before_id=3)] == [2, 1]
    assert [a.id for a in await store.list_alerts(status="triggered")] == [4, 3, 1]
    assert [a.id for a in await store.list_alerts(status="triggered", before_id=4, limit=1)] == [3]
    assert [a.id for a in await store.list_alerts(status="resolved")] == [2]
    assert await store.list_alerts(status="acknowledged") == []


async def test_list_alerts_filters_by_source_team_and_priority_before_the_limit(store: Store) -> None:
    await store.create_alert(_new("old", source="hotline", team="dba", priority="high"), now=1.0,
                             escalate_at=None, note="t")
    for n in range(5):
        await store.create_alert(_new(f"n{n}"), now=2.0, escalate_at=None, note="t")
    assert [a.id for a in await store.list_alerts(source="hotline", limit=2)] == [1]
    assert [a.id for a in await store.list_alerts(team="dba", limit=2)] == [1]
    assert [a.id for a in await store.list_alerts(priority="high", limit=2)] == [1]
    assert [a.id for a in await store.list_alerts(team="sre", priority="low", limit=2)] == [6, 5]
    assert await store.list_alerts(source="hotline", status="resolved") == []
    assert await store.list_alerts(team="dba", priority="low") == []


async def test_status_only_moves_forward_and_stops_the_escalation(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=5.0, note="t")
    result = await store.change_status(alert.id, "acknowledged", now=2.0, by="alice", note="acknowledged by Alice")
    assert result is not None
    acked, changed = result
    assert changed and (acked.status, acked.acknowledged_by, acked.acknowledged_at, acked.updated_at) == (
        "acknowledged", "alice", 2.0, 2.0)
    assert await store.get_alert(alert.id) == acked
    assert (await _escalation(store, alert.id)).next_due is None
    result = await store.change_status(alert.id, "acknowledged", now=3.0, by="bob", note="again")
    assert result == (acked, False)
    result = await store.change_status(alert.id, "resolved", now=4.0, by=None, note="resolved")
    assert result is not None and result[1] and result[0].resolved_at == 4.0 and not result[0].is_open
    assert result[0].acknowledged_by == "alice"
    result = await store.change_status(alert.id, "acknowledged", now=5.0, by="x", note="too late")
    assert result is not None and not result[1] and result[0].status == "resolved"
    assert [(e.kind, e.message, e.data) for e in await store.timeline(alert.id)] == [
        ("triggered", "t", {}), ("acknowledged", "acknowledged by Alice", {"by": "alice"}),
        ("resolved", "resolved", {}),
    ]
    assert await store.change_status(999, "resolved", now=1.0, by=None, note="") is None


async def test_set_priority_logs_only_a_change_and_only_on_an_open_alert(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
    raised = await store.set_priority(alert.id, "high", now=2.0, note="caller chose emergency")
    assert raised is not None and raised.priority == "high" and raised.updated_at == 2.0
    same = await store.set_priority(alert.id, "high", now=3.0, note="again")
    assert same == raised
    assert [e.kind for e in await store.timeline(alert.id)] == ["triggered", "priority"]
    await store.change_status(alert.id, "resolved", now=4.0, by=None, note="r")
    assert await store.set_priority(alert.id, "low", now=5.0, note="n") is None
    assert (await store.get_alert(alert.id)).priority == "high"  # type: ignore[union-attr]
    assert await store.set_priority(999, "high", now=1.0, note="n") is None


# ------------------------------------------------------------- escalation


async def test_begin_escalation_starts_only_a_not_yet_started_escalation(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
    assert await store.begin_escalation(alert.id, priority="high", now=2.0, note="caller waiting")
    assert await store.get_escalation(alert.id) == Escalation(alert_id=alert.id, step=0, repeat=0, next_due=2.0)
    assert (await store.get_alert(alert.id)).priority == "high"  # type: ignore[union-attr]
    assert [e.kind for e in await store.timeline(alert.id)] == ["triggered", "waiting"]
    assert not await store.begin_escalation(alert.id, priority="low", now=3.0, note="again")  # already started
    # Not when pages were written, nor when the alert is no longer triggered.
    paged, _, _ = await store.create_alert(_new("p"), now=1.0, escalate_at=None, note="t")
    await store.add_pages(paged.id, [NewPage(engineer=None, number="+15550000009", channel="sms")], notes=[],
                          now=1.0)
    assert not await store.begin_escalation(paged.id, priority="high", now=2.0, note="n")
    acked, _, _ = await store.create_alert(_new("a"), now=1.0, escalate_at=None, note="t")
    await store.change_status(acked.id, "acknowledged", now=1.5, by=None, note="a")
    assert not await store.begin_escalation(acked.id, priority="high", now=2.0, note="n")
    assert not await store.begin_escalation(999, priority="high", now=2.0, note="n")
    assert [e.kind for e in await store.timeline(paged.id)] == ["triggered"]


async def test_due_escalations_and_next_due(store: Store) -> None:
    assert await store.next_due() is None and await store.due_escalations(100.0) == []
    for key, due in (("a", 30.0), ("b", 10.0), ("c", None), ("d", 10.0), ("e", 50.1)):
        await store.create_alert(_new(key), now=1.0, escalate_at=due, note="t")
    assert await store.next_due() == 10.0
    assert [(e.alert_id, e.next_due) for e in await store.due_escalations(30.0)] == [(2, 10.0), (4, 10.0), (1, 30.0)]
    assert await store.due_escalations(9.99) == []
    assert [e.alert_id for e in await store.due_escalations(1e9)] == [2, 4, 1, 5]


async def test_reschedule_only_as_expected_and_restart(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t",
                                           first_step=_plan(next_due=0.1 + 0.2))
    esc = await _escalation(store, alert.id)
    assert esc.next_due == 0.1 + 0.2  # floats read back exactly: the expectation below compares them
    stale = Escalation(alert_id=alert.id, step=esc.step, repeat=esc.repeat, next_due=0.3)
    assert not await store.reschedule(alert.id, expect=stale, next_due=9.0, note="n", now=2.0)
    assert await store.reschedule(alert.id, expect=esc, next_due=40.0, note="escalating at once", now=2.0)
    moved = await _escalation(store, alert.id)
    assert moved == Escalation(alert_id=alert.id, step=1, repeat=0, next_due=40.0)
    assert not await store.reschedule(alert.id, expect=esc, next_due=50.0, note=None, now=3.0)  # esc is stale now
    assert await store.reschedule(alert.id, expect=moved, next_due=60.0, note=None, now=3.0, restart=True)
    assert await store.get_escalation(alert.id) == Escalation(alert_id=alert.id, step=0, repeat=0, next_due=60.0)
    assert [(e.kind, e.message) for e in await store.timeline(alert.id)] == [
        ("triggered", "t"), ("escalation", "escalating at once")]
    restarted = await _escalation(store, alert.id)
    await store.change_status(alert.id, "acknowledged", now=4.0, by=None, note="a")
    assert not await store.reschedule(alert.id, expect=replace_due(restarted, None), next_due=1.0, note=None, now=5.0)


def replace_due(esc: Escalation, next_due: float | None) -> Escalation:
    return Escalation(alert_id=esc.alert_id, step=esc.step, repeat=esc.repeat, next_due=next_due)


async def test_start_step_writes_pages_moves_on_and_refuses_a_stale_expectation(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
    esc = await _escalation(store, alert.id)
    plan = _plan(step=0, repeat=0, next_due=21.0, engineers=("alice",), notes=("calling Alice",))
    pages = await store.start_step(alert.id, expect=esc, plan=plan, now=1.0)
    assert pages is not None and [(p.engineer, p.status, p.step, p.repeat) for p in pages] == [("alice", "due", 0, 0)]
    assert await store.get_escalation(alert.id) == Escalation(alert_id=alert.id, step=1, repeat=0, next_due=21.0)
    assert await store.timeline(alert.id) == [
        TimelineEntry(alert_id=alert.id, at=1.0, kind="triggered", message="t"),
        TimelineEntry(alert_id=alert.id, at=1.0, kind="step", message="calling Alice"),
    ]
    # A stale expectation writes nothing.
    assert await store.start_step(alert.id, expect=esc, plan=plan, now=2.0) is None
    assert len(await store.pages_for(alert.id)) == 1
    # Nor does a step of an alert that is no longer triggered.
    moved = await _escalation(store, alert.id)
    await store.change_status(alert.id, "acknowledged", now=3.0, by=None, note="a")
    assert await store.start_step(alert.id, expect=replace_due(moved, None), plan=_plan(step=1), now=3.0) is None
    assert len(await store.pages_for(alert.id)) == 1


async def test_start_step_of_one_expectation_runs_once_however_many_try(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
    esc = await _escalation(store, alert.id)
    results = await asyncio.gather(*(
        store.start_step(alert.id, expect=esc, plan=_plan(engineers=("alice", "bob")), now=1.0) for _ in range(20)
    ))
    assert sum(1 for r in results if r is not None) == 1
    assert len(await store.pages_for(alert.id)) == 2


async def test_add_pages_outside_any_step(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
    note = TimelineEntry(alert_id=alert.id, at=2.0, kind="call", message="calling +1555***0009", data={"x": [1, 2]})
    pages = await store.add_pages(alert.id, [NewPage(engineer=None, number="+15550000009", channel="call"),
                                             NewPage(engineer="bob", number="+15550000002", channel="sms")],
                                  notes=[note], now=2.0)
    assert [(p.engineer, p.channel, p.step, p.repeat, p.status, p.created_at) for p in pages] == [
        (None, "call", None, None, "due", 2.0), ("bob", "sms", None, None, "due", 2.0)]
    assert await store.pages_for(alert.id) == pages
    assert (await store.timeline(alert.id))[-1] == note
    assert await store.add_pages(alert.id, [], notes=[], now=3.0) == []


# ------------------------------------------------------------------ pages


async def test_the_outbox_statuses_due_sent_done(store: Store) -> None:
    alert, _, pages = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t",
                                               first_step=_plan(engineers=("alice", "bob")))
    first, second = pages
    assert await store.get_page(first.id) == first and await store.get_page(999) is None
    assert await store.unsent_pages() == pages
    assert await store.call_wanted(first.id) and not await store.call_wanted(999)
    await store.mark_page_sent(first.id, now=2.0)
    sent = await store.get_page(first.id)
    assert sent is not None and (sent.status, sent.updated_at) == ("sent", 2.0)
    assert await store.unsent_pages() == [second]
    assert await store.call_wanted(first.id)
    # Finished once: the first outcome stays.
    note = TimelineEntry(alert_id=alert.id, at=3.0, kind="page", message="Alice: busy")
    done = await store.finish_page(first.id, outcome="busy", detail="486 Busy Here", now=3.0, note=note)
    assert done is not None and (done.status, done.outcome, done.detail, done.updated_at) == (
        "done", "busy", "486 Busy Here", 3.0)
    assert await store.get_page(first.id) == done
    assert await store.finish_page(first.id, outcome="acknowledged", detail="", now=4.0, note=note) is None
    assert await store.finish_page(999, outcome="busy", detail="", now=4.0, note=None) is None
    assert [e.message for e in await store.timeline(alert.id)].count("Alice: busy") == 1
    assert not await store.call_wanted(first.id)
    # A done page is never marked sent again; a due page of a finished alert is no longer unsent work.
    await store.mark_page_sent(first.id, now=5.0)
    assert (await store.get_page(first.id)).status == "done"  # type: ignore[union-attr]
    await store.change_status(alert.id, "acknowledged", now=6.0, by="bob", note="a")
    assert await store.unsent_pages() == [] and not await store.call_wanted(second.id)
    assert await store.finish_page(second.id, outcome="cancelled", detail="", now=7.0, note=None) is not None


async def test_latest_alert_paged_to_and_was_paged(store: Store) -> None:
    one, _, _ = await store.create_alert(_new("one"), now=1.0, escalate_at=None, note="t",
                                         first_step=_plan(engineers=("alice",)))
    two, _, _ = await store.create_alert(_new("two"), now=1.0, escalate_at=None, note="t",
                                         first_step=_plan(engineers=("alice", "bob")))
    await store.create_alert(_new("three"), now=1.0, escalate_at=None, note="t", first_step=_plan(engineers=("bob",)))
    assert await store.latest_alert_paged_to("alice", statuses=("triggered",)) == two
    await store.change_status(two.id, "acknowledged", now=2.0, by="alice", note="a")
    assert await store.latest_alert_paged_to("alice", statuses=("triggered",)) == one
    latest = await store.latest_alert_paged_to("alice", statuses=("triggered", "acknowledged"))
    assert latest is not None and latest.id == two.id
    assert await store.latest_alert_paged_to("carol", statuses=("triggered",)) is None
    assert await store.was_paged(one.id, "alice") and not await store.was_paged(one.id, "bob")
    assert await store.was_paged(two.id, "bob") and not await store.was_paged(999, "alice")


# --------------------------------------------------------------- timeline


async def test_timeline_keeps_order_and_data_and_refuses_an_unknown_alert(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
    for i in range(3):
        await store.add_timeline(TimelineEntry(alert_id=alert.id, at=10.0 - i, kind="note", message=f"n{i}",
                                               data={"i": i, "nested": {"list": [1.5, None, "x"]}}))
    entries = await store.timeline(alert.id)
    assert [(e.at, e.message, e.data["i"]) for e in entries[1:]] == [(10.0, "n0", 0), (9.0, "n1", 1), (8.0, "n2", 2)]
    assert entries[1].data == {"i": 0, "nested": {"list": [1.5, None, "x"]}}
    with pytest.raises(Exception):  # noqa: B017 (each engine raises its own integrity error)
        await store.add_timeline(TimelineEntry(alert_id=999, at=1.0, kind="note", message="nobody's"))
    assert await store.timeline(999) == []
    # A failed write leaves the store usable.
    await store.add_timeline(TimelineEntry(alert_id=alert.id, at=1.0, kind="note", message="still here"))
    assert (await store.timeline(alert.id))[-1].message == "still here"



async def test_pages_and_timelines_of_many_alerts_in_one_call(store: Store) -> None:
    one, _, _ = await store.create_alert(_new("one"), now=1.0, escalate_at=21.0, note="t1", first_step=_plan())
    two, _, _ = await store.create_alert(_new("two"), now=2.0, escalate_at=21.0, note="t2",
                                         first_step=_plan(engineers=("alice", "bob")))
    three, _, _ = await store.create_alert(_new("three"), now=3.0, escalate_at=21.0, note="t3", first_step=_plan())
    await store.add_timeline(TimelineEntry(alert_id=one.id, at=4.0, kind="note", message="later"))
    pages = await store.pages_for_alerts([one.id, two.id])
    assert [(p.alert_id, p.engineer) for p in pages] == [(one.id, "alice"), (two.id, "alice"), (two.id, "bob")]
    assert [p.id for p in pages] == sorted(p.id for p in pages)
    entries = await store.timelines_for_alerts([one.id, three.id])
    assert [(e.alert_id, e.message) for e in entries] == [(one.id, "t1"), (three.id, "t3"), (one.id, "later")]
    assert await store.pages_for_alerts([]) == [] and await store.timelines_for_alerts([999]) == []

# ------------------------------------------------------------- any text


async def test_any_text_a_client_can_send_round_trips(store: Store) -> None:
    # NUL arrives as JSON "\u0000"; PostgreSQL text cannot hold it, so that store escapes it (and its escape).
    odd = "a\x00b \ue000 \ue0000 \ue000\ue000 \\0 ünï 😀 ' \" ; --"
    alert, created, pages = await store.create_alert(
        _new(odd, source=odd, summary=odd, labels={odd: odd}, details={"d": odd}), now=1.0, escalate_at=None,
        note=odd, first_step=StepPlan(step=0, repeat=0, next_due=2.0, notes=[],
                                      pages=[NewPage(engineer=odd, number="+15550000001", channel="sms")]),
    )
    assert created and (alert.dedup_key, alert.summary, alert.source) == (odd, odd, odd)
    assert await store.get_alert(alert.id) == alert and await store.find_open_alert(odd) == alert
    assert await store.find_open_alert("a\x00b") is None and await store.find_open_alert("a") is None
    assert not (await store.create_alert(_new(odd), now=2.0, escalate_at=None, note="t"))[1]
    assert (await store.timeline(alert.id))[0].message == odd
    assert await store.was_paged(alert.id, odd) and not await store.was_paged(alert.id, "a")
    assert await store.latest_alert_paged_to(odd, statuses=("triggered",)) == alert
    finished = await store.finish_page(pages[0].id, outcome="failed", detail=odd, now=3.0, note=None)
    assert finished is not None and finished.detail == odd and finished.engineer == odd
    result = await store.change_status(alert.id, "acknowledged", now=4.0, by=odd, note=odd)
    assert result is not None and result[0].acknowledged_by == odd
    assert await store.get_alert(alert.id) == result[0]
    assert (await store.timeline(alert.id))[-1].data == {"by": odd}


# ----------------------------------------------------------- durability


async def test_what_a_method_returned_is_committed_and_survives_a_reopen(engine: Engine, store: Store) -> None:
    alert, _, pages = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t", first_step=_plan())
    await store.mark_page_sent(pages[0].id, now=2.0)
    await store.finish_page(pages[0].id, outcome="no_answer", detail="", now=3.0, note=None)
    await store.change_status(alert.id, "acknowledged", now=4.0, by="alice", note="a")
    other = engine.make()  # a second store on the same database, while the first is still open
    await other.open()
    try:
        assert await other.get_alert(alert.id) == await store.get_alert(alert.id)
        assert await other.pages_for(alert.id) == await store.pages_for(alert.id)
        assert await other.timeline(alert.id) == await store.timeline(alert.id)
        await other.ping()
    finally:
        await other.close()
    await store.close()
    reopened = engine.make()
    await reopened.open()  # migrations already applied: nothing to do, nothing lost
    try:
        assert (await reopened.get_alert(alert.id)).status == "acknowledged"  # type: ignore[union-attr]
        again, created, _ = await reopened.create_alert(_new("next"), now=5.0, escalate_at=None, note="t")
        assert created and again.id == alert.id + 1
    finally:
        await reopened.close()
    await store.open()  # the fixture closes it


# ----------------------------------------------------------- call sessions


async def test_a_call_session_is_saved_replaced_read_by_another_store_and_deleted(engine: Engine, store: Store) -> None:
    assert await store.load_call_session("page-1") is None
    await store.save_call_session("page-1", {"flow": {"kind": "alert_call"}, "extra": {"sid": "CA1"}})
    await store.save_call_session("page-1", {"flow": {"kind": "alert_call"}, "extra": {"sid": "CA2"}, "odd": "\x00é"})
    other = engine.make()  # another gateway on the same database serves the call's next webhook
    await other.open()
    try:
        assert await other.load_call_session("page-1") == {"flow": {"kind": "alert_call"}, "extra": {"sid": "CA2"},
                                                           "odd": "\x00é"}
        await other.delete_call_session("page-1")
        await other.delete_call_session("page-1")  # deleting what is gone is no error
    finally:
        await other.close()
    assert await store.load_call_session("page-1") is None


def _override(team: str = "sre", engineer: str = "bob", start: float = 100.0) -> NewOverride:
    return NewOverride(team=team, role="primary", engineer=engineer, start=start, end=start + 3600,
                       created_by="tests")


async def test_overrides_are_added_listed_in_creation_order_and_deleted_once(engine: Engine, store: Store) -> None:
    first = await store.add_override(_override(), now=10.0)
    second = await store.add_override(_override(engineer="carol", start=50.0), now=11.0)
    other = await store.add_override(_override(team="dba", engineer="dave"), now=12.0)
    assert first.id < second.id < other.id
    assert (first.team, first.role, first.engineer, first.start, first.end, first.created_by, first.created_at) == (
        "sre", "primary", "bob", 100.0, 3700.0, "tests", 10.0)
    assert [o.id for o in await store.list_overrides("sre")] == [first.id, second.id]  # creation order
    assert [o.id for o in await store.list_overrides()] == [first.id, second.id, other.id]
    assert await store.delete_override(first.id, team="dba", by="ops", now=20.0) is None  # another team's id
    deleted = await store.delete_override(first.id, team="sre", by="ops", now=20.0)
    assert deleted is not None and (deleted.deleted_at, deleted.deleted_by) == (20.0, "ops")
    assert await store.delete_override(first.id, team="sre", by="ops", now=21.0) is None  # once
    assert await store.delete_override(999, team="sre", by="ops", now=21.0) is None
    reopened = engine.make()
    await reopened.open()
    try:
        assert await reopened.list_overrides("sre") == [second]
    finally:
        await reopened.close()


async def test_calendar_feeds_are_found_by_their_secret_hash_until_revoked(store: Store) -> None:
    team_feed = await store.add_calendar_feed(team="sre", engineer=None, secret_sha256="a" * 64,
                                              created_by="tests", now=5.0)
    person_feed = await store.add_calendar_feed(team=None, engineer="alice", secret_sha256="b" * 64,
                                                created_by="tests", now=6.0)
    assert (team_feed.team, team_feed.engineer, person_feed.team, person_feed.engineer) == (
        "sre", None, None, "alice")
    assert await store.find_calendar_feed("a" * 64) == team_feed
    assert await store.find_calendar_feed("c" * 64) is None
    assert await store.list_calendar_feeds() == [team_feed, person_feed]
    revoked = await store.revoke_calendar_feed(team_feed.id, by="boss", now=7.0)
    assert revoked is not None and (revoked.revoked_at, revoked.revoked_by) == (7.0, "boss")
    assert await store.revoke_calendar_feed(team_feed.id, by="boss", now=8.0) is None
    assert await store.find_calendar_feed("a" * 64) is None
    assert await store.list_calendar_feeds() == [person_feed]


async def test_maintenance_windows_are_added_listed_and_ended_early_once(engine: Engine, store: Store) -> None:
    from gateway.store import NewMaintenance

    new = NewMaintenance(matchers=('service="db"', "env=~\"prod|staging\""), start=10.0, end=100.0,
                         action="suppress", comment="upgrade \x00 nul", created_by="ops")
    added = await store.add_maintenance(new, now=5.0)
    other = await store.add_maintenance(NewMaintenance(matchers=("a=b",), start=0.0, end=50.0,
                                                       action="low_priority", comment="", created_by="ops"), now=6.0)
    assert (added.matchers, added.comment, added.created_at) == (new.matchers, new.comment, 5.0)
    assert await store.list_maintenance() == [added, other]
    assert await store.end_maintenance(other.id, by="boss", now=60.0) is None  # over already
    ended = await store.end_maintenance(added.id, by="boss", now=20.0)
    assert ended is not None and (ended.ended_at, ended.ended_by) == (20.0, "boss")
    assert await store.end_maintenance(added.id, by="boss", now=21.0) is None  # once
    assert await store.end_maintenance(999, by="boss", now=21.0) is None
    reopened = engine.make()
    await reopened.open()
    try:
        assert await reopened.list_maintenance() == [ended, other]
    finally:
        await reopened.close()


_HANDOFF = NoticeKey(kind="handoff", team="sre", role="primary", moment=1_767_862_800.0, engineer="bob",
                     channel="sms")


async def test_a_notice_is_claimed_once_and_never_again_once_finished(engine: Engine, store: Store) -> None:
    claimed = await store.claim_notice(_HANDOFF, now=100.0, lease_s=60.0)
    assert claimed is not None and (claimed.claimed_at, claimed.claimed_until, claimed.outcome) == (100.0, 160.0, None)
    assert (claimed.kind, claimed.team, claimed.role, claimed.moment, claimed.engineer, claimed.channel) == (
        "handoff", "sre", "primary", 1_767_862_800.0, "bob", "sms")
    assert await store.claim_notice(_HANDOFF, now=159.0, lease_s=60.0) is None  # held by the first sender
    assert await store.find_notice(_HANDOFF) == claimed
    assert await store.find_notice(NoticeKey(**{**vars(_HANDOFF), "channel": "email"})) is None
    other_role = await store.claim_notice(NoticeKey(**{**vars(_HANDOFF), "role": "secondary"}), now=101.0, lease_s=60)
    assert other_role is not None and other_role.id != claimed.id  # each part of the key counts
    await store.finish_notice(claimed.id, outcome="sent", detail="", now=120.0)
    found = await store.find_notice(_HANDOFF)
    assert found is not None and (found.finished_at, found.outcome, found.detail) == (120.0, "sent", "")
    reopened = engine.make()  # a restart: the row is there, the notice is not sent again
    await reopened.open()
    try:
        assert await reopened.claim_notice(_HANDOFF, now=500.0, lease_s=60.0) is None
    finally:
        await reopened.close()


async def test_a_held_alert_is_deduplicated_and_released_once_and_only_while_triggered(store: Store) -> None:
    from core.enums import AlertStatus
    from gateway.store import HoldWindow

    windows = (HoldWindow(key="config:db", name="db", until=100.0), HoldWindow(key="api:3", name="m 3", until=90.0))
    held, created = await store.create_held_alert(_new("held"), now=10.0, note="held by db", windows=windows)
    assert created
    again, created_again = await store.create_held_alert(_new("held"), now=11.0, note="again", windows=windows)
    assert (again.id, created_again) == (held.id, False)
    closed, _ = await store.create_held_alert(_new("closed"), now=12.0, note="held", windows=windows[:1])
    assert [(h.alert_id, h.windows, h.held_at) for h in await store.list_holds()] == [
        (held.id, windows, 10.0), (closed.id, windows[:1], 12.0)]
    esc = await store.get_escalation(held.id)
    assert esc is not None and esc.next_due is None and await store.next_due() is None  # not paged
    assert await store.pages_for(held.id) == []
    await store.change_status(closed.id, AlertStatus.RESOLVED, now=20.0, by="x", note="resolved")

    assert await store.release_hold(held.id, now=100.0, note="maintenance over")
    assert not await store.release_hold(held.id, now=100.0, note="maintenance over")  # once
    assert not await store.release_hold(closed.id, now=100.0, note="maintenance over")  # resolved: quiet
    assert await store.list_holds() == []
    esc = await store.get_escalation(held.id)
    assert esc is not None and (esc.step, esc.next_due) == (0, 100.0)
    assert [e.alert_id for e in await store.due_escalations(100.0)] == [held.id]
    assert [t.message for t in await store.timeline(held.id) if t.kind == "maintenance"] == ["maintenance over"]
    assert not [t for t in await store.timeline(closed.id) if t.kind == "maintenance"]


async def test_heartbeat_check_ins_keep_the_latest(store: Store) -> None:
    assert await store.heartbeats_seen() == {}
    await store.heartbeat_seen("backup", now=10.0)
    await store.heartbeat_seen("backup", now=30.0)
    await store.heartbeat_seen("backup", now=20.0)  # a late writer does not move it back
    await store.heartbeat_seen("sync", now=5.0)
    assert await store.heartbeats_seen() == {"backup": 30.0, "sync": 5.0}


# ------------------------------------------------- notification rules


def _later_plan(*, next_due: float = 21.0) -> StepPlan:
    """A step by Alice's rules: a text now, a call at 11.0."""
    return StepPlan(step=0, repeat=0, next_due=next_due, pages=[
        NewPage(engineer="alice", number="+15550000001", channel="sms"),
        NewPage(engineer="alice", number="+15550000001", channel="call", due_at=11.0),
    ])


@pytest.mark.parametrize("fast_path", [True, False])
async def test_a_later_page_waits_in_the_store_until_released_once(store: Store, fast_path: bool) -> None:
    if fast_path:  # written with the alert (create_alert's first step)
        alert, _, pages = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t",
                                                   first_step=_later_plan())
    else:  # written by a later step
        alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=1.0, note="t")
        written = await store.start_step(alert.id, expect=await _escalation(store, alert.id), plan=_later_plan(),
                                         now=1.0)
        assert written is not None
        pages = written
    assert [(p.channel, p.status, p.due_at) for p in pages] == [("sms", "due", None), ("call", "due", 11.0)]
    assert [p.due_at for p in await store.pages_for(alert.id)] == [None, 11.0]
    # Not unsent (a restart must not send it early), but the next thing due.
    assert [p.id for p in await store.unsent_pages()] == [pages[0].id]
    assert await store.next_page_due() == 11.0
    assert await store.later_pages_due(10.9) == []
    assert [(p.id, p.due_at) for p in await store.later_pages_due(11.0)] == [(pages[1].id, 11.0)]
    released = await store.release_page(pages[1].id)
    assert released is not None and (released.id, released.due_at, released.status) == (pages[1].id, None, "due")
    assert await store.later_pages_due(50.0) == []  # once
    assert await store.next_page_due() is None
    # Released again (a retry after the answer was lost): the same page, not nothing.
    again = await store.release_page(pages[1].id)
    assert again is not None and (again.id, again.due_at) == (pages[1].id, None)
    # From now on a plain unsent page: a crash before it went out sends it on start.
    assert [p.id for p in await store.unsent_pages()] == [pages[0].id, pages[1].id]


async def test_a_closed_alerts_later_pages_are_neither_due_nor_released(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t", first_step=_later_plan())
    await store.change_status(alert.id, AlertStatus.ACKNOWLEDGED, now=2.0, by="alice", note="ack")
    assert await store.next_page_due() is None
    assert await store.later_pages_due(99.0) == []


async def test_a_finished_later_page_is_not_released(store: Store) -> None:
    _, _, pages = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t", first_step=_later_plan())
    await store.finish_page(pages[1].id, outcome="canceled", detail="step over", now=12.0, note=None)
    assert await store.release_page(pages[1].id) is None
    assert await store.later_pages_due(99.0) == [] and await store.next_page_due() is None


async def test_notification_rule_changes_are_all_kept_and_the_latest_is_in_force(store: Store) -> None:
    sms = (NotificationRule(via=Channel.SMS, after_s=0), NotificationRule(via=Channel.CALL, after_s=60))
    first = await store.change_notification_rules("alice", sms, by="tok", now=5.0)
    assert (first.engineer, first.rules, first.changed_by, first.changed_at) == ("alice", sms, "tok", 5.0)
    await store.change_notification_rules("bob", sms[1:], by="tok", now=6.0)
    assert [(c.engineer, c.rules) for c in await store.notification_rule_sets()] == [("alice", sms), ("bob", sms[1:])]
    back = await store.change_notification_rules("alice", None, by="admin", now=7.0)
    assert back.rules is None and back.id > first.id
    assert [c.engineer for c in await store.notification_rule_sets()] == ["bob"]
    assert await store.notification_rule_sets("alice") == []
    assert [c.rules for c in await store.notification_rule_sets("bob")] == [sms[1:]]


async def test_a_claim_never_finished_is_taken_again_after_its_lease(store: Store) -> None:
    first = await store.claim_notice(_HANDOFF, now=100.0, lease_s=60.0)  # its gateway dies while sending
    assert first is not None
    again = await store.claim_notice(_HANDOFF, now=160.0, lease_s=60.0)
    assert again is not None and (again.id, again.claimed_until) == (first.id, 220.0)
    await store.finish_notice(again.id, outcome="failed", detail="SMS not sent: no route", now=161.0)
    assert await store.claim_notice(_HANDOFF, now=1000.0, lease_s=60.0) is None  # a failed one stays failed


async def test_two_senders_claiming_at_once_get_one_notice(store: Store) -> None:
    results = await asyncio.gather(*(store.claim_notice(_HANDOFF, now=100.0, lease_s=60.0) for _ in range(8)))
    assert len([result for result in results if result is not None]) == 1


# ------------------------------------------------------- email, chat and action links


async def test_email_and_chat_pages_are_pages_like_the_others(store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
    pages = await store.add_pages(alert.id, [
        NewPage(engineer="alice", number="alice@example.com", channel=Channel.EMAIL),
        NewPage(engineer=None, number="ops-slack", channel=Channel.CHAT),
    ], notes=[], now=2.0)
    assert [(p.engineer, p.number, p.channel, p.status) for p in await store.pages_for(alert.id)] == [
        ("alice", "alice@example.com", "email", "due"), (None, "ops-slack", "chat", "due")]
    assert [p.id for p in await store.unsent_pages()] == [p.id for p in pages]
    await store.mark_page_sent(pages[1].id, now=3.0)
    done = await store.finish_page(pages[1].id, outcome="sent", detail="", now=3.0, note=None)
    assert done is not None and (done.status, done.outcome) == ("done", "sent")


async def test_an_action_link_is_used_once_whichever_store_or_gateway_uses_it(engine: Engine, store: Store) -> None:
    alert, _, _ = await store.create_alert(_new(), now=1.0, escalate_at=None, note="t")
    assert await store.use_action_link("n-1", alert_id=alert.id, action="acknowledge", engineer="alice", now=2.0)
    assert not await store.use_action_link("n-1", alert_id=alert.id, action="acknowledge", engineer="alice", now=3.0)
    assert await store.use_action_link("n-2", alert_id=alert.id, action="resolve", engineer="chat:ops", now=3.0)
    others = [engine.make() for _ in range(3 if engine.name == "postgres" else 0)]  # other gateways
    for other in others:
        await other.open()
    try:
        for other in others:
            assert not await other.use_action_link("n-1", alert_id=alert.id, action="acknowledge", engineer="alice",
                                                   now=4.0)
        racers = [store, *others]
        results = await asyncio.gather(*(
            racers[i % len(racers)].use_action_link("n-race", alert_id=alert.id, action="acknowledge",
                                                    engineer="bob", now=5.0)
            for i in range(8)))
        assert sorted(results) == [False] * 7 + [True]
    finally:
        for other in others:
            await other.close()


async def test_latest_alert_is_the_newest_under_its_key_open_or_resolved(store: Store) -> None:
    assert await store.latest_alert("heartbeat:backup") is None
    first, _, _ = await store.create_alert(_new("heartbeat:backup"), now=1.0, escalate_at=None, note="late")
    await store.create_alert(_new("other"), now=2.0, escalate_at=None, note="t")
    assert await store.latest_alert("heartbeat:backup") == first
    await store.change_status(first.id, AlertStatus.RESOLVED, now=3.0, by="ops", note="resolved by hand")
    resolved = await store.latest_alert("heartbeat:backup")
    assert resolved is not None and (resolved.id, resolved.status, resolved.resolved_at) == (
        first.id, AlertStatus.RESOLVED, 3.0)
    second, _, _ = await store.create_alert(_new("heartbeat:backup"), now=4.0, escalate_at=None, note="late")
    assert await store.latest_alert("heartbeat:backup") == second


async def test_a_hold_is_extended_once_and_only_while_it_is_as_expected(store: Store) -> None:
    from gateway.store import HoldWindow

    first = (HoldWindow(key="config:db", name="db", until=100.0),)
    later = (HoldWindow(key="api:4", name="maintenance 4", until=200.0),)
    held, _ = await store.create_held_alert(_new("held"), now=10.0, note="held by db", windows=first)
    assert await store.extend_hold(held.id, expect=first, windows=later, now=100.0, note="still held by m 4")
    assert not await store.extend_hold(held.id, expect=first, windows=later, now=100.0, note="again")  # once
    assert [(h.alert_id, h.windows) for h in await store.list_holds()] == [(held.id, later)]
    assert [t.message for t in await store.timeline(held.id) if t.kind == "maintenance"] == ["still held by m 4"]
    esc = await store.get_escalation(held.id)
    assert esc is not None and esc.next_due is None  # still not paged
    assert await store.release_hold(held.id, now=200.0, note="maintenance over")
    assert not await store.extend_hold(held.id, expect=later, windows=first, now=200.0, note="gone")
