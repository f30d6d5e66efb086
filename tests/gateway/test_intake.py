"""Intake: every recorded payload normalizes to the expected signals; bad bodies name their field."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.intake import (
    parse_alertmanager,
    parse_generic,
    parse_grafana,
    parse_pagerduty,
    parse_splunk,
)
from gateway.intake_newrelic import parse_newrelic
from gateway.signals import AlertSignal, IntakeError

PAYLOADS = Path(__file__).parent.parent / "fixtures" / "payloads"

Parser = Callable[[object], list[AlertSignal]]


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def parser_for(name: str) -> Parser | None:
    """Which parser a fixture file belongs to (None for responses and foreign formats)."""
    if name.endswith(".response.json"):
        return None
    if name.startswith("alertmanager-"):
        return parse_alertmanager
    if name.startswith("grafana-"):
        return parse_grafana
    if "pagerduty-v2" in name:
        return parse_pagerduty
    if name.startswith("newrelic-"):
        return parse_newrelic
    return None


REQUEST_FIXTURES = sorted(
    path.name for path in PAYLOADS.glob("*.json") if parser_for(path.name) is not None
)


def field_of(parser: Parser, body: object) -> str:
    with pytest.raises(IntakeError) as caught:
        parser(body)
    return caught.value.field


# ------------------------------------------------------------------ fixtures as they are


def test_every_request_fixture_is_covered() -> None:
    # 7 Alertmanager + 3 Grafana + 4 PagerDuty + 2 Zabbix + 6 New Relic; guards against a silent glob.
    assert len(REQUEST_FIXTURES) == 22


@pytest.mark.parametrize("name", REQUEST_FIXTURES)
def test_every_request_fixture_is_accepted(name: str) -> None:
    parser = parser_for(name)
    assert parser is not None
    signals = parser(load(name))
    assert signals
    for signal in signals:
        assert signal.action in ("trigger", "acknowledge", "resolve")
        assert signal.dedup_key
        assert all(isinstance(v, str) for v in signal.labels.values())
        if signal.action == "trigger":
            assert signal.summary


def test_alertmanager_firing_two_alerts() -> None:
    signals = parse_alertmanager(load("alertmanager-v4-firing-2-alerts.json"))
    assert [(s.action, s.dedup_key) for s in signals] == [
        ("trigger", "alertmanager:2be778f10ea16ed6"),
        ("trigger", "alertmanager:4e2631a2b9220a77"),
    ]
    first = signals[0]
    assert first.source == "alertmanager"
    assert first.summary == "Instance node1.example.com:9100 down"
    assert first.priority is None
    assert first.team is None
    assert first.routing_key is None
    assert first.labels == {
        "alertname": "InstanceDown",
        "instance": "node1.example.com:9100",
        "job": "node",
        "severity": "warning",
        "receiver": "default",
    }
    assert first.details == {
        "annotations": {
            "description": "node1.example.com:9100 of job node has been down for more than 1 minute.",
            "summary": "Instance node1.example.com:9100 down",
        },
        "startsAt": "2026-11-25T02:06:01Z",
        "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=up%7Bjob%3D%22node%22%7D+%3D%3D+0&g0.tab=1",
        "externalURL": "http://alertmanager.example.com:9093",
        "receiver": "default",
        "groupKey": '{}:{alertname="InstanceDown"}',
    }
    assert "endsAt" not in first.details  # zero time while firing
    assert "truncatedAlerts" not in first.details  # 0 in the body
    assert signals[1].summary == "Instance node2.example.com:9100 down"


def test_alertmanager_resolved_two_alerts_resolves_the_same_keys() -> None:
    firing = parse_alertmanager(load("alertmanager-v4-firing-2-alerts.json"))
    resolved = parse_alertmanager(load("alertmanager-v4-resolved-2-alerts.json"))
    assert [s.action for s in resolved] == ["resolve", "resolve"]
    assert [s.dedup_key for s in resolved] == [s.dedup_key for s in firing]
    assert resolved[0].details["endsAt"] == "2026-11-25T02:08:09.219658Z"


def test_alertmanager_one_resolved_reads_the_per_alert_status() -> None:
    body = load("alertmanager-v4-firing-diskspacelow-one-resolved.json")
    assert body["status"] == "firing"
    signals = parse_alertmanager(body)
    assert [(s.action, s.dedup_key) for s in signals] == [
        ("resolve", "alertmanager:16052aed9a0db39e"),
        ("trigger", "alertmanager:0567d5b2f226145f"),
    ]
    assert signals[0].summary == "Less than 10% disk space left on db1.example.com:9100"


def test_alertmanager_diskspacelow_firing() -> None:
    signals = parse_alertmanager(load("alertmanager-v4-firing-diskspacelow.json"))
    assert [(s.action, s.dedup_key) for s in signals] == [
        ("trigger", "alertmanager:16052aed9a0db39e"),
        ("trigger", "alertmanager:0567d5b2f226145f"),
    ]


def test_alertmanager_sre_critical_keeps_team_labels_and_receiver() -> None:
    firing = parse_alertmanager(load("alertmanager-v4-firing-sre-critical.json"))
    resolved = parse_alertmanager(load("alertmanager-v4-resolved-sre-critical.json"))
    assert [(s.action, s.dedup_key) for s in firing] == [
        ("trigger", "alertmanager:dc54e7a2e8efa08d"),
        ("trigger", "alertmanager:41050ce9f4b2a48c"),
    ]
    assert [(s.action, s.dedup_key) for s in resolved] == [
        ("resolve", "alertmanager:dc54e7a2e8efa08d"),
        ("resolve", "alertmanager:41050ce9f4b2a48c"),
    ]
    labels = firing[0].labels
    assert labels["team"] == "sre"
    assert labels["severity"] == "critical"
    assert labels["cluster"] == "prod-companyapp2"
    assert labels["receiver"] == "prod-companyapp2-critical-sre"
    assert firing[0].summary == "High HTTP 5xx rate on companyapp2-api"
    assert firing[0].details["annotations"]["runbook_url"] == (
        "https://runbooks.example.com/companyapp2/high-error-rate"
    )


def test_alertmanager_truncated_reports_the_left_out_alerts() -> None:
    signals = parse_alertmanager(load("alertmanager-v4-firing-truncated.json"))
    assert len(signals) == 1
    assert signals[0].dedup_key == "alertmanager:6a248a26d3442ef0"
    assert signals[0].details["truncatedAlerts"] == 2
    assert signals[0].labels["receiver"] == "storage-max-alerts-1"


def test_grafana_firing_gives_two_triggers() -> None:
    signals = parse_grafana(load("grafana-webhook-firing.json"))
    assert [(s.action, s.dedup_key) for s in signals] == [
        ("trigger", "grafana:1:c6eadffa33fcdf37"),
        ("trigger", "grafana:1:bc97ff14869b13e3"),
    ]
    first = signals[0]
    assert first.source == "grafana"
    assert first.summary == "This alert was triggered for zone us-1"
    assert first.labels == {
        "alertname": "High memory usage",
        "team": "blue",
        "zone": "us-1",
        "receiver": "My Super Webhook",
    }
    assert first.details["values"] == {"B": 44.23943737541908, "C": 1}
    assert first.details["silenceURL"].startswith("https://play.grafana.org/alerting/silence/new")
    assert first.details["generatorURL"] == "https://play.grafana.org/alerting/1afz29v7z/edit"
    assert first.details["title"] == "[FIRING:2]  (blue)"
    assert first.details["message"].startswith("**Firing**")
    assert "dashboardURL" not in first.details  # empty string in the body
    assert "panelURL" not in first.details
    assert "endsAt" not in first.details


def test_grafana_resolved_gives_a_resolve_despite_state_ok() -> None:
    body = load("grafana-webhook-resolved.json")
    assert body["state"] == "ok"
    signals = parse_grafana(body)
    assert len(signals) == 1
    signal = signals[0]
    assert signal.action == "resolve"
    assert signal.dedup_key == "grafana:1:d8a21484c9c25a60"
    assert signal.summary == "This is a summary field, failure on <no value>"
    assert signal.labels == {"alertname": "Test alert", "test": "true", "receiver": "Webhook test"}
    assert signal.details["valueString"].startswith("[ var='B0'")
    assert "values" not in signal.details
    assert signal.details["endsAt"] == "2022-06-17T00:51:24.067337833Z"


def test_grafana_default_payload_falls_back_to_alertname_and_drops_empty_values() -> None:
    signals = parse_grafana(load("grafana-webhook-firing-default-payload-test.json"))
    assert len(signals) == 1
    signal = signals[0]
    assert signal.action == "trigger"
    assert signal.dedup_key == "grafana:1:fac0861a85de433a"
    assert signal.summary == "alert1"  # no summary/description annotation
    assert signal.labels == {"alertname": "alert1", "lbl1": "val1", "receiver": "my_receiver"}
    assert "values" not in signal.details  # null
    assert "valueString" not in signal.details  # ""
    assert "startsAt" not in signal.details  # zero time
    assert signal.details["annotations"] == {"ann1": "annv1"}


def test_pagerduty_trigger() -> None:
    signals = parse_pagerduty(load("pagerduty-v2-trigger.json"))
    assert len(signals) == 1
    signal = signals[0]
    assert signal.action == "trigger"
    assert signal.source == "pagerduty"
    assert signal.dedup_key == "samplekeyhere"
    assert signal.routing_key == "samplekeyhere"
    assert signal.summary == "Example alert on host1.example.com"
    assert signal.priority is None
    assert signal.labels == {
        "severity": "info",
        "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
        "component": "postgres",
        "group": "prod-datapipe",
        "class": "deploy",
    }
    assert signal.details == {
        "custom_details": {"ping time": "1500ms", "load avg": 0.75},
        "timestamp": "2015-07-17T08:42:58.315+0000",
        "client": "Sample Monitoring Service",
        "client_url": "https://monitoring.example.com",
        "links": [{"href": "https://example.com/", "text": "Link text"}],
        "images": [
            {
                "src": "https://www.pagerduty.com/wp-content/uploads/2016/05/pagerduty-logo-green.png",
                "href": "https://example.com/",
                "alt": "Example text",
            }
        ],
    }


def test_pagerduty_openapi_trigger() -> None:
    (signal,) = parse_pagerduty(load("pagerduty-v2-trigger-openapi-example.json"))
    assert signal.action == "trigger"
    assert signal.dedup_key == "srv01/mysql"
    assert signal.routing_key == "e93facc04764012d7bfb002500d5d1a6"
    assert signal.labels["severity"] == "critical"
    assert signal.labels["class"] == "disk"
    assert signal.summary == "DISK at 99% on machine prod-datapipe03.example.com"


@pytest.mark.parametrize(
    ("name", "action"),
    [("pagerduty-v2-acknowledge.json", "acknowledge"), ("pagerduty-v2-resolve.json", "resolve")],
)
def test_pagerduty_acknowledge_and_resolve(name: str, action: str) -> None:
    (signal,) = parse_pagerduty(load(name))
    assert signal.action == action
    assert signal.dedup_key == "dedupkeyhere"
    assert signal.routing_key == "routingkeyhere"
    assert signal.summary == ""
    assert signal.labels == {}
    assert signal.details == {}


def test_zabbix_trigger_and_resolve_share_the_event_id() -> None:
    (trigger,) = parse_pagerduty(load("zabbix-pagerduty-v2-trigger.json"))
    (resolve,) = parse_pagerduty(load("zabbix-pagerduty-v2-resolve.json"))
    assert (trigger.action, trigger.dedup_key) == ("trigger", "4812")
    assert (resolve.action, resolve.dedup_key) == ("resolve", "4812")
    assert trigger.routing_key == resolve.routing_key == "e93facc04764012d7bfb002500d5d1a6"
    assert trigger.summary == "Problem: Linux: High CPU utilization (over 90% for 5m)"
    assert trigger.labels == {"severity": "error", "source": "web-01 : 192.0.2.10"}
    assert trigger.details["custom_details"]["Event host"] == "web-01"
    assert trigger.details["client"] == "Zabbix"
    assert "timestamp" not in trigger.details
    assert "images" not in trigger.details


def test_splunk_is_not_a_generic_body() -> None:
    assert field_of(parse_generic, load("splunk-webhook-alert-action.json")) == "summary"


# ------------------------------------------------------------------ generic API


def test_generic_full_trigger() -> None:
    (signal,) = parse_generic(
        {
            "summary": "Disk full on db1",
            "details": {"free": "1%"},
            "labels": {"host": "db1", "port": 5432, "ratio": 0.5, "primary": True},
            "priority": "high",
            "dedup_key": "db1-disk",
            "team": "storage",
            "unknown": {"ignored": True},
        }
    )
    assert signal == AlertSignal(
        action="trigger",
        source="api",
        dedup_key="db1-disk",
        summary="Disk full on db1",
        details={"free": "1%"},
        labels={"host": "db1", "port": "5432", "ratio": "0.5", "primary": "true"},
        priority="high",
        team="storage",
    )


def test_generic_minimal_trigger_defaults() -> None:
    (signal,) = parse_generic({"summary": "x"})
    assert (signal.action, signal.dedup_key, signal.priority, signal.team) == ("trigger", None, None, None)
    assert signal.labels == {}
    assert signal.details == {}


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_generic_ack_and_resolve_need_only_a_dedup_key(action: str) -> None:
    (signal,) = parse_generic({"action": action, "dedup_key": "k"})
    assert (signal.action, signal.dedup_key, signal.summary) == (action, "k", "")
    assert field_of(parse_generic, {"action": action, "summary": "s"}) == "dedup_key"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "$"),
        ([], "$"),
        ("x", "$"),
        (42, "$"),
        ({}, "summary"),
        ({"summary": ""}, "summary"),
        ({"summary": "   "}, "summary"),
        ({"summary": 42}, "summary"),
        ({"summary": "x" * 1025}, "summary"),
        ({"summary": "s", "action": "snooze"}, "action"),
        ({"summary": "s", "action": ""}, "action"),
        ({"summary": "s", "action": 1}, "action"),
        ({"summary": "s", "details": "text"}, "details"),
        ({"summary": "s", "details": []}, "details"),
        ({"summary": "s", "labels": ["a"]}, "labels"),
        ({"summary": "s", "labels": {"a": {"b": 1}}}, "labels.a"),
        ({"summary": "s", "labels": {"a": [1]}}, "labels.a"),
        ({"summary": "s", "labels": {"a": None}}, "labels.a"),
        ({"summary": "s", "priority": "urgent"}, "priority"),
        ({"summary": "s", "priority": 1}, "priority"),
        ({"summary": "s", "dedup_key": ""}, "dedup_key"),
        ({"summary": "s", "dedup_key": "k" * 256}, "dedup_key"),
        ({"summary": "s", "dedup_key": 7}, "dedup_key"),
        ({"summary": "s", "team": 3}, "team"),
        ({"summary": "s", "team": ""}, "team"),
    ],
)
def test_generic_errors_name_the_field(body: object, field: str) -> None:
    assert field_of(parse_generic, body) == field


def test_generic_limits_are_inclusive() -> None:
    (signal,) = parse_generic({"summary": "x" * 1024, "dedup_key": "k" * 255})
    assert len(signal.summary) == 1024


# ------------------------------------------------------------------ Alertmanager


def am_body(**alert: Any) -> dict[str, Any]:
    base = {"status": "firing", "labels": {"alertname": "A"}, "fingerprint": "f1"}
    base.update(alert)
    return {"version": "4", "receiver": "r", "alerts": [base]}


def test_alertmanager_missing_version_is_accepted() -> None:
    body = load("alertmanager-v4-firing-2-alerts.json")
    del body["version"]
    assert len(parse_alertmanager(body)) == 2


def test_alertmanager_missing_fingerprint_is_derived_from_sorted_labels() -> None:
    labels = {"job": "node", "alertname": "A", "instance": "h:1"}
    (one,) = parse_alertmanager(am_body(fingerprint=None, labels=labels))
    (two,) = parse_alertmanager(am_body(fingerprint="", labels=dict(reversed(labels.items()))))
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"))
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert one.dedup_key == two.dedup_key == f"alertmanager:{expected}"
    (other,) = parse_alertmanager(am_body(fingerprint=None, labels={**labels, "job": "x"}))
    assert other.dedup_key != one.dedup_key


@pytest.mark.parametrize(
    ("annotations", "labels", "summary"),
    [
        ({"summary": "S", "description": "D"}, {"alertname": "A"}, "S"),
        ({"summary": "", "description": "D"}, {"alertname": "A"}, "D"),
        ({}, {"alertname": "A", "instance": "h:1"}, "A on h:1"),
        ({}, {"alertname": "A"}, "A"),
        ({}, {}, "alert f1"),
    ],
)
def test_alertmanager_summary_fallbacks(
    annotations: dict[str, str], labels: dict[str, str], summary: str
) -> None:
    (signal,) = parse_alertmanager(am_body(annotations=annotations, labels=labels))
    assert signal.summary == summary


def test_alertmanager_long_summary_is_clipped() -> None:
    (signal,) = parse_alertmanager(am_body(annotations={"summary": "y" * 5000}))
    assert signal.summary == "y" * 1024


def test_alertmanager_receiver_label_of_the_alert_wins() -> None:
    (signal,) = parse_alertmanager(am_body(labels={"alertname": "A", "receiver": "own"}))
    assert signal.labels["receiver"] == "own"
    assert signal.details["receiver"] == "r"


def test_alertmanager_empty_alerts_gives_no_signals() -> None:
    assert parse_alertmanager({"version": "4", "alerts": []}) == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "$"),
        ([], "$"),
        ("x", "$"),
        (42, "$"),
        ({}, "alerts"),
        ({"version": "4"}, "alerts"),
        ({"version": "4", "alerts": {}}, "alerts"),
        ({"version": "4", "alerts": None}, "alerts"),
        ({"version": "1", "alerts": []}, "version"),
        ({"version": 4, "alerts": []}, "version"),
        ({"alerts": [], "receiver": 5}, "receiver"),
        ({"alerts": [], "truncatedAlerts": "2"}, "truncatedAlerts"),
        ({"alerts": [], "truncatedAlerts": True}, "truncatedAlerts"),
        ({"alerts": [], "truncatedAlerts": -1}, "truncatedAlerts"),
        ({"alerts": [], "externalURL": []}, "externalURL"),
        ({"alerts": [], "groupKey": 1}, "groupKey"),
        ({"alerts": ["x"]}, "alerts[0]"),
        ({"alerts": [{"status": "firing"}, None]}, "alerts[1]"),
        ({"alerts": [{"status": "firing"}, {"status": "pending"}]}, "alerts[1].status"),
        ({"alerts": [{"status": "firing"}, {}]}, "alerts[1].status"),
        ({"alerts": [{"status": 1}]}, "alerts[0].status"),
        ({"alerts": [{"status": "firing", "labels": []}]}, "alerts[0].labels"),
        ({"alerts": [{"status": "firing", "labels": {"a": 1}}]}, "alerts[0].labels.a"),
        ({"alerts": [{"status": "firing", "annotations": "x"}]}, "alerts[0].annotations"),
        (
            {"alerts": [{"status": "firing", "annotations": {"summary": {}}}]},
            "alerts[0].annotations.summary",
        ),
        ({"alerts": [{"status": "firing", "fingerprint": 12}]}, "alerts[0].fingerprint"),
        ({"alerts": [{"status": "firing", "startsAt": 0}]}, "alerts[0].startsAt"),
        ({"alerts": [{"status": "firing", "endsAt": False}]}, "alerts[0].endsAt"),
        ({"alerts": [{"status": "firing", "generatorURL": {}}]}, "alerts[0].generatorURL"),
    ],
)
def test_alertmanager_errors_name_the_field(body: object, field: str) -> None:
    assert field_of(parse_alertmanager, body) == field


# ------------------------------------------------------------------ Grafana


def grafana_body(**alert: Any) -> dict[str, Any]:
    base = {"status": "firing", "labels": {"alertname": "A"}, "fingerprint": "f1"}
    base.update(alert)
    return {"version": "1", "orgId": 7, "title": "T", "alerts": [base]}


def test_grafana_org_id_from_alert_then_top_level_then_1() -> None:
    (own,) = parse_grafana(grafana_body(orgId=3))
    (top,) = parse_grafana(grafana_body())
    body = grafana_body()
    del body["orgId"]
    (default,) = parse_grafana(body)
    assert [own.dedup_key, top.dedup_key, default.dedup_key] == [
        "grafana:3:f1",
        "grafana:7:f1",
        "grafana:1:f1",
    ]


@pytest.mark.parametrize(
    ("annotations", "labels", "summary"),
    [
        ({"summary": "S"}, {"alertname": "A"}, "S"),
        ({"description": "D"}, {"alertname": "A"}, "D"),
        ({}, {"alertname": "A", "instance": "h"}, "A"),
        ({}, {}, "T"),
    ],
)
def test_grafana_summary_fallbacks(
    annotations: dict[str, str], labels: dict[str, str], summary: str
) -> None:
    (signal,) = parse_grafana(grafana_body(annotations=annotations, labels=labels))
    assert signal.summary == summary


def test_grafana_links_only_when_not_empty() -> None:
    (signal,) = parse_grafana(
        grafana_body(dashboardURL="http://g/d/1", panelURL="", silenceURL="http://g/s")
    )
    assert signal.details["dashboardURL"] == "http://g/d/1"
    assert signal.details["silenceURL"] == "http://g/s"
    assert "panelURL" not in signal.details


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "$"),
        ([], "$"),
        ("x", "$"),
        (42, "$"),
        ({}, "alerts"),
        ({"alerts": "x"}, "alerts"),
        ({"version": "4", "alerts": []}, "version"),
        ({"alerts": [], "orgId": "1"}, "orgId"),
        ({"alerts": [], "orgId": True}, "orgId"),
        ({"alerts": [], "title": 1}, "title"),
        ({"alerts": [], "message": []}, "message"),
        ({"alerts": [{"status": "alerting"}]}, "alerts[0].status"),
        ({"alerts": [{"status": "firing"}, {"status": "ok"}]}, "alerts[1].status"),
        ({"alerts": [{"status": "firing", "orgId": "1"}]}, "alerts[0].orgId"),
        ({"alerts": [{"status": "firing", "values": [1]}]}, "alerts[0].values"),
        ({"alerts": [{"status": "firing", "values": 3.5}]}, "alerts[0].values"),
        ({"alerts": [{"status": "firing", "valueString": 1}]}, "alerts[0].valueString"),
        ({"alerts": [{"status": "firing", "silenceURL": 1}]}, "alerts[0].silenceURL"),
        ({"alerts": [{"status": "firing", "dashboardURL": {}}]}, "alerts[0].dashboardURL"),
        ({"alerts": [{"status": "firing", "panelURL": []}]}, "alerts[0].panelURL"),
        ({"alerts": [{"status": "firing", "labels": {"x": None}}]}, "alerts[0].labels.x"),
    ],
)
def test_grafana_errors_name_the_field(body: object, field: str) -> None:
    assert field_of(parse_grafana, body) == field


# ------------------------------------------------------------------ PagerDuty


def pd_trigger(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": "rk",
        "event_action": "trigger",
        "payload": {"summary": "S", "source": "host", "severity": "warning"},
    }
    for key, value in changes.items():
        if key.startswith("payload_"):
            body["payload"][key.removeprefix("payload_")] = value
        else:
            body[key] = value
    return body


def test_pagerduty_trigger_without_dedup_key() -> None:
    (signal,) = parse_pagerduty(pd_trigger())
    assert signal.dedup_key is None
    assert signal.labels == {"severity": "warning", "source": "host"}
    assert signal.details == {}
    (blank,) = parse_pagerduty(pd_trigger(dedup_key=""))
    assert blank.dedup_key is None


def test_pagerduty_custom_details_may_be_any_json() -> None:
    (signal,) = parse_pagerduty(pd_trigger(payload_custom_details="plain text"))
    assert signal.details == {"custom_details": "plain text"}


def test_pagerduty_dedup_key_is_kept_as_is() -> None:
    (signal,) = parse_pagerduty(pd_trigger(dedup_key="k" * 255))
    assert signal.dedup_key == "k" * 255


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (None, "$"),
        ([], "$"),
        ("x", "$"),
        (42, "$"),
        ({}, "routing_key"),
        (pd_trigger(routing_key=""), "routing_key"),
        (pd_trigger(routing_key=123), "routing_key"),
        ({"routing_key": "rk"}, "event_action"),
        (pd_trigger(event_action="escalate"), "event_action"),
        (pd_trigger(event_action=None), "event_action"),
        (pd_trigger(event_action=["trigger"]), "event_action"),
        (pd_trigger(dedup_key=4812), "dedup_key"),
        (pd_trigger(dedup_key="k" * 256), "dedup_key"),
        ({"routing_key": "rk", "event_action": "acknowledge"}, "dedup_key"),
        ({"routing_key": "rk", "event_action": "resolve", "dedup_key": ""}, "dedup_key"),
        ({"routing_key": "rk", "event_action": "trigger"}, "payload"),
        (pd_trigger(payload="text"), "payload"),
        (pd_trigger(payload_summary=None), "payload.summary"),
        (pd_trigger(payload_summary=""), "payload.summary"),
        (pd_trigger(payload_summary=1), "payload.summary"),
        (pd_trigger(payload_summary="s" * 1025), "payload.summary"),
        (pd_trigger(payload_source=""), "payload.source"),
        (pd_trigger(payload_source=5), "payload.source"),
        (pd_trigger(payload_severity="high"), "payload.severity"),
        (pd_trigger(payload_severity=None), "payload.severity"),
        (pd_trigger(payload_component=1), "payload.component"),
        (pd_trigger(payload_group=[]), "payload.group"),
        (pd_trigger(payload_class={}), "payload.class"),
        (pd_trigger(payload_timestamp=1437122578), "payload.timestamp"),
        (pd_trigger(client=1), "client"),
        (pd_trigger(client_url=[]), "client_url"),
        (pd_trigger(links={}), "links"),
        (pd_trigger(links=["x"]), "links[0]"),
        (pd_trigger(images=[{}, 1]), "images[1]"),
    ],
)
def test_pagerduty_errors_name_the_field(body: object, field: str) -> None:
    assert field_of(parse_pagerduty, body) == field


# ------------------------------------------------------------------ fuzz: only IntakeError escapes

WRONG_VALUES: list[Any] = [None, [], "x", "", 42, -1, 1.5, True, {}, [{}], {"a": {}}]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key/index path inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from paths(item, (*prefix, index))


def replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    result = copy.deepcopy(body)
    target = result
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return result


PARSERS = {"api": parse_generic, "alertmanager": parse_alertmanager, "grafana": parse_grafana,
           "pagerduty": parse_pagerduty, "splunk": parse_splunk, "newrelic": parse_newrelic}


@pytest.mark.parametrize("parser", list(PARSERS.values()), ids=list(PARSERS))
@pytest.mark.parametrize("body", WRONG_VALUES, ids=repr)
def test_fuzz_wrong_bodies(parser: Parser, body: object) -> None:
    with pytest.raises(IntakeError) as caught:
        parser(body)
    if isinstance(body, dict):
        assert caught.value.field not in ("", "$")
    else:
        assert caught.value.field == "$"


@pytest.mark.parametrize("name", [*REQUEST_FIXTURES, "splunk-webhook-alert-action.json"])
def test_fuzz_every_field_of_every_fixture(name: str) -> None:
    original = load(name)
    count = 0
    for parser in PARSERS.values():
        for path in paths(original):
            for value in WRONG_VALUES:
                try:
                    signals = parser(replaced(original, path, value))
                except IntakeError as error:
                    assert isinstance(error.field, str) and error.field
                else:
                    assert all(isinstance(s, AlertSignal) for s in signals)
                count += 1
    assert count > 0


def test_splunk_webhook_alert_action() -> None:
    (signal,) = parse_splunk(load("splunk-webhook-alert-action.json"))
    assert signal.action == "trigger" and signal.source == "splunk"
    assert signal.summary == "Splunk alert: sourcetype=mongod, count=8"  # search_name is null in the capture
    assert signal.labels == {"sourcetype": "mongod", "count": "8", "app": "search", "owner": "admin"}
    assert signal.details["sid"] == "scheduler_admin_search_W2_at_14232356_132"
    assert signal.details["results_link"].startswith("http://web.example.local:8000/")
    # The same search with the same row is the same alert; another row is another one.
    again = load("splunk-webhook-alert-action.json")
    again["sid"] = "a later run"
    assert parse_splunk(again)[0].dedup_key == signal.dedup_key
    again["result"]["count"] = "9"
    assert parse_splunk(again)[0].dedup_key != signal.dedup_key


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "sid"), ({"sid": 5}, "sid"), ({"sid": "s", "result": []}, "result"),
     ({"sid": "s", "result": {"n": 1}}, "result.n"), ("x", "$")],
)
def test_splunk_errors_name_the_field(body: object, field: str) -> None:
    assert field_of(parse_splunk, body) == field


# ------------------------------------------------------------------ text that cannot be stored


@pytest.mark.parametrize(("body", "field"), [
    ({"summary": "\ud800"}, "summary"),
    ({"summary": "ok", "labels": {"a": "b", "c": "x\udfffy"}}, "labels.c"),
    ({"labels": {"\udc80": "v"}}, "labels"),
    ({"details": {"list": ["fine", {"deep": "\ud83d"}]}}, "details.list[1].deep"),
    (["ok", "\ud800"], "$[1]"),
    ("\udcff", "$"),
])
def test_check_text_names_the_first_field_with_a_lone_surrogate(body: object, field: str) -> None:
    from gateway.intake import check_text

    with pytest.raises(IntakeError) as caught:
        check_text(body)
    assert caught.value.field == field and "surrogate" in caught.value.message


def test_check_text_passes_real_text_and_other_json() -> None:
    from gateway.intake import check_text

    check_text({"summary": "disk \U0001f600 full", "n": 1, "f": 1.5, "b": None, "l": [True, {"k": "é"}]})
    check_text(load("alertmanager-v4-firing-2-alerts.json"))
