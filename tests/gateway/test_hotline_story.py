"""The hotline through the sandbox: hold, screening, bridge, voicemail, hang-up while waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.clock import FakeClock
from gateway.config import load_config
from tests.support import ALICE, BASE_CONFIG, BOB, Gateway, eventually, write_config

HOTLINE = "+15557770000"
CALLER = "+15557770001"
HOTLINE_CONFIG = BASE_CONFIG.replace("policies:\n", """policies:
  hotline:
    steps:
      - {notify: primary, timeout: 20s}
      - {notify: secondary, timeout: 20s}
""") + f"""
hotlines:
  - name: ops
    number: "{HOTLINE}"
    team: sre
    policy: hotline
    greeting: "You have reached the {{{{ team }}}} on-call hotline."
    priority_menu: true
"""


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    app = create_app(load_config(write_config(tmp_path, HOTLINE_CONFIG)), clock=clock)
    yield Gateway(await aiohttp_client(app), clock)


async def _hotline_alert(gateway: Gateway) -> dict[str, Any]:
    _, body = await gateway.get("/api/v1/alerts")
    return await gateway.alert(body["alerts"][0]["id"])


async def _dial(gateway: Gateway, priority_key: str = "1") -> dict[str, Any]:
    status, caller = await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/dial", {"to": "(555) 777-0000"})
    assert status == 200, caller
    assert caller["call"]["direction"] == "inbound" and caller["call"]["state"] == "in_progress"
    assert "You have reached the sre on-call hotline." in caller["call"]["hearing"]
    assert "If this is an emergency, press 1" in caller["call"]["hearing"]
    _, caller = await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/press", {"digits": priority_key})
    assert "[music on hold]" in caller["call"]["hearing"]
    return caller


async def test_primary_declines_secondary_accepts_and_is_bridged(gateway: Gateway) -> None:
    await _dial(gateway, "1")
    await gateway.ringing(ALICE)
    _, alice = await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    assert "Hotline call from +1 555-777-0001. Press 1 to accept." in alice["call"]["hearing"]
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/press", {"digits": "2"})
    await gateway.ringing(BOB)  # declined: the secondary is tried at once
    await gateway.post(f"/api/v1/sandbox/phones/{BOB}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{BOB}/press", {"digits": "1"})

    async def bridged() -> dict[str, Any] | None:
        caller = await gateway.phone(CALLER)
        return caller if caller["call"]["bridged_with"] == BOB else None

    caller = await eventually(bridged)
    assert "Connecting you to Bob." in caller["call"]["hearing"]
    bob = await gateway.phone(BOB)
    assert bob["call"]["state"] == "in_progress" and bob["call"]["bridged_with"] == CALLER
    alert = await _hotline_alert(gateway)
    assert alert["source"] == "hotline" and alert["priority"] == "high"
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "bob"
    assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "declined"), ("bob", "accepted")]
    assert any("caller waiting in the high-priority queue" in t["message"] for t in alert["timeline"])
    assert any("accepted by Bob; the caller waited" in t["message"] for t in alert["timeline"])

    # The caller hangs up: both legs end and the record is closed.
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/hangup")
    assert (await gateway.phone(BOB))["call"]["state"] == "ended"
    alert = await gateway.alert_where(alert["id"], lambda a: a["status"] == "resolved")
    assert any("connected to Bob" in t["message"] for t in alert["timeline"])


async def test_nobody_accepts_caller_leaves_voicemail_and_team_gets_the_link(gateway: Gateway) -> None:
    await _dial(gateway, "2")
    await gateway.ringing(ALICE)
    await gateway.clock.advance(20)
    await gateway.ringing(BOB)
    await gateway.clock.advance(20)

    async def recording() -> dict[str, Any] | None:
        caller = await gateway.phone(CALLER)
        return caller if caller["call"]["recording"] else None

    caller = await eventually(recording)
    assert "leave a message after the beep" in caller["call"]["hearing"]
    await gateway.clock.advance(15)  # the caller speaks, then hangs up
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/hangup")

    alert = await gateway.alert_where((await _hotline_alert(gateway))["id"], lambda a: a["status"] == "resolved")
    assert alert["priority"] == "low"
    assert any("left a voicemail" in t["message"] for t in alert["timeline"])
    for number in (ALICE, BOB):
        inbox = (await gateway.phone(number))["sms"]
        assert len(inbox) == 1
        assert "Missed hotline call from +1 555-777-0001" in inbox[0]["text"]
        assert "sandbox://recordings/sandbox-in-1.wav" in inbox[0]["text"]


async def test_caller_hanging_up_while_waiting_cancels_the_engineer_call(gateway: Gateway) -> None:
    await _dial(gateway, "1")
    await gateway.ringing(ALICE)
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/hangup")
    alice = await eventually(lambda: _ended(gateway, ALICE))
    assert "[the gateway hung up]" in alice["call"]["transcript"]
    alert = await gateway.alert_where((await _hotline_alert(gateway))["id"], lambda a: a["status"] == "resolved")
    assert [p["outcome"] for p in alert["pages"]] == ["canceled"]
    assert any("caller hung up after" in t["message"] for t in alert["timeline"])
    await gateway.clock.advance(60)
    assert (await gateway.phone(BOB))["calls"] == 0


async def _ended(gateway: Gateway, number: str) -> dict[str, Any] | None:
    phone = await gateway.phone(number)
    return phone if phone["call"] and phone["call"]["state"] == "ended" else None


async def test_menu_digits_outside_the_menu_repeat_it(gateway: Gateway) -> None:
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/dial", {"to": HOTLINE})
    _, caller = await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/press", {"digits": "7"})
    assert "Sorry, that is not an option." in caller["call"]["hearing"]
    assert "If this is an emergency, press 1" in caller["call"]["hearing"]
    assert (await gateway.phone(ALICE))["calls"] == 0


async def test_a_number_that_is_not_a_hotline(gateway: Gateway) -> None:
    _, caller = await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/dial", {"to": "+15557779999"})
    assert caller["call"]["state"] == "ended"
    assert "not in service" in caller["call"]["hearing"]
    _, listing = await gateway.get("/api/v1/alerts")
    assert listing["alerts"] == []
