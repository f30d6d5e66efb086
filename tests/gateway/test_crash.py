"""Crash test: the real ``gateway serve`` process killed with SIGKILL, restarted on the same database.

The provider is the loopback Twilio API in a process of its own (``python -m bench.peer twilio``), which
records every dial it receives, so its record survives the gateway. Kills happen at the gateway's named
crash points (``gateway/failpoints.py``) and at moments chosen by the test during escalations. Checked:
no accepted alert is missing, no escalation step goes unpaged, nothing is dialled after an
acknowledgement has answered, and a page is dialled twice only when the gateway died between the
provider taking it and the page being marked sent.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.processes import Gateway, Peer
from tests.support import TOKEN, eventually

PRIMARY, SECONDARY = "+15550000001", "+15550000002"
STEP_S = 2  # each step waits this long (real time: the gateway runs on the system clock)
IN_FLIGHT_S = 0.5  # how long after a kill a request the process wrote before dying may still arrive


def crash_config(peer_url: str) -> Callable[[int], str]:
    def config(port: int) -> str:
        return f"""
server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
store: {{path: gateway.db}}
api_tokens: [{{name: tests, token: {TOKEN}}}]
engineers:
  a: {{name: A, phones: ["{PRIMARY}"]}}
  b: {{name: B, phones: ["{SECONDARY}"]}}
teams:
  ops: {{members: [a, b]}}
policies:
  page:
    repeat: 1
    steps:
      - {{notify: primary, via: call, timeout: {STEP_S}s}}
      - {{notify: secondary, via: call, timeout: {STEP_S}s}}
default_route: {{team: ops, policy: page, priority: high}}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: "{peer_url}"
  max_concurrent_calls: 1000
  calls_per_second: 1000
  machine_detection: false
"""

    return config


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Gateway, Peer]]:
    peer = Peer()
    await peer.start()
    gateway = Gateway(tmp_path, crash_config(peer.url))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        gateway.http = http
        try:
            yield gateway, peer
        finally:
            if gateway.proc is not None and gateway.proc.returncode is None:
                gateway.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(gateway.proc.wait(), 60)
            await peer.stop()


def _call_id(page: dict[str, Any]) -> str:
    return f"page-{page['id']}"


async def test_a_kill_at_each_crash_point_loses_nothing_and_duplicates_only_in_the_window(
    rig: tuple[Gateway, Peer],
) -> None:
    gateway, peer = rig

    # 1. Killed after the alert is committed, before the 202: it is there after the restart and is paged once.
    await gateway.start(crash_at="alert-committed")
    assert await gateway.post_alert("committed") is None
    await gateway.died()
    await gateway.start()
    alert = await gateway.get("/api/v1/alerts/1")
    first = _call_id(alert["pages"][0])
    await eventually(lambda: _async(len(peer.dials_of(first)) >= 1))
    await gateway.acknowledge(1)

    # 2. Killed after step 2 of alert 2 is written, before its page is sent: the restart sends it once.
    await gateway.kill()
    await gateway.start(crash_at="step-committed")
    assert await gateway.post_alert("stepped") == 2
    await gateway.died()
    await gateway.start()
    alert = await eventually(lambda: _pages(gateway, 2, at_least=2))
    second_step = _call_id(alert["pages"][1])
    await eventually(lambda: _async(len(peer.dials_of(second_step)) >= 1))
    await gateway.acknowledge(2)

    # 3. Killed after the provider took the call, before the page is marked sent: the restart dials it again.
    await gateway.kill()
    await gateway.start(crash_at="page-placed")
    await gateway.post_alert("placed")  # the 202 may or may not beat the kill
    await gateway.died()
    await gateway.start()
    alert = await gateway.get("/api/v1/alerts/3")
    placed = _call_id(alert["pages"][0])
    await eventually(lambda: _async(len(peer.dials_of(placed)) == 2))

    await gateway.acknowledge(3)
    await asyncio.sleep(STEP_S * 2)  # long enough for a wrongly scheduled step to show up
    counts = Counter(d["call_id"] for d in peer.dials)
    assert counts[first] == 1 and counts[second_step] == 1, counts
    assert [call for call, n in counts.items() if n > 1] == [placed], counts


async def test_kill_9_during_intake_and_escalation_loses_no_alert_no_step_and_pages_nobody_after_ack(
    rig: tuple[Gateway, Peer],
) -> None:
    gateway, peer = rig
    await gateway.start()
    accepted: dict[str, int] = {}
    stop_posting = asyncio.Event()

    async def post_alerts() -> None:
        index = 0
        while not stop_posting.is_set():
            key = f"load-{index}"
            alert_id = await gateway.post_alert(key)
            if alert_id is not None:
                accepted[key] = alert_id
            index += 1
            await asyncio.sleep(0.05)

    poster = asyncio.create_task(post_alerts())
    # Kills mid-intake and mid-escalation, at offsets that are not multiples of the step time.
    for pause in (1.3, 2.7, 1.9):
        await asyncio.sleep(pause)
        await gateway.kill()
        await gateway.start()
    stop_posting.set()
    await poster
    assert len(accepted) >= 10, "too few alerts were accepted to prove anything"

    # Acknowledge half of them; the others run their policy to the end (4 steps).
    acked_at = {alert_id: await gateway.acknowledge(alert_id) for alert_id in sorted(accepted.values())[::2]}
    await asyncio.sleep(STEP_S * 5)
    await gateway.kill()  # one more kill after it all, then a restart must page nothing new
    await gateway.start()
    await asyncio.sleep(STEP_S)

    page_of: dict[str, int] = {}
    for key, alert_id in accepted.items():
        alert = await gateway.get(f"/api/v1/alerts/{alert_id}")
        assert alert["dedup_key"] == key  # 0 accepted alerts missing
        for page in alert["pages"]:
            page_of[_call_id(page)] = alert_id
            # 0 steps never paged: every page that was written reached the provider.
            assert peer.dials_of(_call_id(page)), f"page {page['id']} of alert {alert_id} was never dialled"
        if alert_id not in acked_at:
            assert len(alert["pages"]) == 4, alert["timeline"]  # two steps, twice
    # 0 pages after an acknowledgement answered.
    late = [d for d in peer.dials if d["call_id"] in page_of and page_of[d["call_id"]] in acked_at
            and d["t"] > acked_at[page_of[d["call_id"]]]]
    assert late == []
    duplicates = sum(n - 1 for n in Counter(d["call_id"] for d in peer.dials).values())
    print(f"crash test: {len(accepted)} alerts accepted, {len(gateway.kills)} kill -9s, {len(page_of)} pages, "
          f"{len(peer.dials)} dials, {duplicates} duplicate(s), 0 missing, 0 after an acknowledgement")
    # A page is dialled twice only across a kill: its first dial before the kill, the second after it.
    for call_id, count in Counter(d["call_id"] for d in peer.dials).items():
        if count > 1:
            times = [d["t"] for d in peer.dials_of(call_id)]
            assert count == 2, (call_id, times)
            # (A request the dying process had already written may reach the peer a moment after the death.)
            assert any(times[0] < kill + IN_FLIGHT_S and kill < times[1] for kill in gateway.kills), \
                (call_id, times, gateway.kills)


async def _async(value: object) -> object:
    return value


async def _pages(gateway: Gateway, alert_id: int, *, at_least: int) -> dict[str, Any] | None:
    alert: dict[str, Any] = await gateway.get(f"/api/v1/alerts/{alert_id}")
    return alert if len(alert["pages"]) >= at_least else None
