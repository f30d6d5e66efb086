"""Routes by time, expression and receiver, and priority rules: unit checks on select_route and the config,
then the whole story through the real app, a real SQLite file and the sandbox phones on a fake clock."""

from __future__ import annotations

import logging
import os
import re
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.clock import FakeClock
from core.enums import Priority
from gateway.app import create_app
from gateway.config import Config, ConfigError, load_config
from gateway.expressions import compile_expression
from gateway.intake import parse_alertmanager, parse_grafana, parse_pagerduty, parse_splunk
from gateway.priority_rules import raising_rule
from gateway.routing import Arrival, select_route
from gateway.signals import AlertSignal
from tests.support import ALICE, BOB, CAROL, TOKEN, Gateway, eventually, payload

CONFIG = f"""
store: {{path: gateway.db}}
defaults: {{time_zone: Europe/Amsterdam}}
api_tokens: [{{name: tests, token: {TOKEN}}}]
engineers:
  alice: {{name: Alice, phones: ["{ALICE}"]}}   # the NOC's on-call
  bob: {{name: Bob, phones: ["{BOB}"]}}         # the day desk
  carol: {{name: Carol, phones: ["{CAROL}"]}}   # SRE
teams:
  noc: {{members: [alice]}}
  desk: {{members: [bob]}}
  sre: {{members: [carol]}}
time_windows:
  business_hours: {{weekly: [{{days: mon-fri, from: "09:00", to: "18:00"}}]}}
  holidays: {{dates: [2026-12-25]}}
  after_hours: {{not: business_hours}}
policies:
  phone: {{steps: [{{notify: primary, via: call, timeout: 5m}}]}}
  sms: {{steps: [{{notify: primary, via: sms, timeout: 5m}}]}}
routes:
  - name: sre-receiver
    receiver: prod-companyapp2-critical-sre
    team: sre
    policy: phone
  - name: pop-night
    matchers: ['severity="critical"', 'site=~"pop-.*"']
    when: [after_hours, holidays]     # any of them
    team: noc
    policy: phone
    priority: high
  - name: pop-day
    matchers: ['severity="critical"', 'site=~"pop-.*"']
    when: [business_hours]
    unless: holidays
    team: desk
    policy: sms
  - name: enterprise-routers
    expression: 'labels.tier == "enterprise" && labels.equipment in ["core-router", "edge-router"]'
    team: noc
    policy: phone
  - name: prod-receivers
    receiver: '=~prod-.*-sre'
    team: sre
    policy: sms
default_route: {{team: desk, policy: sms}}
priority_rules:
  - name: core-equipment
    matchers: ['equipment="core-router"']
  - name: enterprise-at-night
    expression: '"tier" in labels && labels.tier == "enterprise" && (hour >= 22 || hour < 6)'
    routes: [pop-day, pop-night]
"""

POP = {"severity": "critical", "site": "pop-ams1", "alertname": "LinkDown"}


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def _route(config: Config, labels: dict[str, str], at: datetime, receiver: str = "") -> str:
    return select_route(config, labels, arrival=Arrival(at=at, receiver=receiver)).name


# The same alert, at moments in Europe/Amsterdam wall time. The March change (Sunday 29th, 02:00 CET ->
# 03:00 CEST) and the October one (Sunday 25th, 03:00 CEST -> 02:00 CET) are in both lists: 09:30 on the
# Monday after each is read in the offset of that day, not of the week before.
@pytest.mark.parametrize(
    ("at", "route"),
    [
        (utc(2026, 3, 24, 13, 0), "pop-day"),  # Tuesday 14:00 CET
        (utc(2026, 3, 29, 1, 0), "pop-night"),  # Sunday 03:00 CEST, the night the clocks go forward
        (utc(2026, 3, 30, 7, 30), "pop-day"),  # Monday 09:30 CEST (08:30 in last week's CET: still night)
        (utc(2026, 3, 30, 6, 30), "pop-night"),  # Monday 08:30 CEST
        (utc(2026, 10, 25, 2, 0), "pop-night"),  # Sunday 03:00 CET, after the clocks went back
        (utc(2026, 10, 26, 7, 30), "pop-night"),  # Monday 08:30 CET (09:30 in last week's CEST: day)
        (utc(2026, 10, 26, 8, 30), "pop-day"),  # Monday 09:30 CET
        (utc(2026, 10, 27, 16, 59), "pop-day"),  # Tuesday 17:59 CET
        (utc(2026, 10, 27, 17, 0), "pop-night"),  # Tuesday 18:00 CET: the end is outside
        (utc(2026, 12, 25, 10, 0), "pop-night"),  # a Friday that is a holiday
    ],
)
def test_time_rules_follow_the_wall_clock_across_dst_changes(config: Config, at: datetime, route: str) -> None:
    assert _route(config, POP, at) == route


