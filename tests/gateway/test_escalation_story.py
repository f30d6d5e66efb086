"""The whole story through the real app, a real SQLite file and the sandbox phones."""

from __future__ import annotations

from tests.support import ALICE, BOB, Gateway, eventually, payload


async def test_alertmanager_alert_rings_primary_then_secondary_who_acknowledges(gateway: Gateway) -> None:
    body = payload("alertmanager-v4-firing-truncated.json")
    body["alerts"][0]["labels"]["team"] = "sre"  # route it to the sre team
    status, answer = await gateway.post("/api/v1/integrations/alertmanager", body)
    assert status == 202, answer
    alert_id = answer["alerts"][0]["id"]

    alice = await gateway.ringing(ALICE)
    assert alice["call"]["from"] == "+15559990000"
    assert (await gateway.phone(BOB))["call"] is None

    # Nobody answers: after the 20 s step the call rings out and Bob's phone rings.
    await gateway.clock.advance(20)
    bob = await gateway.ringing(BOB)
    assert (await gateway.phone(ALICE))["call"]["state"] == "ended"

    status, bob = await gateway.post(f"/api/v1/sandbox/phones/{BOB}/answer")
    assert status == 200, bob
    assert "VolumeFillingUp" in bob["call"]["hearing"] or "vol-a" in bob["call"]["hearing"] or bob["call"]["hearing"]
    assert "Press 1 to acknowledge" in bob["call"]["hearing"]
    assert bob["call"]["listening_for_keys"] is True

    status, bob = await gateway.post(f"/api/v1/sandbox/phones/{BOB}/press", {"digits": "1"})
    assert status == 200, bob
    alert = await gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "bob"
    assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "no_answer"), ("bob", "acknowledged")]
    assert any("acknowledged by Bob" in t["message"] for t in alert["timeline"])

    # Nobody is paged again, however long we wait.
    await gateway.clock.advance(3600)
    assert (await gateway.phone(ALICE))["calls"] == 1
    assert (await gateway.phone(BOB))["calls"] == 1
    assert len((await gateway.alert(alert_id))["pages"]) == 2


async def test_press_2_passes_it_on_at_once(gateway: Gateway) -> None:
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    assert status == 202, answer
    await gateway.ringing(ALICE)
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/press", {"digits": "2"})
    # No clock movement: declining moves to the next step immediately.
    await gateway.ringing(BOB)
    alert = await gateway.alert(answer["id"])
    assert alert["status"] == "triggered"
    assert alert["pages"][0]["outcome"] == "declined"


async def test_rejected_call_moves_on_at_once(gateway: Gateway) -> None:
    _, _answer = await gateway.post("/api/v1/alerts", {"summary": "db down", "team": "sre"})
    await gateway.ringing(ALICE)
    status, _ = await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/reject")
    assert status == 200
    await gateway.ringing(BOB)


async def test_resolved_payload_stops_a_running_escalation(gateway: Gateway) -> None:
    firing = payload("alertmanager-v4-firing-2-alerts.json")
    status, answer = await gateway.post("/api/v1/integrations/alertmanager", firing)
    assert status == 202
    ids = [a["id"] for a in answer["alerts"]]
    assert len(ids) == 2
    await eventually(lambda: _calls(gateway, ALICE, 2))

    status, answer = await gateway.post("/api/v1/integrations/alertmanager",
                                        payload("alertmanager-v4-resolved-2-alerts.json"))
    assert status == 200, answer
    assert [a["status"] for a in answer["alerts"]] == ["resolved", "resolved"]
    assert [a["id"] for a in answer["alerts"]] == ids
    # The ringing calls are hung up and the secondary is never called.
    for alert_id in ids:
        alert = await gateway.alert_where(alert_id, lambda a: all(p["status"] == "done" for p in a["pages"]))
        assert alert["status"] == "resolved"
        assert [p["outcome"] for p in alert["pages"]] == ["canceled"]
    await gateway.clock.advance(120)
    assert (await gateway.phone(BOB))["calls"] == 0


async def _calls(gateway: Gateway, number: str, count: int) -> bool:
    return (await gateway.phone(number))["calls"] == count


async def test_same_dedup_key_while_open_answers_200_and_pages_nobody_again(gateway: Gateway) -> None:
    first = await gateway.post("/api/v1/alerts", {"summary": "x", "team": "sre", "dedup_key": "k1"})
    second = await gateway.post("/api/v1/alerts", {"summary": "x again", "team": "sre", "dedup_key": "k1"})
    assert first[0] == 202 and second[0] == 200
    assert first[1]["id"] == second[1]["id"]
    await gateway.ringing(ALICE)
    assert (await gateway.phone(ALICE))["calls"] == 1
    # Once resolved, the same key opens a new alert.
    await gateway.post(f"/api/v1/alerts/{first[1]['id']}/resolve")
    third = await gateway.post("/api/v1/alerts", {"summary": "x", "team": "sre", "dedup_key": "k1"})
    assert third[0] == 202 and third[1]["id"] != first[1]["id"]


async def test_policy_exhausted_leaves_the_alert_triggered_and_says_so(gateway: Gateway) -> None:
    _, answer = await gateway.post("/api/v1/alerts", {"summary": "nobody home", "team": "sre"})
    await gateway.ringing(ALICE)
    await gateway.clock.advance(20)
    await gateway.ringing(BOB)
    await gateway.clock.advance(20)
    alert = await gateway.alert_where(answer["id"], lambda a: a["escalation"]["running"] is False)
    assert alert["status"] == "triggered"
    assert any("exhausted" in t["message"] for t in alert["timeline"])
    # An operator can start the policy again.
    status, _ = await gateway.post(f"/api/v1/alerts/{answer['id']}/escalate")
    assert status == 200
    await eventually(lambda: _calls(gateway, ALICE, 2))


