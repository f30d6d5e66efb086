"""Two-way SMS: engineers acknowledge, resolve and escalate by replying."""

from __future__ import annotations

from tests.support import ALICE, BOB, CAROL, Gateway, eventually


async def _sms_alert(gateway: Gateway, summary: str = "replica lag") -> int:
    # The dba team's policy texts its primary (Carol).
    status, body = await gateway.post("/api/v1/alerts", {"summary": summary, "labels": {"team": "dba"}})
    assert status == 202, body
    await eventually(lambda: _has_sms(gateway, CAROL))
    return body["id"]


async def _has_sms(gateway: Gateway, number: str) -> bool:
    return bool((await gateway.phone(number))["sms"])


async def test_alert_sms_carries_reply_instructions(gateway: Gateway) -> None:
    alert_id = await _sms_alert(gateway)
    sms = (await gateway.phone(CAROL))["sms"][0]
    assert sms["direction"] == "in" and sms["peer"] == "+15559990000"
    assert f"Alert #{alert_id}" in sms["text"] and f"ACK {alert_id}" in sms["text"]


async def test_ack_reply_from_the_paged_engineer_acknowledges(gateway: Gateway) -> None:
    alert_id = await _sms_alert(gateway)
    status, body = await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/reply", {"text": "ack"})
    assert status == 200
    assert body["reply"].startswith(f"Alert #{alert_id} acknowledged")
    alert = await gateway.alert(alert_id)
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "carol"
    assert any("acknowledged by Carol (SMS reply)" in t["message"] for t in alert["timeline"])


async def test_same_text_from_an_unknown_number_changes_nothing(gateway: Gateway) -> None:
    alert_id = await _sms_alert(gateway)
    status, body = await gateway.post("/api/v1/sandbox/phones/+15550009999/reply", {"text": "ack"})
    assert status == 200 and body["reply"] == ""
    status, body = await gateway.post("/api/v1/sandbox/phones/+15550009999/reply", {"text": f"ack {alert_id}"})
    assert body["reply"] == ""
    assert (await gateway.alert(alert_id))["status"] == "triggered"


async def test_reply_naming_an_alert_not_sent_to_you_changes_nothing(gateway: Gateway) -> None:
    alert_id = await _sms_alert(gateway)
    # Alice is a known engineer, but this alert was never sent to her.
    _status, body = await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/reply", {"text": f"resolve {alert_id}"})
    assert body["reply"] == f"Alert #{alert_id} was not sent to you; nothing changed."
    assert (await gateway.alert(alert_id))["status"] == "triggered"


async def test_numbered_resolve_and_closed_alert(gateway: Gateway) -> None:
    alert_id = await _sms_alert(gateway)
    _, body = await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/reply", {"text": f"{alert_id} RESOLVE"})
    assert body["reply"].startswith(f"Alert #{alert_id} resolved")
    assert (await gateway.alert(alert_id))["status"] == "resolved"
    _, body = await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/reply", {"text": f"ack {alert_id}"})
    assert body["reply"] == f"Alert #{alert_id} is already resolved; nothing changed."
    _, body = await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/reply", {"text": "ack"})
    assert body["reply"] == "You have no open alert to acknowledge."


async def test_unknown_text_gets_help(gateway: Gateway) -> None:
    alert_id = await _sms_alert(gateway)
    _, body = await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/reply", {"text": "who is this?"})
    assert "ACK" in body["reply"] and "RESOLVE" in body["reply"]
    assert (await gateway.alert(alert_id))["status"] == "triggered"


async def test_esc_reply_runs_the_next_step_now(gateway: Gateway) -> None:
    # dba's policy has one SMS step and repeats once: escalating re-sends it at once.
    alert_id = await _sms_alert(gateway)
    _, body = await gateway.post(f"/api/v1/sandbox/phones/{CAROL}/reply", {"text": "esc"})
    assert "passed on" in body["reply"]

    async def two_texts() -> bool:
        inbox = [m for m in (await gateway.phone(CAROL))["sms"] if f"Alert #{alert_id}" in m["text"]
                 and "ACK" in m["text"]]
        return len(inbox) == 2

    await eventually(two_texts)
    assert (await gateway.phone(BOB))["sms"] == []