def test_a_time_rule_without_an_arrival_time_does_not_match(config: Config) -> None:
    assert select_route(config, POP).name == "default"


@pytest.mark.parametrize(
    ("labels", "route"),
    [
        ({"tier": "enterprise", "equipment": "core-router"}, "enterprise-routers"),
        ({"tier": "enterprise", "equipment": "edge-router"}, "enterprise-routers"),
        ({"tier": "enterprise", "equipment": "switch"}, "default"),
        ({"tier": "smb", "equipment": "core-router"}, "default"),
        ({"equipment": "core-router"}, "default"),  # no tier: an evaluation error, no match
        ({}, "default"),
    ],
)
def test_a_cel_route_matches_as_written(config: Config, labels: dict[str, str], route: str) -> None:
    assert _route(config, labels, utc(2026, 3, 24, 13, 0)) == route


def test_a_run_time_error_is_no_match_logged_once_with_the_route(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent("""
        api_tokens: [{name: t, token: t}]
        engineers: {a: {phones: ["+15550000001"]}}
        teams: {t: {members: [a]}}
        policies: {p: {steps: [{notify: primary}]}}
        routes:
          - {name: big-disk, expression: 'int(labels.size_gb) > 100', team: t, policy: p}
          - {name: any-answer, expression: 'dyn(labels.answer)', team: t, policy: p}
        default_route: {team: t, policy: p}
    """))
    config = load_config(path)
    at = utc(2026, 3, 24, 13, 0)
    with caplog.at_level(logging.WARNING, logger="gateway.routing"):
        for _ in range(3):
            assert _route(config, {"size_gb": "200"}, at) == "big-disk"
            assert _route(config, {"size_gb": "lots"}, at) == "default"  # not a number; no label "answer"
            assert _route(config, {"answer": "yes"}, at) == "default"  # no label "size_gb"; dyn: not a bool
    assert [r.getMessage() for r in caplog.records] == [
        "route big-disk: expression counts as no match: cannot convert string to int (logged once)",
        'route any-answer: expression counts as no match: Key not found in map : "answer" (logged once)',
        'route big-disk: expression counts as no match: Key not found in map : "size_gb" (logged once)',
        "route any-answer: expression counts as no match: gave string, not true or false (logged once)",
    ]


@pytest.mark.parametrize(
    ("receiver", "route"),
    [
        ("prod-companyapp2-critical-sre", "sre-receiver"),
        ("prod-billing-sre", "prod-receivers"),
        ("prod-billing-sre-2", "default"),  # the regex is anchored at both ends
        ("staging-billing-sre", "default"),
        ("", "default"),  # sources without a receiver
    ],
)
def test_the_receiver_selects_the_route(config: Config, receiver: str, route: str) -> None:
    assert _route(config, {}, utc(2026, 3, 24, 13, 0), receiver) == route


