"""Bad input gets a clear 4xx, nothing is half-written, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.app import MaskingAccessLogger
from gateway.web.errors import error_middleware
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


# ------------------------------------------------------------ hostile input: never a 5xx

JSON_POSTS = ("/api/v1/alerts", "/api/v1/integrations/alertmanager", "/api/v1/integrations/grafana",
              "/api/v1/integrations/splunk", "/api/v1/calls", "/api/v1/sms", "/api/v1/alerts/1/acknowledge",
              "/api/v1/alerts/1/resolve", "/api/v1/alerts/1/escalate", "/api/v1/sandbox/phones/+15550000001/press",
              "/api/v1/sandbox/phones/+15550000001/reply", "/api/v1/sandbox/phones/+15550000001/dial")
TOKEN_GETS = ("/api/v1/alerts", "/api/v1/alerts/1", "/api/v1/oncall", "/api/v1/queues", "/metrics",
              "/api/v1/sandbox/phones", "/api/v1/sandbox/phones/+15550000001")


async def _raw(gateway: Gateway, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` byte for byte (the HTTP client cannot send non-UTF-8 headers); status and body."""
    server = gateway.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _request(method: str, path: str, headers: bytes = b"", body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + headers + b"\r\n" + body


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff\r\n", b"Authorization: \xc3\x28 x\r\n",
                                    b"Authorization: Bearer test-token\xed\xa0\x80\r\n"])
async def test_non_utf8_authorization_is_401_everywhere(gateway: Gateway, header: bytes) -> None:
    for path in (*JSON_POSTS, "/v2/enqueue"):
        status, body = await _raw(gateway, _request("POST", path, header, b'{"summary": "x"}'))
        assert status == 401, (path, body)
    for path in TOKEN_GETS:
        status, body = await _raw(gateway, _request("GET", path, header))
        assert status == 401, (path, body)
    await _no_alerts(gateway)


async def test_deep_nesting_is_400_after_auth_and_401_before(gateway: Gateway) -> None:
    deep = b"[" * 100_000
    for path in JSON_POSTS:
        status, body = await gateway.post(path, data=deep)
        assert status == 400 and body["error"] == "malformed_json", (path, body)
        assert body["details"]["reason"] == "too_deep"
        # Without a token nothing is parsed at all: the answer is 401, whatever the body.
        status, body = await gateway.post(path, data=deep, headers={})
        assert status == 401, (path, body)
    # 65 levels (our bound is 64) is refused although json.loads would take it; 64 is fine.
    status, body = await gateway.post("/api/v1/alerts", {"summary": "x", "details": {"n": _nested(62)}})
    assert status == 202, body
    status, body = await gateway.post("/api/v1/alerts", {"summary": "y", "details": {"n": _nested(63)}})
    assert status == 400 and body["details"] == {"reason": "too_deep", "max_depth": 64}
    # /v2/enqueue must parse to find the routing key: bounded, it answers PagerDuty's 400, not 500.
    status, body = await gateway.post("/v2/enqueue", data=deep, headers={})
    assert status == 400 and body["status"] == "invalid event"
    _, listing = await gateway.get("/api/v1/alerts")
    assert [a["summary"] for a in listing["alerts"]] == ["x"]


def _nested(levels: int) -> object:
    value: object = "bottom"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("raw", [b'{"summary": NaN}', b'{"summary": "x", "details": {"n": Infinity}}',
                                 b'{"summary": "x", "details": {"n": 1e999}}',
                                 b'{"summary": "x", "details": {"n": ' + b"9" * 5000 + b"}}",
                                 b'\xef\xbb\xbf{"summary": "x"}', b'\xff\xfe{\x00}\x00'])
async def test_json_that_python_would_half_accept_is_400(gateway: Gateway, raw: bytes) -> None:
    status, body = await gateway.post("/api/v1/alerts", data=raw)
    assert status == 400 and body["error"] == "malformed_json", body
    await _no_alerts(gateway)


async def test_lone_surrogate_routing_key_is_401_not_500(gateway: Gateway) -> None:
    status, body = await gateway.post("/v2/enqueue", data=b'{"routing_key": "\\ud800", "event_action": "trigger"}',
                                      headers={})
    assert status == 401 and body["status"] == "unauthorized", body
    # With a good key, a lone surrogate elsewhere is PagerDuty's 400 naming the field.
    event = payload("pagerduty-v2-trigger.json")
    event["routing_key"] = "dba-routing-key-0000000000000000"
    raw = json.dumps(event).replace('"summary": "', '"summary": "\\udfff', 1).encode()
    status, body = await gateway.post("/v2/enqueue", data=raw, headers={})
    assert status == 400 and "payload.summary" in body["errors"][0], body
    await _no_alerts(gateway)


