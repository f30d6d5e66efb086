"""The hotline through the sandbox: hold, screening, bridge, voicemail, hang-up while waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
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

    # The bridged engineer leg holds its line for the whole conversation.
    _, queues = await gateway.get("/api/v1/queues")
    assert queues["providers"][0]["in_flight"] == 1

    # The caller hangs up: both legs end, the line is free, and the record is closed.
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/hangup")

    async def line_free() -> bool:
        _, queues = await gateway.get("/api/v1/queues")
        return queues["providers"][0]["in_flight"] == 0

    await eventually(line_free)
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


ONE_LINE = HOTLINE_CONFIG.replace("policies:\n  hotline:\n    steps:\n      - {notify: primary, timeout: 20s}\n"
                                  "      - {notify: secondary, timeout: 20s}\n",
                                  "policies:\n  hotline:\n    steps:\n      - {notify: primary, timeout: 1h}\n") + """
sandbox:
  lines: 1
"""


async def test_an_emergency_caller_is_offered_before_routine_callers_who_waited_longer(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    clock = FakeClock()
    gw = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, ONE_LINE)), clock=clock)), clock)
    # The only line is busy with an alert call to Alice.
    await gw.post("/api/v1/alerts", {"summary": "line busy", "team": "sre"})
    await gw.ringing(ALICE)
    # Two routine callers, then an emergency caller, all wait for an engineer leg.
    callers = [("+15557770011", "2"), ("+15557770012", "2"), ("+15557770013", "1")]
    for number, key in callers:
        await gw.post(f"/api/v1/sandbox/phones/{number}/dial", {"to": HOTLINE})
        await gw.post(f"/api/v1/sandbox/phones/{number}/press", {"digits": key})
        await clock.advance(2)  # the routine callers have waited longer

    async def queued() -> bool:
        _, queues = await gw.get("/api/v1/queues")
        depth = {q["priority"]: q["depth"] for q in queues["queues"]}
        return depth == {"high": 1, "low": 2}

    await eventually(queued)
    # The line frees: the emergency caller's engineer leg goes first.
    await gw.post(f"/api/v1/sandbox/phones/{ALICE}/reject")

    async def screening_call() -> dict[str, Any] | None:
        phone = await gw.phone(ALICE)
        return phone if phone["call"]["state"] == "ringing" and phone["calls"] == 2 else None

    await eventually(screening_call)
    await gw.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    alice = await gw.phone(ALICE)
    assert "Hotline call from +1 555-777-0013" in alice["call"]["hearing"]