@pytest.mark.parametrize(
    ("labels", "route", "at", "rule"),
    [
        ({**POP, "equipment": "core-router"}, "pop-day", utc(2026, 3, 24, 13, 0), "core-equipment"),
        ({**POP, "equipment": "switch"}, "pop-day", utc(2026, 3, 24, 13, 0), None),
        ({**POP, "tier": "enterprise"}, "pop-night", utc(2026, 3, 24, 22, 0), "enterprise-at-night"),  # 23:00
        ({**POP, "tier": "enterprise"}, "pop-day", utc(2026, 3, 24, 13, 0), None),  # 14:00
        ({**POP, "tier": "smb"}, "pop-night", utc(2026, 3, 24, 22, 0), None),
        ({"tier": "enterprise"}, "default", utc(2026, 3, 24, 22, 0), None),  # not on one of its routes
    ],
)
def test_a_priority_rule_matches_as_written(config: Config, labels: dict[str, str], route: str, at: datetime,
                                            rule: str | None) -> None:
    chosen = select_route(config, labels, arrival=Arrival(at=at))
    assert chosen.name == route
    found = raising_rule(config, chosen, labels, Arrival(at=at), Priority.LOW)
    assert (found.name if found else None) == rule
    assert raising_rule(config, chosen, labels, Arrival(at=at), Priority.HIGH) is None  # never lowers, nothing to do


def test_expression_variables(tmp_path: Path) -> None:
    """Each variable the README names: true for one alert, false for another."""
    checks = {
        "labels": 'labels.team == "sre"',
        "annotations": 'annotations.summary.startsWith("Disk")',
        "priority": 'priority == "high"',
        "source": 'source == "api"',
        "receiver": 'receiver == ""',
        "now": 'now == timestamp("2026-03-29T01:00:00Z") && now.getHours("UTC") == 1',
        "hour": "hour == 3",  # in defaults.time_zone: 03:00 CEST
        "weekday": 'weekday == "sun"',
        "optional": 'labels.?missing.orValue("none") == "none" && labels.?team.orValue("") == "sre"',
        "strings": 'labels.team.upperAscii() == "SRE"',
    }
    routes = "\n".join(f"  - {{name: {name}, expression: '{text}', team: t, policy: p}}"
                       for name, text in checks.items())
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent("""
        defaults: {time_zone: Europe/Amsterdam}
        api_tokens: [{name: t, token: t}]
        engineers: {a: {phones: ["+15550000001"]}}
        teams: {t: {members: [a]}}
        policies: {p: {steps: [{notify: primary}]}}
        default_route: {team: t, policy: p}
        routes:
    """) + routes + "\n")
    config = load_config(path)
    arrival = Arrival(at=utc(2026, 3, 29, 1, 0), source="api", annotations={"summary": "Disk full"}, priority="high")
    other = Arrival(at=utc(2026, 3, 30, 12, 0), source="alertmanager", receiver="x", annotations={"summary": "CPU"},
                    priority="low")
    for route in config.routes:
        alone = Config(source=path, routes=(route,), default_route=config.default_route, time_zone=config.time_zone)
        assert select_route(alone, {"team": "sre"}, arrival=arrival).name == route.name, route.expression
        assert select_route(alone, {"team": "db"}, arrival=other).name == "default", route.expression


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent("""
        api_tokens: [{name: t, token: t}]
        engineers: {a: {phones: ["+15550000001"]}}
        teams: {t: {members: [a]}}
        policies: {p: {steps: [{notify: primary}]}}
        default_route: {team: t, policy: p}
        time_windows: {nights: {weekly: [{from: "22:00", to: "06:00"}]}}
    """) + textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [problem.removeprefix(f"{path}: ") for problem in caught.value.problems]


def test_config_errors_name_the_key_path(tmp_path: Path) -> None:
    assert _problems(tmp_path, """
        routes:
          - {team: t, policy: p, when: [nights, weekends], unless: holiday}
          - {team: t, policy: p, expression: 'labels.tier =='}
          - {team: t, policy: p, expression: 'labels.tier'}
          - {team: t, policy: p, expression: 'labels.tier == 1'}
          - {team: t, policy: p, expression: 'tier == "x"'}
          - {team: t, policy: p, expression: [a]}
          - {team: t, policy: p, receiver: '=~prod-(('}
          - {team: t, policy: p, receiver: 5}
        priority_rules:
          - {name: everything}
          - {name: r, expression: 'hour', routes: [route-0, nope], when: [daytime]}
    """) == [
        "routes[0].when[1]: unknown time window 'weekends' (known: nights)",
        "routes[0].unless: unknown time window 'holiday' (known: nights)",
        "routes[1].expression: does not compile: 1:15: Syntax error: mismatched input '<EOF>' expecting {'[', "
        "'{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
        "routes[2].expression: must give true or false, but gives string",
        "routes[3].expression: does not compile: 1:13: found no matching overload for '_==_' applied to "
        "'(string, int)'",
        "routes[4].expression: does not compile: 1:1: undeclared reference to 'tier' (in container '')",
        "routes[5].expression: expected text, got a list",
        "routes[6].receiver: '=~prod-((' has an invalid regular expression: missing ), unterminated subpattern "
        "at position 9",
        "routes[7].receiver: expected a receiver name, or =~\"regex\" (also !~ and !=)",
        "priority_rules[0]: needs a condition (matchers, receiver, when, unless or expression): a rule without "
        "one would raise every alert",
        "priority_rules[1].routes[1]: unknown route 'nope' (routes are named by their name:)",
        "priority_rules[1].expression: must give true or false, but gives int",
        "priority_rules[1].when[0]: unknown time window 'daytime' (known: nights)",
    ]


