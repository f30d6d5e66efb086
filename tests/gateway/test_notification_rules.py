"""Personal notification rules: the whole story through the real app (sandbox phones, a fake clock) on both
stores, the API, and check-config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.cli import main
from gateway.config import ConfigError, load_config
from gateway.notification_rules import parse_rules
from gateway.rule_book import RuleBook
from gateway.web.keys import CONFIG, STORE
from tests.postgres import PgDatabase
from tests.support import ALICE, AUTH, BASE_CONFIG, BOB, CAROL, Gateway, eventually, write_config

PASSWORD_ENV = "GATEWAY_TEST_DB_PASSWORD"
# Alice (primary of sre, the first step lasts 20 s): a text at once, a call 10 s later, a call at 30 s (past
# the step's timeout: never sent).
ALICE_RULES = f"""  alice:
    name: Alice
    phones: ["{ALICE}"]
    notification_rules:
      - {{via: sms, after: 0s}}
      - {{via: call, after: 10s}}
      - {{via: call, after: 30s}}
"""
RULES_CONFIG = BASE_CONFIG.replace(f'  alice: {{name: Alice, phones: ["{ALICE}"]}}\n', ALICE_RULES)
assert RULES_CONFIG != BASE_CONFIG


@pytest.fixture(params=["sqlite", "postgres"])
def rules_config(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if request.param == "sqlite":
        return write_config(tmp_path, RULES_CONFIG)
    database: PgDatabase = request.getfixturevalue("pg_database")
    store = f"store:\n  url: {database.url}\n"
    if database.password is not None:
        monkeypatch.setenv(PASSWORD_ENV, database.password)
        store += f"  password_env: {PASSWORD_ENV}\n"
    return write_config(tmp_path, RULES_CONFIG.replace("store:\n  path: gateway.db\n", store))


async def _start(aiohttp_client: Callable[..., Any], config_path: Path, clock: FakeClock) -> Gateway:
    client = await aiohttp_client(create_app(load_config(config_path), clock=clock))
    return Gateway(client, clock)


async def _texted(gateway: Gateway, number: str) -> list[str]:
    return [sms["text"] for sms in (await gateway.phone(number))["sms"] if sms["direction"] == "in"]


async def _alert_texted_to_alice(gateway: Gateway) -> int:
    status, body = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    assert status == 202, body

    async def texted() -> bool:
        return any("disk full" in text for text in await _texted(gateway, ALICE))

    await eventually(texted)
    return int(body["id"])


async def test_a_personal_rule_texts_first_and_calls_after_its_delay(
    aiohttp_client: Callable[..., Any], rules_config: Path
) -> None:
    gateway = await _start(aiohttp_client, rules_config, FakeClock())
    alert_id = await _alert_texted_to_alice(gateway)
    waiting = (await gateway.alert_where(alert_id, lambda a: a["pages"][0]["status"] == "sent"))["pages"]
    assert [(p["channel"], p["status"], p["due_at"] is not None) for p in waiting] == [
        ("sms", "sent", False), ("call", "due", True)]  # the call at 30 s is past the step's timeout: not written
    await gateway.clock.advance(9)
    assert (await gateway.phone(ALICE))["calls"] == 0  # the text at once, no call yet
    await gateway.clock.advance(1)
    await gateway.ringing(ALICE)
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/press", {"digits": "1"})
    alert = await gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert [(p["channel"], p["step"]) for p in alert["pages"]] == [("sms", 1), ("call", 1)]
    messages = [entry["message"] for entry in alert["timeline"]]
    rules_note = next(m for m in messages if "notification rules" in m)
    assert "sms at once, call after 10s" in rules_note
    assert "not sent, at or past the step's timeout (20s): call after 30s" in rules_note
    # The rule past the timeout never rings, and Bob's step never comes.
    await gateway.clock.advance(60)
    assert (await gateway.phone(ALICE))["calls"] == 1
    assert (await gateway.phone(BOB))["calls"] == 0


async def test_an_acknowledgement_before_the_delay_stops_the_call(
    aiohttp_client: Callable[..., Any], rules_config: Path
) -> None:
    gateway = await _start(aiohttp_client, rules_config, FakeClock())
    alert_id = await _alert_texted_to_alice(gateway)
    await gateway.clock.advance(3)
    status, _ = await gateway.post(f"/api/v1/alerts/{alert_id}/acknowledge", {"by": "alice"})
    assert status == 200
    alert = await gateway.alert_where(alert_id, lambda a: a["pages"][1]["status"] == "done")
    assert alert["pages"][1]["outcome"] == "canceled"
    assert alert["pages"][1]["detail"] == "alert closed before it was due; not sent"
    await gateway.clock.advance(30)
    assert (await gateway.phone(ALICE))["calls"] == 0
    assert (await gateway.phone(BOB))["calls"] == 0


async def test_a_later_page_whose_step_is_over_is_skipped_on_the_record(
    aiohttp_client: Callable[..., Any], rules_config: Path
) -> None:
    gateway = await _start(aiohttp_client, rules_config, FakeClock())
    alert_id = await _alert_texted_to_alice(gateway)
    # Someone escalates by hand: the next step (Bob) runs now, and Alice's call of step 1 must not follow.
    status, body = await gateway.post(f"/api/v1/alerts/{alert_id}/escalate")
    assert status == 200, body
    await gateway.ringing(BOB)
    await gateway.clock.advance(10)
    alert = await gateway.alert_where(alert_id, lambda a: a["pages"][1]["status"] == "done")
    assert alert["pages"][1]["outcome"] == "canceled"
    assert "was over before it fell due" in alert["pages"][1]["detail"]
    assert (await gateway.phone(ALICE))["calls"] == 0


async def test_a_restart_between_the_text_and_the_call_still_calls_once(
    aiohttp_client: Callable[..., Any], rules_config: Path
) -> None:
    clock = FakeClock()
    first = await _start(aiohttp_client, rules_config, clock)
    alert_id = await _alert_texted_to_alice(first)
    await first.client.close()  # the gateway stops 0 s into the step; the call is due at 10 s

    clock2 = FakeClock(start=clock.now() + 4)
    second = await _start(aiohttp_client, rules_config, clock2)
    await clock2.advance(1)
    assert (await second.phone(ALICE))["calls"] == 0  # not early
    await clock2.advance(5)
    await second.ringing(ALICE)
    await second.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    await second.post(f"/api/v1/sandbox/phones/{ALICE}/press", {"digits": "1"})
    alert = await second.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert [p["channel"] for p in alert["pages"]] == ["sms", "call"]
    await clock2.advance(30)
    assert (await second.phone(ALICE))["calls"] == 1
    assert await _texted(second, ALICE) == []  # the text went out before the restart, not again


async def test_rules_set_at_run_time_replace_the_configs_for_the_next_step(
    aiohttp_client: Callable[..., Any], rules_config: Path
) -> None:
    gateway = await _start(aiohttp_client, rules_config, FakeClock())
    status, body = await gateway.get("/api/v1/engineers/alice/notification-rules")
    assert status == 200 and body["source"] == "config"
    assert [(r["via"], r["after_s"]) for r in body["rules"]] == [("sms", 0), ("call", 10), ("call", 30)]

    async with gateway.client.put("/api/v1/engineers/alice/notification-rules", headers=AUTH,
                                  json={"rules": [{"via": "call", "after": 5}]}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["source"] == "api" and body["changed_by"] == "tests"
    assert body["rules"] == [{"via": "call", "after": "5s", "after_s": 5}]

    status, _ = await gateway.post("/api/v1/alerts", {"summary": "cpu", "team": "sre"})
    assert status == 202
    await gateway.clock.advance(4)
    assert (await gateway.phone(ALICE))["calls"] == 0
    await gateway.clock.advance(1)
    await gateway.ringing(ALICE)
    assert await _texted(gateway, ALICE) == []  # the stored set replaced the YAML's (no text)

    async with gateway.client.delete("/api/v1/engineers/alice/notification-rules", headers=AUTH) as resp:
        assert resp.status == 200
        assert (await resp.json())["source"] == "config"
    async with gateway.client.delete("/api/v1/engineers/alice/notification-rules", headers=AUTH) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"rules": [{"via": "fax", "after": "0s"}]}, "rules[0].via"),
    ({"rules": [{"via": "sms", "after": -5}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": "-1m"}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": "soon"}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": "2d"}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": "1.5s"}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": 1e300}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": "99999999999999999999999d"}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "after": None}]}, "rules[0].after"),
    ({"rules": [{"via": "sms", "when": "0s"}]}, "rules[0].when"),
    ({"rules": [{"via": "sms"}, {"via": "sms", "after": 0}]}, "rules[1]"),
    ({"rules": []}, "rules"),
    ({"rules": "sms"}, "rules"),
    ({"rules": [{"via": "sms"}], "extra": 1}, "extra"),
])
async def test_bad_rules_are_refused_with_422_and_change_nothing(
    gateway: Gateway, body: dict[str, Any], field: str
) -> None:
    async with gateway.client.put("/api/v1/engineers/alice/notification-rules", headers=AUTH, json=body) as resp:
        assert resp.status == 422
        answer = await resp.json()
    assert answer["error"] == "invalid_field" and answer["details"]["field"] == field, answer
    status, now = await gateway.get("/api/v1/engineers/alice/notification-rules")
    assert status == 200 and now["source"] == "steps" and now["rules"] == []


async def test_the_rules_api_refuses_what_is_not_a_rule_set(gateway: Gateway) -> None:
    path = "/api/v1/engineers/alice/notification-rules"
    for request, expected in [
        (gateway.client.put(path, headers=AUTH, data=b"{not json"), 400),
        (gateway.client.put(path, headers=AUTH, json=["sms"]), 422),
        (gateway.client.put(path, headers=AUTH, json={}), 422),
        (gateway.client.put("/api/v1/engineers/nobody/notification-rules", headers=AUTH,
                            json={"rules": [{"via": "sms"}]}), 404),
        (gateway.client.get("/api/v1/engineers/nobody/notification-rules", headers=AUTH), 404),
        (gateway.client.delete(path, headers=AUTH), 404),  # nothing set at run time
        (gateway.client.put(path, json={"rules": [{"via": "sms"}]}), 401),
    ]:
        async with request as resp:
            assert resp.status == expected, (resp.method, resp.url, await resp.text())
            assert set(await resp.json()) >= {"error", "message", "details"}


async def test_an_engineer_known_only_from_a_directory_has_no_rules_to_read_or_set(gateway: Gateway) -> None:
    path = "/api/v1/engineers/corp:alice/notification-rules"
    status, body = await gateway.get(path)
    assert status == 404 and body["error"] == "not_found"
    async with gateway.client.put(path, headers=AUTH, json={"rules": [{"via": "sms"}]}) as resp:
        assert resp.status == 404
    rules = RuleBook(gateway.client.app[CONFIG], gateway.client.app[STORE])
    await rules.load()
    assert rules.rules_for("corp:alice") == ()  # paged as each step says


async def test_a_viewer_may_read_the_rules_but_not_change_them(
    tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    config = BASE_CONFIG.replace("api_tokens:\n", "api_tokens:\n  - {name: wall, token: viewer-token, role: viewer}\n")
    gateway = await _start(aiohttp_client, write_config(tmp_path, config), FakeClock())
    viewer = {"Authorization": "Bearer viewer-token"}
    status, _ = await gateway.get("/api/v1/engineers/bob/notification-rules", headers=viewer)
    assert status == 200
    async with gateway.client.put("/api/v1/engineers/bob/notification-rules", headers=viewer,
                                  json={"rules": [{"via": "sms"}]}) as resp:
        assert resp.status == 403


# ---------------------------------------------------------------- config


def test_check_config_reports_bad_rules_with_key_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = BASE_CONFIG.replace(
        f'  bob: {{name: Bob, phones: ["{BOB}"]}}\n',
        f'  bob:\n    phones: ["{BOB}"]\n    notification_rules:\n      - {{via: pigeon, after: 0s}}\n'
        f'      - {{via: call, after: -30}}\n      - {{via: sms, after: 1m, loud: true}}\n')
    path = write_config(tmp_path, bad)
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: engineers.bob.notification_rules[0].via: must be one of: call, sms, got 'pigeon'",
        f"{path}: engineers.bob.notification_rules[1].after: must not be negative, got -30",
        f"{path}: engineers.bob.notification_rules[2].loud: unknown key (expected one of: via, after)",
    ]


def test_check_config_warns_of_rules_no_step_can_send(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # BASE_CONFIG's longest step lasts 60 s: a call 1 minute after a step starts can never be made.
    path = write_config(tmp_path, RULES_CONFIG.replace("{via: call, after: 30s}", "{via: call, after: 1m}"))
    assert main(["check-config", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("ok: ")
    assert captured.err == (f"warning: {path}: engineers.alice.notification_rules[2]: call after 1m can never be "
                            f"sent: no step that may page alice lasts longer than 1m\n")


def test_an_empty_rule_list_is_a_problem_and_rules_are_ordered_by_delay(tmp_path: Path) -> None:
    empty = RULES_CONFIG.replace("    notification_rules:\n      - {via: sms, after: 0s}\n"
                                 "      - {via: call, after: 10s}\n      - {via: call, after: 30s}\n",
                                 "    notification_rules: []\n")
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(tmp_path, empty))
    assert raised.value.problems == [f"{tmp_path / 'gateway.yaml'}: engineers.alice.notification_rules: at least one "
                                     "rule is needed (leave the rules out to be paged as each step says)"]
    rules, problems = parse_rules([{"via": "call", "after": "1m"}, {"via": "sms"}])
    assert problems == [] and [(r.via, r.after_s) for r in rules] == [("sms", 0), ("call", 60)]


# ------------------------------------------------------ several gateways


@pytest.fixture
def pg_rules_config(tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = f"store:\n  url: {pg_database.url}\n"
    if pg_database.password is not None:
        monkeypatch.setenv(PASSWORD_ENV, pg_database.password)
        store += f"  password_env: {PASSWORD_ENV}\n"
    return write_config(tmp_path, RULES_CONFIG.replace("store:\n  path: gateway.db\n", store))


async def test_a_change_on_one_gateway_is_in_force_on_the_others(
    aiohttp_client: Callable[..., Any], pg_rules_config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = await _start(aiohttp_client, pg_rules_config, FakeClock())
    two = await _start(aiohttp_client, pg_rules_config, FakeClock())
    with caplog.at_level("INFO", logger="gateway.rule_book"):
        async with one.client.put("/api/v1/engineers/bob/notification-rules", headers=AUTH,
                                  json={"rules": [{"via": "sms", "after": "0s"}]}) as resp:
            assert resp.status == 200
    assert "notification rules of bob changed by tests: sms at once" in caplog.text  # the log line of the audit

    async def pushed() -> bool:
        status, body = await two.get("/api/v1/engineers/bob/notification-rules")
        return status == 200 and body["source"] == "api" and body["changed_by"] == "tests"

    await eventually(pushed)


async def test_only_the_owner_of_a_later_page_releases_it(pg_database: PgDatabase) -> None:
    from gateway.pg_store import PgStore
    from gateway.store import NewAlert, NewPage, StepPlan

    owner = PgStore(pg_database.url, password=pg_database.password, gateway_id="gw-a")
    other = PgStore(pg_database.url, password=pg_database.password, gateway_id="gw-b")
    await owner.open()
    await other.open()
    try:
        plan = StepPlan(step=0, repeat=0, next_due=30.0, pages=[
            NewPage(engineer="alice", number=ALICE, channel="call", due_at=10.0)])
        _, _, pages = await owner.create_alert(NewAlert(dedup_key="k", priority="high", source="api", summary="s",
                                                        team="sre", policy="default", route="r"),
                                               now=1.0, escalate_at=None, note="t", first_step=plan)
        assert await other.next_page_due() is None and await other.later_pages_due(20.0) == []
        assert await other.release_page(pages[0].id) is None
        assert await owner.next_page_due() == 10.0
        assert [p.id for p in await owner.later_pages_due(20.0)] == [pages[0].id]
        assert await owner.release_page(pages[0].id) is not None
    finally:
        await owner.close()
        await other.close()


async def test_a_gateway_taking_over_a_dead_ones_later_page_keeps_its_due_time(pg_database: PgDatabase) -> None:
    import asyncpg  # type: ignore[import-untyped]

    from gateway.pg_store import PgStore
    from gateway.store import NewAlert, NewPage, StepPlan

    dead = PgStore(pg_database.url, password=pg_database.password, gateway_id="gw-a")
    heir = PgStore(pg_database.url, password=pg_database.password, gateway_id="gw-b")
    await dead.open()
    await heir.open()
    try:
        db = await asyncpg.connect(pg_database.url, password=pg_database.password)
        try:
            key = await db.fetchval("INSERT INTO gateways (id, host, pid, started_at) VALUES ('gw-a', 'h', 1, 0)"
                                    " RETURNING lock_key")
        finally:
            await db.close()
        plan = StepPlan(step=0, repeat=0, next_due=30.0, pages=[
            NewPage(engineer="alice", number=ALICE, channel="sms"),
            NewPage(engineer="alice", number=ALICE, channel="call", due_at=10.0)])
        _, _, pages = await dead.create_alert(NewAlert(dedup_key="k", priority="high", source="api", summary="s",
                                                       team="sre", policy="default", route="r"),
                                              now=1.0, escalate_at=None, note="t", first_step=plan)
        inherited = await heir.inherit("gw-a", key)
        assert inherited is not None
        assert [p.id for p in inherited.unsent] == [pages[0].id]  # the text now; the call is not sent early
        assert await heir.next_page_due() == 10.0 and await heir.later_pages_due(9.0) == []
        assert [p.id for p in await heir.later_pages_due(10.0)] == [pages[1].id]
        assert await dead.release_page(pages[1].id) is None  # the dead one, back too late, sends nothing
        assert await heir.release_page(pages[1].id) is not None
    finally:
        await dead.close()
        await heir.close()


# ------------------------------------------------- what the rules leave alone


async def test_an_alert_held_by_maintenance_follows_the_rules_from_its_release(
    aiohttp_client: Callable[..., Any], rules_config: Path
) -> None:
    gateway = await _start(aiohttp_client, rules_config, FakeClock())
    status, window = await gateway.post("/api/v1/maintenance", {"matchers": ['service="db"'],
                                                                "end": "2026-01-07T18:00:00Z"})
    assert status == 201, window
    status, body = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre",
                                                         "labels": {"service": "db"}})
    assert status == 202, body
    await gateway.clock.advance(300)  # held: nothing written, nothing due
    assert (await gateway.alert(body["id"]))["pages"] == []
    status, _ = await gateway.post(f"/api/v1/maintenance/{window['id']}/end")
    assert status == 200

    async def texted() -> bool:
        return any("disk full" in text for text in await _texted(gateway, ALICE))

    await eventually(texted)  # at once on release; the call 10 s after the release, not after the trigger
    assert (await gateway.phone(ALICE))["calls"] == 0
    await gateway.clock.advance(9)
    assert (await gateway.phone(ALICE))["calls"] == 0
    await gateway.clock.advance(1)
    await gateway.ringing(ALICE)


async def test_a_hotline_screening_call_rings_at_once_whatever_the_rules(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.gateway.test_hotline_story import HOTLINE_CONFIG, _dial

    config = HOTLINE_CONFIG.replace(f'  alice: {{name: Alice, phones: ["{ALICE}"]}}\n', ALICE_RULES)
    assert config != HOTLINE_CONFIG
    gateway = await _start(aiohttp_client, write_config(tmp_path, config), FakeClock())
    await _dial(gateway, "1")
    await gateway.ringing(ALICE)  # no waiting for a rule's delay: a caller is on hold
    _, alerts = await gateway.get("/api/v1/alerts")
    pages = (await gateway.alert(alerts["alerts"][0]["id"]))["pages"]
    assert [(p["engineer"], p["channel"], p["due_at"]) for p in pages] == [("alice", "call", None)]


async def test_a_step_that_only_texts_keeps_only_the_rules_texts(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    # Team dba's policy texts Carol (via: sms, 60 s); her rules would call at once and text after 10 s.
    carol = f'  carol: {{name: Carol, phones: ["{CAROL}"]}}\n'
    config = BASE_CONFIG.replace(carol, f'  carol:\n    phones: ["{CAROL}"]\n    notification_rules:\n'
                                        f'      - {{via: call, after: 0s}}\n      - {{via: sms, after: 10s}}\n')
    assert config != BASE_CONFIG
    gateway = await _start(aiohttp_client, write_config(tmp_path, config), FakeClock())
    status, body = await gateway.post("/api/v1/alerts", {"summary": "replica lag", "team": "dba"})
    assert status == 202, body
    pages = (await gateway.alert(body["id"]))["pages"]
    assert [(p["channel"], p["status"], p["due_at"] is not None) for p in pages] == [("sms", "due", True)]
    await gateway.clock.advance(9)
    assert await _texted(gateway, CAROL) == []
    await gateway.clock.advance(1)

    async def texted() -> bool:
        return any("replica lag" in text for text in await _texted(gateway, CAROL))

    await eventually(texted)
    assert (await gateway.phone(CAROL))["calls"] == 0


async def test_a_failed_text_does_not_skip_the_call_due_later(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    # No SMS provider: Alice's text fails at once. Her call, due in 10 s, still belongs to the step, so the
    # step is not "nobody can take it" yet: Bob is not paged early, and Alice's phone rings at 10 s.
    config = RULES_CONFIG + "providers: {voice: [sandbox], sms: []}\n"
    gateway = await _start(aiohttp_client, write_config(tmp_path, config), FakeClock())
    status, body = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    assert status == 202, body
    alert = await gateway.alert_where(body["id"], lambda a: a["pages"][0]["status"] == "done")
    assert alert["pages"][0]["outcome"] == "failed" and alert["escalation"]["next_step"] == 2
    await gateway.clock.advance(9)
    assert (await gateway.phone(BOB))["calls"] == 0
    await gateway.clock.advance(1)
    await gateway.ringing(ALICE)
    assert (await gateway.phone(BOB))["calls"] == 0


async def test_a_step_where_no_rule_falls_due_in_time_moves_on_at_once(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    only_late = RULES_CONFIG.replace("      - {via: sms, after: 0s}\n      - {via: call, after: 10s}\n", "")
    gateway = await _start(aiohttp_client, write_config(tmp_path, only_late), FakeClock())
    status, body = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    assert status == 202, body
    await gateway.ringing(BOB)  # step 2, at once: Alice's only rule (a call at 30 s) is past step 1's 20 s
    messages = [entry["message"] for entry in (await gateway.alert(body["id"]))["timeline"]]
    assert "step 1 of 2: no page falls due within its timeout; skipped" in messages
    assert any("not sent, at or past the step's timeout (20s): call after 30s" in m for m in messages)
    assert (await gateway.phone(ALICE))["calls"] == 0