async def test_operator_acknowledge_cancels_the_ringing_call(gateway: Gateway) -> None:
    _, answer = await gateway.post("/api/v1/alerts", {"summary": "cpu", "team": "sre"})
    await gateway.ringing(ALICE)
    status, body = await gateway.post(f"/api/v1/alerts/{answer['id']}/acknowledge", {"by": "ops-console"})
    assert status == 200 and body["status"] == "acknowledged" and body["acknowledged_by"] == "ops-console"
    phone = await gateway.phone(ALICE)
    assert phone["call"]["state"] == "ended"
    await gateway.clock.advance(100)
    assert (await gateway.phone(BOB))["calls"] == 0
    # Acknowledging twice is harmless; escalating a closed alert is a conflict.
    status, body = await gateway.post(f"/api/v1/alerts/{answer['id']}/acknowledge")
    assert status == 200 and body["changed"] is False
    status, body = await gateway.post(f"/api/v1/alerts/{answer['id']}/escalate")
    assert status == 409


async def test_silence_three_times_counts_as_no_answer_and_moves_on(gateway: Gateway) -> None:
    await gateway.post("/api/v1/alerts", {"summary": "silent", "team": "sre"})
    await gateway.ringing(ALICE)
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    for _ in range(3):
        await gateway.clock.advance(5)
    phone = await gateway.phone(ALICE)
    assert phone["call"]["state"] == "ended" and phone["call"]["outcome"] == "no_answer"
    assert phone["call"]["transcript"].count(phone["call"]["transcript"][0]) == 3  # message played 3 times
    await gateway.ringing(BOB)


async def test_direct_call_to_a_number_and_acknowledge(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/calls", {"to": "(555) 000-0009", "message": "Backup failed"})
    assert status == 202, body
    assert body["pages"][0]["number"] == "+1555***0009"
    await gateway.ringing("+15550000009")
    await gateway.post("/api/v1/sandbox/phones/+15550000009/answer")
    phone = (await gateway.phone("+15550000009"))
    assert "Backup failed" in phone["call"]["hearing"]
    await gateway.post("/api/v1/sandbox/phones/+15550000009/press", {"digits": "1"})
    await gateway.alert_where(body["alert"]["id"], lambda a: a["status"] == "acknowledged")


async def test_direct_sms_to_a_team(gateway: Gateway) -> None:
    status, body = await gateway.post("/api/v1/sms", {"team": "sre", "message": "Deploy frozen tonight"})
    assert status == 202, body
    phone = await eventually(lambda: _inbox(gateway, ALICE))
    assert "Deploy frozen tonight" in phone["sms"][0]["text"]


async def _inbox(gateway: Gateway, number: str) -> dict | None:
    phone = await gateway.phone(number)
    return phone if phone["sms"] else None


async def test_oncall_endpoint(gateway: Gateway) -> None:
    status, body = await gateway.get("/api/v1/oncall")
    assert status == 200
    sre = next(t for t in body["teams"] if t["team"] == "sre")
    assert sre["primary"]["name"] == "Alice" and sre["secondary"]["name"] == "Bob"
    assert sre["primary"]["phone"] == "+1555***0001"
    assert sre["until"] == "2026-01-12T09:00:00Z"
    status, body = await gateway.get("/api/v1/oncall?team=sre&at=2026-01-13T00:00:00Z")
    assert body["teams"][0]["primary"]["name"] == "Bob"


async def test_operator_raises_priority_and_sees_the_queues(gateway: Gateway) -> None:
    _, body = await gateway.post("/api/v1/alerts", {"summary": "routine", "team": "sre", "priority": "low"})
    assert (await gateway.alert(body["id"]))["priority"] == "low"
    status, answer = await gateway.post(f"/api/v1/alerts/{body['id']}/escalate", {"priority": "low"})
    assert status == 422 and answer["details"]["field"] == "priority"
    status, answer = await gateway.post(f"/api/v1/alerts/{body['id']}/escalate", {"priority": "high"})
    assert status == 200 and answer["priority"] == "high"
    alert = await gateway.alert(body["id"])
    assert any(t["kind"] == "priority" and "raised to high" in t["message"] for t in alert["timeline"])

    status, queues = await gateway.get("/api/v1/queues")
    assert status == 200
    assert [q["priority"] for q in queues["queues"]] == ["high", "low"]
    provider = queues["providers"][0]
    assert provider["name"] == "sandbox" and provider["capacity"] == 10 and provider["reserved_for_high"] == 2
    assert provider["in_flight"] >= 1  # the ringing calls hold lines
    assert (await gateway.get("/api/v1/queues", headers={}))[0] == 401


async def test_metrics_in_prometheus_format(gateway: Gateway) -> None:
    await gateway.post("/api/v1/alerts", {"summary": "m", "team": "sre"})
    await gateway.ringing(ALICE)
    async with gateway.client.get("/metrics", headers={"Authorization": "Bearer test-token"}) as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    assert 'gateway_queue_depth{priority="high"} 0.0' in text
    assert 'gateway_lines_in_use{provider="sandbox"} 1.0' in text
    assert 'gateway_lines{kind="capacity",provider="sandbox"} 10.0' in text
    assert "gateway_low_waited_too_long_total 0.0" in text
    async with gateway.client.get("/metrics") as resp:
        assert resp.status == 401