def test_check_config_reports_an_expression_that_does_not_compile(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG.replace('labels.equipment in ["core-router", "edge-router"]', 'labels.equipment in'))
    assert main(["check-config", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: routes[3].expression: does not compile: 1:51: Syntax error: mismatched input '<EOF>'" in out


# ------------------------------------------------------------------ the whole story


@pytest.fixture
def gateway_at(aiohttp_client: Callable[..., Any], tmp_path: Path) -> Callable[[datetime], Any]:
    async def start(at: datetime) -> Gateway:
        path = tmp_path / "gateway.yaml"
        path.write_text(CONFIG)
        clock = FakeClock(at.timestamp())
        return Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)

    return start


@pytest.mark.parametrize(
    ("at", "route", "engineer", "channel"),
    [
        (utc(2026, 3, 24, 13, 0), "pop-day", BOB, "sms"),  # Tuesday 14:00 CET: the day desk, by SMS
        (utc(2026, 3, 29, 1, 0), "pop-night", ALICE, "call"),  # Sunday 03:00 CEST: the NOC on-call, by phone
        (utc(2026, 10, 25, 2, 0), "pop-night", ALICE, "call"),  # Sunday 03:00 CET
    ],
)
async def test_the_same_alert_pages_the_day_desk_or_the_noc(gateway_at: Callable[[datetime], Any], at: datetime,
                                                            route: str, engineer: str, channel: str) -> None:
    gateway: Gateway = await gateway_at(at)
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "POP link down", "labels": POP})
    assert status == 202, answer
    alert = await gateway.alert(answer["id"])
    assert alert["route"] == route
    if channel == "call":
        await gateway.ringing(engineer)
        assert (await gateway.phone(BOB))["sms"] == []
    else:
        sms = await eventually(lambda: _sms_to(gateway, engineer))
        assert "POP link down" in sms[0]["text"]
        assert (await gateway.phone(ALICE))["call"] is None
    alert = await gateway.alert_where(answer["id"], lambda a: bool(a["pages"]))
    assert [p["channel"] for p in alert["pages"]] == [channel]


async def _sms_to(gateway: Gateway, number: str) -> list[dict[str, Any]]:
    return list((await gateway.phone(number))["sms"])


async def test_alertmanager_receiver_takes_the_receivers_route(gateway_at: Callable[[datetime], Any]) -> None:
    gateway: Gateway = await gateway_at(utc(2026, 11, 25, 2, 7))
    status, answer = await gateway.post("/api/v1/integrations/alertmanager",
                                        payload("alertmanager-v4-firing-sre-critical.json"))
    assert status == 202, answer
    for item in answer["alerts"]:
        alert = await gateway.alert(item["id"])
        assert (alert["route"], alert["team"]) == ("sre-receiver", "sre")
    await gateway.ringing(CAROL)

    other = payload("alertmanager-v4-firing-2-alerts.json")  # receiver "default": no receiver route
    status, answer = await gateway.post("/api/v1/integrations/alertmanager", other)
    assert status == 202, answer
    assert {(await gateway.alert(item["id"]))["route"] for item in answer["alerts"]} == {"default"}