@pytest.mark.parametrize(("path", "raw", "field"), [
    ("/api/v1/alerts", b'{"summary": "disk \\ud800 full"}', "summary"),
    ("/api/v1/alerts", b'{"summary": "x", "dedup_key": "\\udc00"}', "dedup_key"),
    ("/api/v1/alerts", b'{"summary": "x", "labels": {"\\ud800": "v"}}', "labels"),
    ("/api/v1/alerts", b'{"summary": "x", "labels": {"k": "\\ud800"}}', "labels.k"),
    ("/api/v1/alerts", b'{"summary": "x", "details": {"a": [1, {"b": "\\udbff"}]}}', "details.a[1].b"),
    ("/api/v1/alerts", b'{"summary": "x", "team": "\\ud800"}', "team"),
    ("/api/v1/integrations/alertmanager",
     b'{"version": "4", "alerts": [{"status": "firing", "labels": {"x": "\\ud800"}}]}', "alerts[0].labels.x"),
    ("/api/v1/calls", b'{"to": "+15550000001", "message": "hi \\ud800"}', "message"),
    ("/api/v1/sms", b'{"team": "sre", "message": "\\udfff"}', "message"),
    ("/api/v1/sandbox/phones/+15550000001/reply", b'{"text": "ack \\ud800"}', "text"),
])
async def test_lone_surrogates_are_422_naming_the_field(gateway: Gateway, path: str, raw: bytes, field: str) -> None:
    status, body = await gateway.post(path, data=raw)
    assert status == 422 and body["error"] == "invalid_field" and body["details"]["field"] == field, body
    await _no_alerts(gateway)


async def test_lone_surrogate_in_by_changes_nothing(gateway: Gateway) -> None:
    status, created = await gateway.post("/api/v1/alerts", {"summary": "x"})
    assert status == 202
    status, body = await gateway.post(f"/api/v1/alerts/{created['id']}/acknowledge", data=b'{"by": "\\ud800"}')
    assert status == 422 and body["details"]["field"] == "by", body
    assert (await gateway.alert(created["id"]))["status"] == "triggered"
    # A surrogate *pair* is a real character and is fine.
    status, body = await gateway.post(f"/api/v1/alerts/{created['id']}/acknowledge", data=b'{"by": "\\ud83d\\ude00"}')
    assert status == 200 and body["acknowledged_by"] == "\U0001f600", body


@pytest.mark.parametrize("raw_id", ["%C2%B2", "%D9%A1", "%EF%BC%91", "9223372036854775808", "1" * 40, "-1", "+1",
                                    "%201", "1.0"])
async def test_ids_are_ascii_digits_in_range_else_404(gateway: Gateway, raw_id: str) -> None:
    status, created = await gateway.post("/api/v1/alerts", {"summary": "x"})
    assert status == 202 and created["id"] == 1
    status, body = await gateway.get(f"/api/v1/alerts/{raw_id}")
    assert status == 404 and body["error"] == "not_found", body
    for action in ("acknowledge", "resolve", "escalate"):
        status, body = await gateway.post(f"/api/v1/alerts/{raw_id}/{action}")
        assert status == 404, (action, body)
    # Arabic-Indic one (and fullwidth one) are not alert 1: it is still triggered and was not escalated.
    alert = await gateway.alert(1)
    assert alert["status"] == "triggered" and alert["priority"] == "low"
    assert [t["kind"] for t in alert["timeline"]].count("escalated") == 0
    assert (await gateway.get("/api/v1/alerts/9223372036854775807"))[0] == 404  # the largest id: simply unknown


@pytest.mark.parametrize("query", ["limit=%C2%B2", "limit=%D9%A1", "limit=0", "limit=1001", "limit=-1",
                                   "before_id=9223372036854775808", "before_id=" + "9" * 30, "before_id=%D9%A1",
                                   "before_id=0", "limit="])
async def test_list_numbers_are_ascii_digits_in_range_else_422(gateway: Gateway, query: str) -> None:
    status, body = await gateway.get(f"/api/v1/alerts?{query}")
    assert status == 422 and body["error"] == "invalid_field", body
    assert body["details"]["field"] == query.split("=")[0]
    status, body = await gateway.get("/api/v1/alerts?limit=1000&before_id=9223372036854775807")
    assert status == 200 and body == {"alerts": []}


