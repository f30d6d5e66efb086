"""POST /v2/enqueue behaves like PagerDuty's Events API v2."""

from __future__ import annotations

from tests.support import ALICE, CAROL, Gateway, eventually, payload


def _pd(name: str, routing_key: str = "test-token", dedup_key: str | None = None) -> dict:
    body = payload(name)
    body["routing_key"] = routing_key
    if dedup_key is not None:
        body["dedup_key"] = dedup_key
    return body


async def test_trigger_acknowledge_resolve_by_dedup_key(gateway: Gateway) -> None:
    # PagerDuty's documented acknowledge/resolve examples carry "dedupkeyhere", its trigger
    # "samplekeyhere": point them at the same incident.
    status, body = await gateway.post("/v2/enqueue", _pd("pagerduty-v2-trigger.json"), headers={})
    assert status == 202, body
    assert body["status"] == "success" and body["message"] == "Event processed"
    assert body["dedup_key"] == "samplekeyhere"
    alert_id = body["id"]
    alert = await gateway.alert(alert_id)
    assert alert["source"] == "pagerduty" and alert["status"] == "triggered"
    assert alert["summary"] == payload("pagerduty-v2-trigger.json")["payload"]["summary"]
    await gateway.ringing(ALICE)

    acknowledge = _pd("pagerduty-v2-acknowledge.json", dedup_key="samplekeyhere")
    status, body = await gateway.post("/v2/enqueue", acknowledge, headers={})
    assert status == 202 and body["dedup_key"] == "samplekeyhere"
    alert = await gateway.alert(alert_id)
    assert alert["status"] == "acknowledged"

    resolve = _pd("pagerduty-v2-resolve.json", dedup_key="samplekeyhere")
    status, body = await gateway.post("/v2/enqueue", resolve, headers={})
    assert status == 202
    assert (await gateway.alert(alert_id))["status"] == "resolved"


async def test_zabbix_trigger_and_resolve(gateway: Gateway) -> None:
    status, body = await gateway.post("/v2/enqueue", _pd("zabbix-pagerduty-v2-trigger.json"), headers={})
    assert status == 202 and body["dedup_key"] == "4812"
    status, _ = await gateway.post("/v2/enqueue", _pd("zabbix-pagerduty-v2-resolve.json"), headers={})
    assert status == 202
    assert (await gateway.alert(body["id"]))["status"] == "resolved"


async def test_trigger_without_dedup_key_gets_one_that_resolves_it(gateway: Gateway) -> None:
    trigger = _pd("pagerduty-v2-trigger-openapi-example.json")
    trigger.pop("dedup_key", None)
    status, body = await gateway.post("/v2/enqueue", trigger, headers={})
    assert status == 202 and body["dedup_key"]
    resolve = {"routing_key": "test-token", "event_action": "resolve", "dedup_key": body["dedup_key"]}
    status, _ = await gateway.post("/v2/enqueue", resolve, headers={})
    assert status == 202
    assert (await gateway.alert(body["id"]))["status"] == "resolved"


async def test_route_routing_key_selects_the_route(gateway: Gateway) -> None:
    status, body = await gateway.post(
        "/v2/enqueue", _pd("pagerduty-v2-trigger.json", "dba-routing-key-0000000000000000"), headers={}
    )
    assert status == 202, body
    alert = await gateway.alert(body["id"])
    assert alert["team"] == "dba" and alert["route"] == "dba"
    await eventually(lambda: _has_sms(gateway, CAROL))


async def _has_sms(gateway: Gateway, number: str) -> bool:
    return bool((await gateway.phone(number))["sms"])


async def test_dedup_keys_are_scoped_per_routing_key(gateway: Gateway) -> None:
    a = await gateway.post("/v2/enqueue", _pd("pagerduty-v2-trigger.json"), headers={})
    b = await gateway.post("/v2/enqueue", _pd("pagerduty-v2-trigger.json", "dba-routing-key-0000000000000000"),
                           headers={})
    assert a[0] == b[0] == 202 and a[1]["id"] != b[1]["id"]


async def test_unknown_routing_key_is_401_and_stores_nothing(gateway: Gateway) -> None:
    status, body = await gateway.post("/v2/enqueue", _pd("pagerduty-v2-trigger.json", "nope"), headers={})
    assert status == 401 and body["status"] == "unauthorized"
    _, listing = await gateway.get("/api/v1/alerts")
    assert listing["alerts"] == []


async def test_invalid_event_is_400_in_pagerduty_shape(gateway: Gateway) -> None:
    bad = _pd("pagerduty-v2-trigger.json")
    del bad["payload"]["severity"]
    status, body = await gateway.post("/v2/enqueue", bad, headers={})
    assert status == 400
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert any("payload.severity" in e for e in body["errors"])
    status, body = await gateway.post("/v2/enqueue", data=b"{not json", headers={})
    assert status == 400 and "not valid JSON" in body["errors"][0]
    _, listing = await gateway.get("/api/v1/alerts")
    assert listing["alerts"] == []