async def test_a_priority_boost_is_on_the_timeline(gateway_at: Callable[[datetime], Any]) -> None:
    gateway: Gateway = await gateway_at(utc(2026, 3, 24, 13, 0))
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "core down",
                                                           "labels": {**POP, "equipment": "core-router"}})
    assert status == 202, answer
    alert = await gateway.alert(answer["id"])
    assert (alert["route"], alert["priority"]) == ("pop-day", "high")
    assert [(t["kind"], t["message"]) for t in alert["timeline"]][:2] == [
        ("triggered", "triggered from api; route pop-day -> team desk, policy sms, high priority"),
        ("priority", "priority raised to high by rule core-equipment"),
    ]

    status, answer = await gateway.post("/api/v1/alerts", {"summary": "switch down",
                                                           "labels": {**POP, "equipment": "switch"}})
    assert status == 202, answer
    alert = await gateway.alert(answer["id"])
    assert (alert["route"], alert["priority"]) == ("pop-day", "low")
    assert all(t["kind"] != "priority" for t in alert["timeline"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(labels=st.dictionaries(st.text(), st.text()), annotations=st.dictionaries(st.text(), st.text()),
       receiver=st.text(), seconds=st.floats(min_value=-6e10, max_value=2.5e11))
def test_any_alert_gets_a_route_and_nothing_raises(config: Config, labels: dict[str, str],
                                                   annotations: dict[str, str], receiver: str,
                                                   seconds: float) -> None:
    arrival = Arrival(at=datetime.fromtimestamp(seconds, UTC), receiver=receiver, annotations=annotations)
    route = select_route(config, labels, arrival=arrival)
    raising_rule(config, route, labels, arrival, Priority.LOW)


@pytest.mark.parametrize(
    ("fixture", "parse", "receivers"),
    [
        ("alertmanager-v4-firing-sre-critical.json", parse_alertmanager, {"prod-companyapp2-critical-sre"}),
        ("grafana-webhook-firing.json", parse_grafana, {"My Super Webhook"}),
        ("pagerduty-v2-trigger.json", parse_pagerduty, {""}),
        ("splunk-webhook-alert-action.json", parse_splunk, {""}),
    ],
)
def test_intake_passes_the_receiver_on(fixture: str, parse: Callable[[object], list[AlertSignal]],
                                       receivers: set[str]) -> None:
    assert {signal.receiver for signal in parse(payload(fixture))} == receivers


class TickingClock(FakeClock):
    """A fake clock that, once ``ticking``, moves one second on every reading by the alert service: time passes
    while a batch is stored. (Readings by the gateway's background services, whose timing the test does not
    control, leave it alone.)"""

    ticking = False

    def now(self) -> float:
        if self.ticking and _read_by_the_alert_service():
            self._now += 1
        return self._now


def _read_by_the_alert_service() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.endswith(os.path.join("gateway", "alerts.py")):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


async def test_a_batch_takes_the_routes_it_was_checked_against(aiohttp_client: Callable[..., Any],
                                                                tmp_path: Path) -> None:
    """The route is chosen once per alert, when the batch is checked: a window that ends while the batch is
    stored does not send part of it elsewhere."""
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""
        store: {{path: gateway.db}}
        defaults: {{time_zone: Europe/Amsterdam}}
        api_tokens: [{{name: tests, token: {TOKEN}}}]
        engineers: {{bob: {{phones: ["{BOB}"]}}}}
        teams: {{desk: {{members: [bob]}}}}
        time_windows:
          business_hours: {{weekly: [{{days: mon-fri, from: "09:00", to: "18:00"}}]}}
        policies: {{sms: {{steps: [{{notify: primary, via: sms, timeout: 5m}}]}}}}
        routes:
          - {{name: day, when: business_hours, team: desk, policy: sms}}
        default_route: {{team: desk, policy: sms}}
    """))
    clock = TickingClock(utc(2026, 3, 24, 16, 59, 57).timestamp())  # Tuesday 17:59:57 CET
    gateway = Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)
    clock._now = utc(2026, 3, 24, 16, 59, 57).timestamp()
    clock.ticking = True
    status, answer = await gateway.post("/api/v1/integrations/alertmanager",
                                        payload("alertmanager-v4-firing-2-alerts.json"))
    clock.ticking = False
    assert status == 202, answer
    assert [(await gateway.alert(item["id"]))["route"] for item in answer["alerts"]] == ["day", "day"]



def _one_route_config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent("""
        api_tokens: [{name: t, token: t}]
        engineers: {a: {phones: ["+15550000001"]}}
        teams: {t: {members: [a]}}
        policies: {p: {steps: [{notify: primary}]}}
        default_route: {team: t, policy: p}
    """) + textwrap.dedent(extra))
    return path


def test_weekdays_are_day_names_or_their_starts_and_not_takes_no_zone(tmp_path: Path) -> None:
    path = _one_route_config(tmp_path, """
        time_windows:
          a: {weekly: [{days: "monkey-fri", from: "09:00", to: "17:00"}]}
          b: {weekly: [{days: [sunshine], from: "09:00", to: "17:00"}]}
          c: {weekly: [{days: "Monday-Thurs", from: "09:00", to: "17:00"}]}
          d: {not: c, time_zone: Asia/Tokyo}
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [problem.removeprefix(f"{path}: ") for problem in caught.value.problems] == [
        "time_windows.a.weekly[0].days: 'monkey-fri' is not a weekday: use mon, tue, wed, thu, fri, sat, sun, a "
        "range like mon-fri, or daily",
        "time_windows.b.weekly[0].days: 'sunshine' is not a weekday: use mon, tue, wed, thu, fri, sat, sun, a range "
        "like mon-fri, or daily",
        "time_windows.d.not: stands alone: a window is either not: <other> (in that window's time zone) or its own "
        "times",
    ]


def test_a_runaway_comprehension_is_cut_off_and_counts_as_no_match(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """cel-cpp stops a comprehension after its iteration budget (about 10,000 iterations per evaluation), so an
    expression cannot hang the gateway; past the budget it is an evaluation error, i.e. no match."""
    ten = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"

    def nested(depth: int) -> str:  # 10^depth iterations
        names = [f"v{n}" for n in range(depth)]
        text = " + ".join(names) + " >= 0"
        for name in reversed(names):
            text = f"{ten}.all({name}, {text})"
        return text

    at = utc(2026, 3, 24, 13, 0)
    small = load_config(_one_route_config(tmp_path, f"routes: [{{name: small, expression: '{nested(3)}', team: t, "
                                                    "policy: p}]"))
    assert _route(small, {}, at) == "small"  # 1,110 iterations: within the budget
    runaway = load_config(_one_route_config(tmp_path, f"routes: [{{name: runaway, expression: '{nested(9)}', "
                                                      "team: t, policy: p}]"))
    with caplog.at_level(logging.WARNING, logger="gateway.routing"):
        assert _route(runaway, {}, at) == "default"
    assert [r.getMessage() for r in caplog.records] == [
        "route runaway: expression counts as no match: Iteration budget exceeded (logged once)"]


@pytest.mark.parametrize("text", [
    'labels.tier == "enterprise" && labels.equipment in ["core-router", "edge-router"]',
    'labels.site + "/" + labels.rack == "ams1/r2"',  # joining text once is fine
    'labels.tags.split(",").map(t, t.trim()).exists(t, t == "core")',
    'labels.tags.split(",").filter(t, t != "").size() > 2',
    'labels.instance.replace(":9100", "") == "node1"',  # replacements that cannot lengthen the text
    'labels.site.replace("-", "_") == "pop_ams1"',
    'labels.all(k, k.startsWith("x"))',
    '"%s".format([labels.site]) == "pop-ams1"',
    'labels.?site.optMap(v, v.lowerAscii()).orValue("") == "pop-ams1"',
])
def test_expressions_that_cannot_grow_values_compile(text: str) -> None:
    assert compile_expression(text).source == text


@pytest.mark.parametrize(("text", "problem"), [
    ('labels.a.replace("", "ab") == ""', "replace() may lengthen the text"),  # "ab" between every character
    ('labels.a.replace("a", labels.b) == ""', "replace() may lengthen the text"),
    ('labels.a.split("").join("-") == ""', "join() with a separator may build text without bound"),
    ('strings.quote(strings.quote(labels.a)) == ""', "strings.quote() may build text without bound"),
    ('["ab"].map(a, a + a).map(a, a + a).size() > 0', "+ inside all/exists/exists_one/map/filter"),
    ('["a"].map(a, "%s%s".format([a, a])).size() > 0', "format() inside all/exists/exists_one/map/filter"),
    ('[["a"]].map(a, a + a).size() > 0', "+ inside all/exists/exists_one/map/filter"),
    ('labels.?x.optMap(v, v + v).optMap(v, v + v).orValue("") == ""', "+ inside all/exists/exists_one/map/filter"),
    ('optional.of(labels.x).optFlatMap(v, optional.of(v + v)).hasValue()', "+ inside all/exists/exists_one/map"),
])
def test_expressions_that_could_build_huge_values_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        compile_expression(text)


def test_a_refused_expression_is_a_config_error_with_its_key_path(tmp_path: Path) -> None:
    path = _one_route_config(tmp_path, """
        routes:
          - {team: t, policy: p, expression: 'labels.x.replace("", labels.x).replace("", labels.x).size() > 0'}
    """)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}: routes[0].expression: replace() may lengthen the text (chained, without bound): give the "
        "replacement as a literal no longer than the literal it replaces"]


def test_run_time_errors_stop_being_logged_after_a_thousand_kinds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """An error's text can carry the alert's data (a regex made from a label): each kind is logged once, and
    past the cap none is, rather than every one every time."""
    monkeypatch.setattr("gateway.routing._reported", set())
    monkeypatch.setattr("gateway.routing._REPORTED_MAX", 3)
    config = load_config(_one_route_config(tmp_path, """
        routes: [{name: pattern, expression: 'labels.text.matches(labels.pattern)', team: t, policy: p}]
    """))
    at = utc(2026, 3, 24, 13, 0)
    with caplog.at_level(logging.WARNING, logger="gateway.routing"):
        for _ in range(2):
            for n in range(6):
                assert _route(config, {"text": "x", "pattern": f"({n}"}, at) == "default"
    assert [r.getMessage() for r in caplog.records] == [
        "route pattern: expression counts as no match: invalid regular expression: missing ): (0 (logged once)",
        "route pattern: expression counts as no match: invalid regular expression: missing ): (1 (logged once)",
        "route pattern: expression counts as no match: invalid regular expression: missing ): (2 (logged once)",
        "route pattern: expression counts as no match (and so do more errors, no longer logged)",
    ]


def test_a_priority_rule_may_name_the_default_route(tmp_path: Path) -> None:
    config = load_config(_one_route_config(tmp_path, """
        priority_rules: [{name: gold, matchers: ['tier="gold"'], routes: [default]}]
    """))
    at = Arrival(at=utc(2026, 3, 24, 13, 0))
    route = select_route(config, {"tier": "gold"}, arrival=at)
    assert route.name == "default"
    found = raising_rule(config, route, {"tier": "gold"}, at, Priority.LOW)
    assert found is not None and found.name == "gold"


def test_expressions_see_label_and_annotation_values_cut_to_a_bounded_length(tmp_path: Path) -> None:
    from gateway.expressions import MAX_VALUE_CHARS

    path = tmp_path / "gateway.yaml"
    path.write_text(textwrap.dedent(f"""
        api_tokens: [{{name: t, token: t}}]
        engineers: {{a: {{phones: ["+15550000001"]}}}}
        teams: {{t: {{members: [a]}}}}
        policies: {{p: {{steps: [{{notify: primary}}]}}}}
        default_route: {{team: t, policy: p}}
        routes:
          - {{name: cut, team: t, policy: p,
             expression: 'labels.big.size() == {MAX_VALUE_CHARS} && annotations.d.size() == {MAX_VALUE_CHARS}'}}
    """))
    config = load_config(path)
    huge = "x" * (100 * MAX_VALUE_CHARS)  # a sender's megabyte cannot make one evaluation take seconds
    arrival = Arrival(at=utc(2026, 3, 29, 1, 0), annotations={"d": huge})
    assert select_route(config, {"big": huge}, arrival=arrival).name == "cut"
