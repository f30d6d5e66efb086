"""The whole gateway on Asterisk: a FakePbx (AMI + FastAGI replaying Asterisk 22) and a real SQLite file.

The engineers' numbers pick the simulated phones' behaviour by their last digit
(1 presses 1, 2 presses 2, 3 never answers, 4 is busy; see FakePbx). Ringing
runs at ``time_scale`` of real time; the escalation's timeouts on a FakeClock.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import providers.asterisk
from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from providers.asterisk import AsteriskTiming
from tests.peers.ami_server import FakePbx
from tests.support import BASE_CONFIG, Gateway, eventually, write_config

SECRET = "ami-secret-for-tests"
HOTLINE = "+15557770000"
CALLER = "+15557770001"
ACCEPTS, DECLINES, RINGS, BUSY = "+15550000001", "+15550000002", "+15550000003", "+15550000004"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def story_config(*, ami_port: int, agi_port: int, alice: str, bob: str, secret: str = SECRET) -> str:
    text = BASE_CONFIG.replace('phones: ["+15550000001"]', 'phones: ["@ALICE@"]')
    text = text.replace('phones: ["+15550000002"]', 'phones: ["@BOB@"]')
    text = text.replace("@ALICE@", alice).replace("@BOB@", bob)
    text = text.replace("policies:\n", """policies:
  hotline:
    steps:
      - {notify: primary, timeout: 20s}
      - {notify: secondary, timeout: 20s}
""")
    return text + f"""
asterisk:
  host: 127.0.0.1
  port: {ami_port}
  username: gateway
  secret: {secret}
  dial_string: "Local/{{number}}@sim-phones"
  caller_id: "+15559990000"
  agi_listen_host: 127.0.0.1
  agi_listen_port: {agi_port}
  agi_url: "agi://127.0.0.1:{agi_port}"
  max_channels: 4
  sounds_dir: sounds
  record_dir: recordings
hotlines:
  - name: ops
    number: "{HOTLINE}"
    team: sre
    policy: hotline
    greeting: "You have reached the {{{{ team }}}} on-call hotline."
    priority_menu: true
