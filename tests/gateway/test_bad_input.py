"""Bad input gets a clear 4xx, nothing is half-written, and the server keeps serving."""

from __future__ import annotations

import pytest

from tests.support import AUTH, Gateway, payload


async def _no_alerts(gateway: Gateway) -> None:
    status, body = await gateway.get("/api/v1/alerts")
    assert status == 200 and body["alerts"] == []


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"summary": "x",}'])
async def test_malformed_json_is_400(gateway: Gateway, raw: bytes) -> None:
    for path in ("/api/v1/alerts", "/api/v1/integrations/alertmanager", "/api/v1/integrations/grafana",
                 "/api/v1/calls", "/api/v1/sms"):
        status, body = await gateway.post(path, data=raw)
        assert status == 400, (path, body)
        assert body["error"] == "malformed_json" and body["message"]
    await _no_alerts(gateway)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "summary"),
        ({"summary": ""}, "summary"),
        ({"summary": "x", "priority": "urgent"}, "priority"),
        ({"summary": "x", "labels": {"a": {"b": 1}}}, "labels.a"),
        ({"summary": "x", "labels": []}, "labels"),
        ({"summary": 5}, "summary"),
        ([], "$"),
    ],
)
async def test_missing_or_invalid_field_is_422_naming_it(gateway: Gateway, body: object, field: str) -> None:
    status, answer = await gateway.post("/api/v1/alerts", body)
    assert status == 422, answer
    assert answer["error"] == "invalid_field" and answer["details"]["field"] == field
    assert field in answer["message"]
    await _no_alerts(gateway)


async def test_invalid_alertmanager_payload_names_the_field(gateway: Gateway) -> None:
    body = payload("alertmanager-v4-firing-2-alerts.json")
    body["alerts"][1]["status"] = 7
    status, answer = await gateway.post("/api/v1/integrations/alertmanager", body)
    assert status == 422 and answer["details"]["field"] == "alerts[1].status"
    await _no_alerts(gateway)  # the valid first alert was not stored either


async def test_bad_phone_number_is_422_with_number_and_reason(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/calls", {"to": "+1 555", "message": "hi"})
    assert status == 422
    assert body["details"]["field"] == "to" and body["details"]["number"] == "+1 555"
    assert "too short" in body["message"] and "+1 555" in body["message"]
    status, body = await gateway.post("/api/v1/sms", {"to": "not a number", "message": "hi"})
    assert status == 422 and body["details"]["field"] == "to"
    await _no_alerts(gateway)


async def test_unknown_team_is_422(gateway: Gateway) -> None:
    for path, body in (
        ("/api/v1/alerts", {"summary": "x", "team": "nope"}),
        ("/api/v1/calls", {"team": "nope", "message": "x"}),
        ("/api/v1/sms", {"team": "nope", "message": "x"}),
    ):
        status, answer = await gateway.post(path, body)
        assert status == 422, (path, answer)
        assert answer["details"]["field"] == "team" and "nope" in answer["message"]
    status, answer = await gateway.get("/api/v1/oncall?team=nope")
    assert status == 422
    await _no_alerts(gateway)


async def test_body_over_one_mebibyte_is_413(gateway: Gateway) -> None:
    big = b'{"summary": "' + b"x" * (1024 * 1024) + b'"}'
    status, body = await gateway.post("/api/v1/alerts", data=big)
    assert status == 413 and body["error"] == "body_too_large"
    status, body = await gateway.post("/v2/enqueue", data=big, headers={})
    assert status == 413
    await _no_alerts(gateway)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="},
                                     {"Authorization": "test-token"}])
async def test_no_or_wrong_token_is_401(gateway: Gateway, headers: dict[str, str]) -> None:
    for path in ("/api/v1/alerts", "/api/v1/integrations/alertmanager", "/api/v1/integrations/grafana",
                 "/api/v1/calls", "/api/v1/sms", "/api/v1/alerts/1/acknowledge",
                 "/api/v1/sandbox/phones/+15550000001/answer"):
        status, body = await gateway.post(path, {"summary": "x"}, headers=headers)
        assert status == 401, path
        assert body["error"] == "unauthorized"
    for path in ("/api/v1/alerts", "/api/v1/alerts/1", "/api/v1/oncall", "/api/v1/sandbox/phones/+15550000001"):
        status, _ = await gateway.get(path, headers=headers)
        assert status == 401, path
    await _no_alerts(gateway)


async def test_health_needs_no_token(gateway: Gateway) -> None:
    assert await gateway.get("/healthz", headers={}) == (200, {"status": "ok"})
    status, body = await gateway.get("/readyz", headers={})
    assert status == 200 and body["status"] == "ready" and body["checks"]["store"] == "ok"


async def test_unknown_alert_and_path(gateway: Gateway) -> None:
    assert (await gateway.get("/api/v1/alerts/999"))[0] == 404
    assert (await gateway.get("/api/v1/alerts/abc"))[0] == 404
    assert (await gateway.post("/api/v1/alerts/999/acknowledge"))[0] == 404
    status, body = await gateway.get("/nope")
    assert status == 404 and body["error"] == "not_found"
    async with gateway.client.put("/api/v1/alerts", headers=AUTH) as resp:
        assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"


async def test_sandbox_phone_errors(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/sandbox/phones/+15550000001/answer")
    assert status == 409 and "no call is ringing" in body["message"]
    status, body = await gateway.post("/api/v1/sandbox/phones/+15550000001/press", {"digits": "x"})
    assert status == 422 and body["details"]["field"] == "digits"
    status, body = await gateway.get("/api/v1/sandbox/phones/12")
    assert status == 422 and body["details"]["field"] == "number"


async def test_server_keeps_serving_after_bad_input(gateway: Gateway) -> None:
    for raw in (b"{", b"[]", b"null", b'"x"'):
        await gateway.post("/api/v1/integrations/grafana", data=raw)
    status, body = await gateway.post("/api/v1/integrations/grafana", payload("grafana-webhook-firing.json"))
    assert status == 202, body
    assert len(body["alerts"]) == 2 and all(a["action"] == "trigger" for a in body["alerts"])
    status, body = await gateway.post("/api/v1/integrations/grafana", payload("grafana-webhook-resolved.json"))
    assert status in (200, 202), body


async def test_splunk_webhook_with_the_token_in_the_url(gateway: Gateway) -> None:
    body = payload("splunk-webhook-alert-action.json")
    status, answer = await gateway.post("/api/v1/integrations/splunk?token=test-token", body, headers={})
    assert status == 202, answer
    alert = await gateway.alert(answer["alerts"][0]["id"])
    assert alert["source"] == "splunk" and alert["summary"] == "Splunk alert: sourcetype=mongod, count=8"
    status, answer = await gateway.post("/api/v1/integrations/splunk?token=test-token", body, headers={})
    assert status == 200  # the same search and row while open: no new page
    status, _ = await gateway.post("/api/v1/integrations/splunk?token=wrong", body, headers={})
    assert status == 401
    # Only Splunk's endpoint takes a token in the URL.
    status, _ = await gateway.post("/api/v1/alerts?token=test-token", {"summary": "x"}, headers={})
    assert status == 401
