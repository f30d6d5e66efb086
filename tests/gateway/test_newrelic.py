"""POST /api/v1/integrations/newrelic takes a New Relic workflow's webhook (its default payload template)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.intake_newrelic import parse_newrelic
from gateway.signals import IntakeError
from tests.support import ALICE, Gateway, payload

URL = "/api/v1/integrations/newrelic"
FIXTURES = ["newrelic-workflow-activated.json", "newrelic-workflow-created.json", "newrelic-workflow-closed.json",
            "newrelic-workflow-acknowledged-user-action.json", "newrelic-workflow-custom-owner.json",
            "newrelic-workflow-default-template.json"]


def _issue(name: str = "newrelic-workflow-activated.json", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(payload(name))
    body.update(changes)
    return body


async def _alerts(gateway: Gateway) -> list[dict[str, Any]]:
    _, listing = await gateway.get("/api/v1/alerts")
    return list(listing["alerts"])


@pytest.mark.parametrize("name", FIXTURES)
async def test_every_fixture_is_accepted_as_it_is(gateway: Gateway, name: str) -> None:
    status, body = await gateway.post(URL, payload(name))
    assert status in (200, 202), body
    [result] = body["alerts"]
    assert result["dedup_key"] == f"newrelic:{payload(name)['id']}"


async def test_trigger_acknowledge_and_close_by_issue_id(gateway: Gateway) -> None:
    issue = payload("newrelic-workflow-activated.json")
    status, body = await gateway.post(URL, issue)
    assert status == 202, body
    [result] = body["alerts"]
    alert = await gateway.alert(result["id"])
    assert alert["source"] == "newrelic" and alert["status"] == "triggered" and alert["priority"] == "high"
    assert alert["summary"] == issue["title"]
    assert alert["dedup_key"] == "newrelic:c5faa7e6-7b54-402d-af79-f99601e0278c"
    assert alert["labels"] == {"priority": "critical", "policy": "Golden Signals", "condition": "Zulip Server Low "
                               "Storage", "entity": "zulip_app", "origin": "newrelic", "workflow": "testWorkflow"}
    assert alert["details"]["issueUrl"] == issue["issueUrl"]
    await gateway.ringing(ALICE)

    # The same issue notified again (an incident added, a priority change): one alert, nobody paged again.
    status, body = await gateway.post(URL, _issue(trigger="INCIDENT_ADDED", totalIncidents=2))
    assert status == 200 and body["alerts"][0]["id"] == result["id"]
    assert len(await _alerts(gateway)) == 1

    # The default template's notice of an acknowledgement says only USER_ACTION: it changes nothing.
    status, body = await gateway.post(URL, _issue(trigger="USER_ACTION"))
    assert status == 200 and (await gateway.alert(result["id"]))["status"] == "triggered"

    # A template with {{ json acknowledgedBy }} acknowledges; so would state ACKNOWLEDGED.
    status, body = await gateway.post(URL, _issue(trigger="USER_ACTION", acknowledgedBy="Pieter Cardillo Kwok"))
    assert status == 200 and body["alerts"][0]["action"] == "acknowledge"
    alert = await gateway.alert(result["id"])
    assert alert["status"] == "acknowledged"

    status, body = await gateway.post(URL, _issue(state="CLOSED", trigger="INCIDENT_CLOSED"))
    assert status == 200 and body["alerts"][0]["action"] == "resolve"
    assert (await gateway.alert(result["id"]))["status"] == "resolved"
    assert len(await _alerts(gateway)) == 1


async def test_state_acknowledged_acknowledges(gateway: Gateway) -> None:
    _, body = await gateway.post(URL, payload("newrelic-workflow-created.json"))
    alert_id = body["alerts"][0]["id"]
    status, _ = await gateway.post(URL, _issue("newrelic-workflow-created.json", state="ACKNOWLEDGED"))
    assert status == 200 and (await gateway.alert(alert_id))["status"] == "acknowledged"


async def test_a_close_for_an_issue_never_seen_stores_nothing(gateway: Gateway) -> None:
    status, body = await gateway.post(URL, payload("newrelic-workflow-closed.json"))
    assert status == 200 and body["alerts"][0]["id"] is None
    assert await _alerts(gateway) == []


async def test_priority_and_labels_route_the_alert(gateway: Gateway) -> None:
    # MEDIUM and LOW page as low priority; a customized template's labels pick the route (team="dba").
    issue = _issue(id="0ea2df1c-0000", priority="MEDIUM", labels={"team": ["dba"], "env": "prod"})
    status, body = await gateway.post(URL, issue)
    assert status == 202, body
    alert = await gateway.alert(body["alerts"][0]["id"])
    assert (alert["priority"], alert["team"], alert["route"]) == ("low", "dba", "dba")
    assert alert["labels"]["team"] == "dba" and alert["labels"]["priority"] == "medium"


def test_variant_field_names_of_other_templates_are_read() -> None:
    [signal] = parse_newrelic({"issueId": "abc", "issuePageUrl": "https://one.newrelic.com/x", "severity": "LOW",
                               "state": "activated", "conditionName": "High CPU", "policyName": "Golden Signals",
                               "impactedEntities": [{"name": "checkout", "guid": "MXxBUE18"}],
                               "source": ["newrelic"], "tags": {"service": "checkout"}})
    assert (signal.dedup_key, signal.action, signal.priority, signal.summary) == ("newrelic:abc", "trigger", "low",
                                                                                 "High CPU")
    assert signal.labels == {"service": "checkout", "condition": "High CPU", "policy": "Golden Signals",
                             "entity": "checkout", "origin": "newrelic", "priority": "low"}
    assert signal.details["issuePageUrl"] == "https://one.newrelic.com/x"
    [closed] = parse_newrelic({"id": 42, "state": "DEACTIVATED"})
    assert (closed.dedup_key, closed.action) == ("newrelic:42", "resolve")


@pytest.mark.parametrize(("body", "field"), [
    ({"state": "ACTIVATED"}, "id"),
    ({"id": " ", "state": "ACTIVATED"}, "id"),
    ({"id": "a"}, "state"),
    ({"id": "a", "state": "OPEN"}, "state"),
    ({"id": "a", "state": "ACTIVATED", "priority": "P1"}, "priority"),
    ({"id": "a", "state": "ACTIVATED", "severity": "urgent"}, "severity"),
    ({"id": ["a"], "state": "ACTIVATED"}, "id"),
    ({"id": "a", "state": "ACTIVATED", "title": {"x": 1}}, "title"),
    ({"id": "a", "state": "ACTIVATED", "impactedEntities": 5}, "impactedEntities"),
    ({"id": "a", "state": "ACTIVATED", "alertPolicyNames": [["nested"]]}, "alertPolicyNames[0]"),
    ({"id": "a", "state": "ACTIVATED", "labels": ["team"]}, "labels"),
    ({"id": "a", "state": "ACTIVATED", "labels": {"team": {"x": 1}}}, "labels.team"),
    ({"id": "a" * 300, "state": "ACTIVATED"}, "id"),
    ({"id": "a", "state": "ACTIVATED", "title": "\ud800"}, "title"),
])
def test_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(IntakeError) as caught:
        parse_newrelic(body)
    assert caught.value.field == field


async def test_malformed_payloads_get_a_4xx_and_store_nothing(gateway: Gateway) -> None:
    for bad in ({"state": "ACTIVATED", "title": "no id"}, _issue(state="FIRING"), _issue(priority="URGENT"),
                [payload("newrelic-workflow-activated.json")], "ACTIVATED"):
        status, body = await gateway.post(URL, bad)
        assert status == 422, (bad, body)
        assert body["error"] == "invalid_field" and body["details"]["field"]
    status, body = await gateway.post(URL, data=b'{"id": "x", "state": ')
    assert status == 400 and body["error"] == "malformed_json"
    status, body = await gateway.post(URL, payload("newrelic-workflow-activated.json"), headers={})
    assert status == 401
    status, body = await gateway.post(URL, payload("newrelic-workflow-activated.json"),
                                      headers={"Authorization": "Bearer wrong"})
    assert status == 401
    assert await _alerts(gateway) == []


async def test_the_default_template_of_a_correlated_issue(gateway: Gateway) -> None:
    """Two incidents of one condition: accumulations list the condition twice; the label names it once."""
    issue = payload("newrelic-workflow-default-template.json")
    status, body = await gateway.post(URL, issue)
    assert status == 202, body
    alert = await gateway.alert(body["alerts"][0]["id"])
    assert (alert["summary"], alert["priority"], alert["status"]) == (issue["title"], "high", "triggered")
    assert alert["labels"] == {"priority": "high", "policy": "Checkout,Golden Signals", "condition": "Memory high",
                               "entity": "checkout-1,checkout-2", "origin": "newrelic",
                               "workflow": "Checkout on-call"}
    assert {k: alert["details"][k] for k in ("totalIncidents", "isCorrelated", "trigger", "createdAt")} == {
        "totalIncidents": 2, "isCorrelated": True, "trigger": "INCIDENT_ADDED", "createdAt": 1733476802114}