"""


@dataclass
class Story:
    gateway: Gateway
    pbx: FakePbx
    ami_port: int
    agi_port: int

    @property
    def agi_url(self) -> str:
        return f"agi://127.0.0.1:{self.agi_port}"

    async def ready(self) -> dict[str, Any]:
        async with self.gateway.client.get("/readyz") as resp:
            return {"http": resp.status, **(await resp.json())}

    async def originate_to(self, number: str) -> dict[str, str]:
        return await self.pbx.wait_for_action("Originate", timeout=5, Channel=f"Local/{number}@sim-phones")

    async def hotline_alert(self) -> dict[str, Any]:
        _, body = await self.gateway.get("/api/v1/alerts")
        return await self.gateway.alert(body["alerts"][0]["id"])


Starter = Callable[..., Any]


@pytest.fixture
async def story(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Starter]:
    pbxes: list[FakePbx] = []

    async def start(*, alice: str = ACCEPTS, bob: str = DECLINES, secret: str = SECRET, time_scale: float = 0.01,
                    pbx_running: bool = True) -> Story:
        ami_port, agi_port = free_port(), free_port()
        pbx = FakePbx(secret=SECRET, time_scale=time_scale, port=ami_port)
        pbxes.append(pbx)
        if pbx_running:
            await pbx.start()
        config = load_config(write_config(tmp_path, story_config(
            ami_port=ami_port, agi_port=agi_port, alice=alice, bob=bob, secret=secret)))
        clock = FakeClock()
        client = await aiohttp_client(create_app(config, clock=clock))
        result = Story(gateway=Gateway(client, clock), pbx=pbx, ami_port=ami_port, agi_port=agi_port)
        if pbx_running and secret == SECRET:
            await eventually(lambda: _ok(result))
        return result

    yield start
    for pbx in pbxes:
        await pbx.stop()


async def _ok(story: Story) -> bool:
    return (await story.ready())["http"] == 200


async def _raise_alert(story: Story) -> int:
    status, answer = await story.gateway.post("/api/v1/alerts", {"summary": "disk full on db 3", "team": "sre"})
    assert status == 202, answer
    return int(answer["id"])


def _pages(alert: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(p["engineer"], p["outcome"]) for p in alert["pages"]]


# ------------------------------------------------------------------ alert calls


async def test_alert_call_answered_and_1_pressed_is_acknowledged(story: Starter) -> None:
    s: Story = await story(alice=ACCEPTS)
    alert_id = await _raise_alert(s)
    originate = await s.originate_to(ACCEPTS)
    assert originate["Application"] == "AGI" and originate["Data"] == f"{s.agi_url}/call"
    alert = await s.gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "alice"
    assert _pages(alert) == [("alice", "acknowledged")]
    peer = s.pbx.peers[originate["ChannelId"]]
    assert peer.commands[0] == "ANSWER" and peer.commands[-1] == "HANGUP"
    await eventually(lambda: _true(not s.pbx.live(originate["ChannelId"])))
    # Nobody is called again, however long we wait.
    await s.gateway.clock.advance(3600)
    await asyncio.sleep(0.05)
    assert len([a for a in s.pbx.received_actions if a.get("Action") == "Originate"]) == 1


@pytest.mark.parametrize(
    ("primary", "outcome"),
    [(DECLINES, "declined"), (RINGS, "no_answer"), (BUSY, "busy")],
    ids=["pressed-2", "no-answer", "busy"],
)
async def test_the_next_step_starts_at_once(story: Starter, primary: str, outcome: str) -> None:
    s: Story = await story(alice=primary, bob=ACCEPTS)
    alert_id = await _raise_alert(s)
    await s.originate_to(primary)
    # No clock movement: the secondary is called as soon as the primary's outcome is known.
    await s.originate_to(ACCEPTS)
    alert = await s.gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "bob"
    assert _pages(alert) == [("alice", outcome), ("bob", "acknowledged")]


# ------------------------------------------------------------------ hotline


async def test_hotline_caller_held_primary_declines_secondary_accepts_and_is_bridged(story: Starter) -> None:
    s: Story = await story(alice=DECLINES, bob=ACCEPTS)
    caller = await s.pbx.call_hotline(caller=CALLER, dialled="(555) 777-0000", agi_url=s.agi_url, press="1")
    await caller.peer.wait_blocking()  # on hold, with music
    await s.originate_to(DECLINES)
    bob_call = await s.originate_to(ACCEPTS)
    bob = await s.pbx.wait_peer(bob_call["ChannelId"])
    await eventually(lambda: _true(bob.bridged_with))
    # Bridged from the engineer's own AGI; the caller's AGI saw "-1" + HANGUP, yet its channel lives on.
    assert f'EXEC Bridge "{caller.channel},x"' in bob.commands
    assert caller.peer.agi_dead and caller.peer.channel_alive and s.pbx.live(caller.uniqueid)
    alert = await s.hotline_alert()
    assert alert["source"] == "hotline" and alert["priority"] == "high"
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "bob"
    assert _pages(alert) == [("alice", "declined"), ("bob", "accepted")]
    assert alert["details"]["caller"] == CALLER and alert["details"]["call_id"] == f"ast-{caller.uniqueid}"

    # The caller hangs up: the record is closed and the engineer's leg is hung up too.
    await s.pbx.hang_up_caller(caller)
    alert = await s.gateway.alert_where(alert["id"], lambda a: a["status"] == "resolved")
    assert any("connected to Bob" in t["message"] for t in alert["timeline"])
    await eventually(lambda: _true(bob.closed_by_server and not s.pbx.live(bob_call["ChannelId"])))


@pytest.mark.parametrize("request_", ["hotline/ops", "hotline,ops"], ids=["path", "argument"])
async def test_hotline_run_from_an_s_extension_is_named_in_the_agi_request(story: Starter, request_: str) -> None:
    # exten => s,n,AGI(agi://gw:4573/hotline/ops) (or ...hotline,ops) after a Goto into a shared IVR:
    # Asterisk sends agi_extension: s and agi_dnid: unknown, so only the request says which hotline.
    s: Story = await story(alice=ACCEPTS)
    caller = await s.pbx.call_hotline(caller=CALLER, dialled=HOTLINE, agi_url=s.agi_url, press="1",
                                      request=request_, extension="s", dnid="unknown")
    assert "agi_extension: s\n" in caller.peer.environment.decode()
    await asyncio.wait_for(caller.peer.wait_blocking(), 5)  # held, with music
    alice_call = await s.originate_to(ACCEPTS)  # an engineer is called
    alert = await s.hotline_alert()
    assert alert["source"] == "hotline" and alert["details"]["hotline"] == "ops"
    alice = await s.pbx.wait_peer(alice_call["ChannelId"])
    await eventually(lambda: _true(alice.bridged_with == caller.channel))


async def test_caller_hanging_up_while_waiting_hangs_up_the_engineer_call(
    story: Starter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on a real Asterisk 22, the FakePbx reports the caller's Hangup only once the gateway has closed
    # the caller's FastAGI session. Nobody accepted yet: the engineer's call must end without waiting for
    # that event, so a wait for it, however long, must not matter.
    monkeypatch.setattr(providers.asterisk, "AsteriskTiming", functools.partial(AsteriskTiming, verdict_wait_s=3600))
    s: Story = await story(alice=RINGS, time_scale=0.5)  # Alice's phone rings for 10 s
    caller = await s.pbx.call_hotline(caller=CALLER, dialled=HOTLINE, agi_url=s.agi_url, press="2")
    alice_call = await s.originate_to(RINGS)
    await s.pbx.hang_up_caller(caller)
    hangup = await s.pbx.wait_for_action("Hangup", timeout=5, Channel=alice_call["ChannelId"])
    assert hangup["Channel"] == alice_call["ChannelId"]
    await eventually(lambda: _true(f"event Hangup {caller.uniqueid}" in s.pbx.timeline))
    timeline = s.pbx.timeline
    assert timeline.index(f"agi closed {caller.uniqueid}") < timeline.index(f"event Hangup {caller.uniqueid}")
    alert = await s.gateway.alert_where((await s.hotline_alert())["id"], lambda a: a["status"] == "resolved")
    assert _pages(alert) == [("alice", "canceled")]
    assert any("caller hung up after" in t["message"] for t in alert["timeline"])
    await eventually(lambda: _true(not s.pbx.channels))


# ------------------------------------------------------------------ faults


async def test_ami_connection_cut_mid_escalation_reconnects_and_the_escalation_completes(story: Starter) -> None:
    s: Story = await story(alice=RINGS, bob=ACCEPTS)
    alert_id = await _raise_alert(s)
    await s.originate_to(RINGS)
    s.pbx.secret = "rotated"  # reconnects fail until Alice's call is over: its outcome is lost
    await s.pbx.drop_connections()
    await eventually(lambda: _true(not s.pbx.channels))
    assert (await s.ready())["http"] == 503
    s.pbx.secret = SECRET
    await eventually(lambda: _ok(s))
    logins = [a for a in s.pbx.received_actions if a.get("Action") == "Login"]
    assert len(logins) >= 2
    await s.gateway.clock.advance(50)  # step timeout, and the bound for a lost outcome
    alert = await s.gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "bob"
    assert _pages(alert) == [("alice", "failed"), ("bob", "acknowledged")]
    assert any("outcome lost: AMI connection dropped" in t["message"] for t in alert["timeline"])


async def test_agi_probe_and_garbage_ami_frame_harm_nothing(story: Starter) -> None:
    s: Story = await story(alice=ACCEPTS)
    _, writer = await asyncio.open_connection("127.0.0.1", s.agi_port)
    writer.close()  # connects and closes at once
    s.pbx.send_raw(b"Response: Follows\r\n\x00garbage without structure\r\n\r\n")
    alert_id = await _raise_alert(s)
    alert = await s.gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
    assert _pages(alert) == [("alice", "acknowledged")]
    assert (await s.ready())["http"] == 200 and s.pbx.connections == 1


async def test_asterisk_down_at_start_then_ready_once_it_is_up(story: Starter) -> None:
    s: Story = await story(pbx_running=False)
    ready = await s.ready()
    assert ready["http"] == 503
    assert ready["checks"]["voice:asterisk"].startswith("AMI not connected")
    assert ready["checks"]["store"] == "ok" and ready["checks"]["scheduler"] == "ok"
    await eventually(lambda: _says(s, "AMI not connected: connection refused"))
    await s.pbx.start()
    await eventually(lambda: _ok(s))
    assert (await s.ready())["checks"]["voice:asterisk"] == "ok"


async def test_wrong_credentials_show_on_readyz(story: Starter) -> None:
    s: Story = await story(secret="not-the-secret")
    await eventually(lambda: _says(s, "AMI authentication failed for user gateway"))
    assert (await s.ready())["http"] == 503


async def _says(story: Story, text: str) -> bool:
    return (await story.ready())["checks"].get("voice:asterisk") == text


async def _true(value: Any) -> bool:
    return bool(value)


def test_sms_goes_through_twilio_when_configured(tmp_path: Path) -> None:
    from gateway.provider_setup import build_providers
    from gateway.web.json_body import read_json

    text = story_config(ami_port=5038, agi_port=4573, alice=ACCEPTS, bob=DECLINES)
    alone = build_providers(load_config(write_config(tmp_path, text)), FakeClock(), read_json=read_json)
    assert (alone.manager.voice_order, alone.sms) == (["asterisk"], None)
    text += '\ntwilio:\n  account_sid: AC123\n  auth_token: token\n  from_number: "+15559990000"\n'
    both = build_providers(load_config(write_config(tmp_path, text)), FakeClock(), read_json=read_json)
    assert (both.manager.voice_order, both.manager.sms_order) == (["asterisk"], ["twilio"])
    assert [type(part).__name__ for part in both.plugins] == ["AsteriskProvider", "TwilioProvider"]