async def test_unhandled_error_log_masks_phone_numbers(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    request = make_mocked_request("POST", "/api/v1/sandbox/phones/+15550000101/reply")
    with caplog.at_level(logging.ERROR, logger="gateway.web.errors"):
        response = await error_middleware(request, broken)
    assert response.status == 500
    assert "+15550000101" not in caplog.text and "0000101" not in caplog.text
    assert "POST /api/v1/sandbox/phones/+1555***0101/reply" in caplog.text


def test_access_log_masks_phone_numbers(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.access")
    access = MaskingAccessLogger(logger, "")
    with caplog.at_level(logging.INFO, logger="tests.access"):
        for path in ("/api/v1/sandbox/phones/+15550000101/answer", "/api/v1/sandbox/phones/%2B15550000101",
                     "/api/v1/sandbox/phones/5550000101"):
            access.log(make_mocked_request("POST", path), web.Response(status=200), 0.001)
    assert "0000101" not in caplog.text
    assert caplog.text.count("***0101") == 3


SECRET = "Jq3Zr0bQm1Vw8Kf2Lx9Tn4Hs7Pd5Cy6Ua0Ge3Ri1Ok8"


async def test_neither_log_writes_a_calendar_feeds_secret(caplog: pytest.LogCaptureFixture) -> None:
    """A feed is authenticated by the secret in its URL alone: the access log and the 500 line redact it."""
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    access = MaskingAccessLogger(logging.getLogger("tests.access"), "")
    with caplog.at_level(logging.INFO):
        for path in (f"/calendar/{SECRET}.ics", f"/calendar/{SECRET}", f"/calendar/{SECRET}.ics/more"):
            access.log(make_mocked_request("GET", path), web.Response(status=200), 0.001)
        response = await error_middleware(make_mocked_request("GET", f"/calendar/{SECRET}.ics"), broken)
    assert response.status == 500
    assert SECRET not in caplog.text and SECRET[:8] not in caplog.text, caplog.text
    assert caplog.text.count("GET /calendar/<redacted>.ics") == 3  # two access lines and the 500 line
    assert "GET /calendar/<redacted>/more" not in caplog.text and "/calendar/<redacted>.ics/more" in caplog.text


@pytest.mark.parametrize("path", ["/api/v1/alerts", "/nope", "/api/v1/alerts/1", "/healthz"])
async def test_a_non_utf8_expect_header_is_417_not_500(gateway: Gateway, path: str) -> None:
    # aiohttp answers Expect before any middleware, and its own answer echoes the header: 500 on \xff.
    status, body = await _raw(gateway, _request("POST", path, b"Expect: \xff\r\n", b'{"summary": "x"}'))
    assert status == 417 and json.loads(body)["error"] == "expectation_failed", body
    await _no_alerts(gateway)


async def test_expect_100_continue_still_works(gateway: Gateway) -> None:
    status, body = await _raw(gateway, _request("POST", "/api/v1/alerts", b"Authorization: Bearer test-token\r\n"
                                                b"Content-Type: application/json\r\nExpect: 100-continue\r\n",
                                                b'{"summary": "x"}'))
    assert status == 100  # the interim answer comes first; the alert is accepted after it
    assert b"HTTP/1.1 202" in body


async def test_unknown_method_is_405_with_allow_and_unknown_path_404(gateway: Gateway) -> None:
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        async with gateway.client.request(method, "/api/v1/alerts", headers={}) as resp:
            assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
            assert set(resp.headers["Allow"].split(",")) >= {"GET", "POST"}
    async with gateway.client.get("/api/v1/nope/deeper", headers={}) as resp:
        assert resp.status == 404 and (await resp.json())["error"] == "not_found"


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00+14:00",
                                "0001-01-01T00:00:00-14:00", "1969-12-31T23:59:59Z", "9000-01-01T00:00:01Z"])
async def test_oncall_at_the_ends_of_the_calendar_is_422(gateway: Gateway, at: str) -> None:
    status, body = await gateway.get(f"/api/v1/oncall?at={urllib.parse.quote(at)}")
    assert status == 422 and body["details"]["field"] == "at", body
    status, body = await gateway.get(f"/api/v1/oncall?at={urllib.parse.quote('8999-12-31T23:59:59+14:00')}")
    assert status == 200, body


async def test_brackets_inside_strings_are_not_nesting(gateway: Gateway) -> None:
    for summary in ("[" * 200, '\\"' + "{" * 200, "\\" * 3 + "[" * 100 + '"' + "]" * 100):
        status, body = await gateway.post("/api/v1/alerts", {"summary": summary, "details": {"a": [[[1]]]}})
        assert status == 202, body
    many = {"summary": "many", "details": {"rows": [[i] for i in range(20_000)]}}  # wide is fine, only deep is not
    status, body = await gateway.post("/api/v1/alerts", many)
    assert status == 202, body
