"""Failover between real provider plugins: the loopback Asterisk (AMI) first, the loopback Twilio API next.

A page whose first provider fails (Asterisk reports congestion: a network failure, not a person's
answer) is placed on the next provider within the same step, and the alert's timeline names both.
An SMS that Twilio refuses goes out on the next SMS provider. A provider that keeps failing is marked
down on /readyz.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.gateway.test_asterisk_story import SECRET, FakePbx, free_port
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.support import BASE_CONFIG, Gateway, eventually, write_config

CONGESTED = "+15550000009"  # the loopback PBX answers a call to a number ending in 9 with congestion
SMS_ONLY = "+15550000003"


def _config(ami_port: int, agi_port: int, twilio_url: str) -> str:
    text = BASE_CONFIG.replace('phones: ["+15550000001"]', f'phones: ["{CONGESTED}"]')
    text = text.replace("members: [alice, bob]", "members: [alice]")  # Alice is primary, whatever the date
    return text + f"""
server: {{public_url: "https://oncall.example.com"}}
asterisk:
  port: {ami_port}
  username: gateway
  secret: {SECRET}
  dial_string: "Local/{{number}}@sim-phones"
  caller_id: "+15559990000"
  agi_listen_port: {agi_port}
  agi_url: "agi://127.0.0.1:{agi_port}"
  sounds_dir: sounds
  record_dir: recordings
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: "{twilio_url}"
  machine_detection: false
sandbox: {{enabled: true}}
providers:
  voice: [asterisk, twilio]
  sms: [twilio, sandbox]
"""


@dataclass
class Rig:
    gateway: Gateway
    pbx: FakePbx
    api: FakeTwilioApi


@pytest.fixture
async def rig(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Rig]:
    ami_port, agi_port = free_port(), free_port()
    async with FakeTwilioApi() as api:
        pbx = FakePbx(secret=SECRET, time_scale=0.01, port=ami_port)
        await pbx.start()
        try:
            config = load_config(write_config(tmp_path, _config(ami_port, agi_port, api.base_url)))
            clock = FakeClock()
            client = await aiohttp_client(create_app(config, clock=clock))
            rig = Rig(gateway=Gateway(client, clock), pbx=pbx, api=api)

            async def ami_up() -> bool:
                async with client.get("/readyz") as resp:
                    return (await resp.json())["checks"].get("voice:asterisk") == "ok"

            await eventually(ami_up)
            yield rig
        finally:
            await pbx.stop()


async def test_a_call_the_first_provider_fails_is_carried_by_the_next_in_the_same_step(rig: Rig) -> None:
    status, body = await rig.gateway.post("/api/v1/alerts", {"summary": "core router down", "team": "sre"})
    assert status == 202, body
    await rig.pbx.wait_for_action("Originate", timeout=30, Channel=f"Local/{CONGESTED}@sim-phones")

    async def twilio_call() -> list[Any]:
        return [form for form in rig.api.calls if form.get("To") == CONGESTED]

    await eventually(twilio_call)
    alert = await rig.gateway.alert(body["id"])
    assert len(alert["pages"]) == 1  # the same page, the same step: no escalation happened
    assert alert["pages"][0]["status"] != "done"  # carried on: not failed
    carried = [t["message"] for t in alert["timeline"] if "carried by" in t["message"]]
    assert carried == ["call to Alice carried by asterisk", "call to Alice carried by twilio after asterisk: "
                       "congestion: the trunk or the network could not take the call"], alert["timeline"]


async def test_an_sms_twilio_refuses_goes_out_on_the_next_sms_provider(rig: Rig) -> None:
    rig.api.fail_next(400, 21610, message="Attempt to send to unsubscribed recipient")
    status, body = await rig.gateway.post("/api/v1/sms", {"to": SMS_ONLY, "message": "disk full on db-3"})
    assert status == 202, body
    inbox = await eventually(lambda: _inbox(rig, SMS_ONLY))
    assert "disk full on db-3" in inbox[0]["text"]
    alert = await rig.gateway.alert(body["alert"]["id"])
    assert any("carried by sandbox" in t["message"] and "twilio" in t["message"] for t in alert["timeline"])


async def test_a_provider_that_keeps_failing_is_marked_down_on_readyz(rig: Rig) -> None:
    for index in range(3):
        status, _ = await rig.gateway.post("/api/v1/calls", {"to": f"+1555000{index}009", "message": "test"})
        assert status == 202

    async def asterisk_down() -> dict[str, Any] | None:
        async with rig.gateway.client.get("/readyz") as resp:
            body: dict[str, Any] = await resp.json()
            return body if body["checks"].get("provider:asterisk", "").startswith("down") else None

    body = await eventually(asterisk_down)
    assert body["checks"]["provider:twilio"] == "ok"
    status, _ = await rig.gateway.get("/api/v1/queues")
    async with rig.gateway.client.get("/metrics", headers={"Authorization": "Bearer test-token"}) as resp:
        metrics = await resp.text()
    assert 'gateway_provider_up{provider="asterisk"} 0.0' in metrics
    assert 'gateway_provider_up{provider="twilio"} 1.0' in metrics


async def _inbox(rig: Rig, number: str) -> list[dict[str, Any]] | None:
    phone = await rig.gateway.phone(number)
    return [m for m in phone["sms"] if m["direction"] == "in"] or None
