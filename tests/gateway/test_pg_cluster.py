"""Several gateways on one PostgreSQL: real ``gateway serve`` processes on one database.

With the recording Twilio peer in a process of its own (calls outlive their gateway there) and with the
sandbox (a call ends with the gateway that placed it). Checked: every escalation step is paged exactly once
across the gateways; an acknowledgement on one gateway hangs up a call another placed; a gateway killed
with ``kill -9`` mid-escalation is carried on by the survivor; lines and the priority order are shared.
Times are printed, never asserted (``bench/`` measures them).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest

from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.peers.twilio_driver import twilio_signature
from tests.postgres import PgDatabase
from tests.processes import Gateway, Peer
from tests.support import AUTH, TOKEN, eventually

PRIMARY, SECONDARY = "+15550000001", "+15550000002"
PASSWORD_ENV = "GATEWAY_TEST_PG_PASSWORD"
IN_FLIGHT_S = 0.5  # how long after a kill a request the process wrote before dying may still arrive


def _config(db: PgDatabase, provider: str, *, step_s: int, lines: int = 1000, policy_repeat: int = 0) -> Callable[
        [int], str]:
    def config(port: int) -> str:
        return f"""
server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
store: {{url: "{db.url}", password_env: {PASSWORD_ENV}}}
api_tokens: [{{name: tests, token: {TOKEN}}}]
engineers:
  a: {{name: A, phones: ["{PRIMARY}"]}}
  b: {{name: B, phones: ["{SECONDARY}"]}}
teams:
  ops: {{members: [a, b]}}
policies:
  page:
    repeat: {policy_repeat}
    steps:
      - {{notify: primary, via: call, timeout: {step_s}s}}
      - {{notify: secondary, via: call, timeout: {step_s}s}}
routes:
  - {{name: urgent, matchers: ['urgency="high"'], team: ops, policy: page, priority: high}}
default_route: {{team: ops, policy: page, priority: low}}
dispatch: {{reserved_for_high: 25%}}
{provider}
"""

    return config


def twilio(peer: Peer, lines: int) -> str:
    return f"""providers: {{voice: [twilio], sms: [twilio]}}
sandbox: {{enabled: false}}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: "{peer.url}"
  max_concurrent_calls: {lines}
  calls_per_second: 1000
  machine_detection: false"""


SANDBOX = "sandbox: {enabled: true}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@pytest.fixture
async def gateways(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[list[Gateway]]:
    """Gateways the test makes with ``_make``; each is stopped at the end."""
    made: list[Gateway] = []
    yield made
    for gateway in made:
        if gateway.proc is not None and gateway.proc.returncode is None:
            gateway.proc.terminate()
            await asyncio.wait_for(gateway.proc.wait(), 60)


def _make(gateways: list[Gateway], http: aiohttp.ClientSession, folder: Path, config: Callable[[int], str],
          db: PgDatabase) -> Gateway:
    gateway = Gateway(folder, config, env={PASSWORD_ENV: db.password or ""})
    gateway.http = http
    gateways.append(gateway)
    return gateway


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def _port_of(dial: dict[str, Any]) -> int:
    """Which gateway placed a dial: the port of the webhook URL it gave Twilio."""
    return int(dial["form"]["Url"].split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


async def _phone(gateway: Gateway, number: str) -> dict[str, Any]:
    phone: dict[str, Any] = await gateway.get(f"/api/v1/sandbox/phones/{number}")
    return phone


async def _rings(gateway: Gateway, number: str) -> bool:
    """The sandbox phone ``number`` on ``gateway`` is ringing now."""
    call = (await _phone(gateway, number))["call"]
    return call is not None and call["state"] == "ringing"


async def _async(value: Any) -> Any:
    return value


async def test_two_gateways_page_each_step_once_and_a_survivor_carries_on_after_a_kill_9(
    tmp_path: Path, pg_database: PgDatabase, peer: Peer, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    step_s = 2
    config = _config(pg_database, twilio(peer, 1000), step_s=step_s, policy_repeat=1)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())

    ids: dict[int, Gateway] = {}
    for index in range(16):
        gateway = a if index % 2 == 0 else b
        alert_id = await gateway.post_alert(f"cluster-{index}")
        assert alert_id is not None
        ids[alert_id] = gateway
    # Mid-escalation (step 2 rings, step 3 is due at 2 x step_s): gateway A dies.
    await eventually(lambda: _async(len(peer.dials) >= 2 * len(ids)))
    await a.kill()
    killed_at = a.kills[-1]

    async def all_steps_paged() -> dict[int, list[dict[str, Any]]]:
        pages = {alert_id: (await b.get(f"/api/v1/alerts/{alert_id}"))["pages"] for alert_id in ids}
        dialled = {d["call_id"] for d in peer.dials}
        done = all(len(p) == 4 and all(f"page-{page['id']}" in dialled for page in p) for p in pages.values())
        return pages if done else {}

    pages = await eventually(all_steps_paged, timeout=60)
    for alert_id, its_pages in pages.items():
        assert [(p["step"], p["round"]) for p in its_pages] == [(1, 1), (2, 1), (1, 2), (2, 2)], alert_id
    counts = Counter(d["call_id"] for d in peer.dials)
    twice = [call for call, n in counts.items() if n > 1]
    for call in twice:  # only a page whose gateway died after Twilio took it and before it was marked sent
        first = min(d["t"] for d in peer.dials_of(call))
        assert killed_at - IN_FLIGHT_S < first < killed_at, (call, counts[call])
    # Every step of A's alerts due after the kill was dialled by B, once.
    for alert_id, gateway in ids.items():
        if gateway is a:
            late = [d for page in pages[alert_id] for d in peer.dials_of(f"page-{page['id']}") if d["t"] > killed_at]
            assert late and all(_port_of(d) == b.port for d in late), alert_id
    waits = [d["t"] - killed_at for d in peer.dials if d["t"] > killed_at and _port_of(d) == b.port]
    print(f"\nsteps dialled by the survivor after the kill: {len(waits)}, first {min(waits):.3f} s after it")


async def test_an_acknowledgement_on_one_gateway_hangs_up_the_call_another_placed(
    tmp_path: Path, pg_database: PgDatabase, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    config = _config(pg_database, SANDBOX, step_s=120)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())
    alert_id = await a.post_alert("ack-elsewhere")
    assert alert_id is not None

    await eventually(lambda: _rings(a, PRIMARY))
    assert (await _phone(b, PRIMARY))["call"] is None  # B placed nothing: only the push can reach A's call
    acked_at = await b.acknowledge(alert_id)

    async def hung_up() -> float | None:
        call = (await _phone(a, PRIMARY))["call"]
        return time.monotonic() if call["state"] == "ended" else None

    ended_at = await eventually(hung_up)
    alert = await a.get(f"/api/v1/alerts/{alert_id}")
    assert alert["status"] == "acknowledged" and alert["pages"][0]["outcome"] == "canceled"
    print(f"\nacknowledged on B -> A's call hung up within {ended_at - acked_at:.3f} s (polled every 50 ms or so)")


async def test_a_gateway_killed_mid_call_has_its_next_step_dialled_by_the_survivor(
    tmp_path: Path, pg_database: PgDatabase, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    config = _config(pg_database, SANDBOX, step_s=120)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())
    alert_id = await a.post_alert("dies-mid-call")
    assert alert_id is not None

    await eventually(lambda: _rings(a, PRIMARY))
    await a.kill()

    async def b_rings_the_secondary() -> float | None:
        call = (await _phone(b, SECONDARY))["call"]
        return time.monotonic() if call is not None and call["state"] == "ringing" else None

    rang_at = await eventually(b_rings_the_secondary)
    pages = (await b.get(f"/api/v1/alerts/{alert_id}"))["pages"]
    assert [(p["step"], p["outcome"]) for p in pages] == [(1, "failed"), (2, None)]
    assert "stopped during the call" in pages[0]["detail"]
    assert (await _phone(b, PRIMARY))["call"] is None  # the survivor did not page step 1 again
    print(f"\nkill -9 of A -> step 2 ringing on B after {rang_at - a.kills[-1]:.3f} s")


async def test_lines_and_priority_are_shared_by_the_gateways(
    tmp_path: Path, pg_database: PgDatabase, peer: Peer, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    # 4 lines, 25 % (one) reserved for high priority; the peer's calls never end, so each holds its line.
    config = _config(pg_database, twilio(peer, 4), step_s=600)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())

    low = [await (a if i % 2 else b).post_alert(f"low-{i}") for i in range(6)]
    await eventually(lambda: _async(len(peer.dials) == 3))  # low leaves the reserved line to high
    urgent = await b.post_alert("high-1", urgency="high")
    await eventually(lambda: _async(len(peer.dials) == 4))
    assert peer.dials[-1]["call_id"] == f"page-{await _first_page(b, urgent)}"
    waiting = await a.post_alert("high-2", urgency="high")
    await asyncio.sleep(1.5)  # long enough for a fifth dial to show if either gateway overran the trunk
    assert len(peer.dials) == 4

    # A line frees (an alert acknowledged on B): the waiting high call on A takes it, not B's low calls.
    dialled = {d["call_id"] for d in peer.dials}
    placed_low = [alert_id for alert_id in low if f"page-{await _first_page(b, alert_id)}" in dialled]
    assert len(placed_low) == 3
    await b.acknowledge(placed_low[0])
    await eventually(lambda: _async(len(peer.dials) == 5))
    assert peer.dials[-1]["call_id"] == f"page-{await _first_page(a, waiting)}"
    assert _port_of(peer.dials[-1]) == a.port
    await asyncio.sleep(1.5)
    assert len(peer.dials) == 5


async def _first_page(gateway: Gateway, alert_id: int | None) -> int:
    assert alert_id is not None
    page_id: int = (await gateway.get(f"/api/v1/alerts/{alert_id}"))["pages"][0]["id"]
    return page_id


async def _webhook(gateway: Gateway, http: aiohttp.ClientSession, dial: dict[str, Any], what: str,
                   params: dict[str, str]) -> str:
    """A Twilio webhook for a call, signed for the gateway it reaches (as a load balancer would pass it on)."""
    path = f"/twilio/voice/{dial['call_id']}/{what}"
    params = {"CallSid": dial["sid"], **params}
    signature = twilio_signature(DEFAULT_AUTH_TOKEN, f"{gateway.base}{path}", list(params.items()))
    async with http.post(f"{gateway.base}{path}", data=params, headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.text()


async def test_a_calls_webhooks_may_reach_any_gateway(
    tmp_path: Path, pg_database: PgDatabase, peer: Peer, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    config = _config(pg_database, twilio(peer, 10), step_s=600)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())
    alert_id = await a.post_alert("split")
    await eventually(lambda: _async(len(peer.dials) == 1))
    dial = peer.dials[0]
    assert _port_of(dial) == a.port

    async def placed() -> bool:  # Twilio answers seconds after the create returns, when A has stored the call
        return bool((await a.get(f"/api/v1/alerts/{alert_id}"))["pages"][0]["status"] == "sent")

    await eventually(placed)
    # The engineer answers (the webhook reaches B), then presses 1 (it reaches A, which placed the call).
    assert "<Gather" in await _webhook(b, http, dial, "answer", {"CallStatus": "in-progress"})
    await _webhook(a, http, dial, "gather", {"CallStatus": "in-progress", "Digits": "1"})
    alert = await b.get(f"/api/v1/alerts/{alert_id}")
    assert alert["status"] == "acknowledged", alert
    assert alert["pages"][0]["outcome"] == "acknowledged"


async def test_an_outcome_heard_by_another_gateway_frees_the_line_of_the_one_that_placed_the_call(
    tmp_path: Path, pg_database: PgDatabase, peer: Peer, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    config = _config(pg_database, twilio(peer, 2), step_s=600)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())
    alerts = [await a.post_alert(f"busy-{i}") for i in range(2)]
    await eventually(lambda: _async(len(peer.dials) == 2))
    # Both step-1 calls (placed by A) end busy, their callbacks handed to B by the load balancer; B moves the
    # escalations on and places step 2; those calls end busy too, their callbacks handed to A.
    for dial in list(peer.dials):
        await _webhook(b, http, dial, "status", {"CallStatus": "busy"})
    await eventually(lambda: _async(len(peer.dials) == 4))
    assert [_port_of(d) for d in peer.dials] == [a.port, a.port, b.port, b.port]
    for dial in peer.dials[2:]:
        await _webhook(a, http, dial, "status", {"CallStatus": "busy"})

    async def all_over() -> bool:
        pages = [page for alert_id in alerts for page in (await b.get(f"/api/v1/alerts/{alert_id}"))["pages"]]
        return len(pages) == 4 and all(page["outcome"] == "busy" for page in pages)

    await eventually(all_over)
    # Each gateway has its lines back (the trunk carries two calls): new alerts are dialled on both.
    after = [await a.post_alert("after-a"), await b.post_alert("after-b")]
    await eventually(lambda: _async(len(peer.dials) == 6))
    assert {d["call_id"] for d in peer.dials[4:]} == {f"page-{await _first_page(a, i)}" for i in after}


async def test_a_gateway_cut_off_from_the_others_for_a_moment_keeps_its_calls(
    tmp_path: Path, pg_database: PgDatabase, http: aiohttp.ClientSession, gateways: list[Gateway],
) -> None:
    config = _config(pg_database, SANDBOX, step_s=120)
    a = _make(gateways, http, tmp_path / "a", config, pg_database)
    b = _make(gateways, http, tmp_path / "b", config, pg_database)
    await asyncio.gather(a.start(), b.start())
    alert_id = await a.post_alert("blip")

    await eventually(lambda: _rings(a, PRIMARY))
    # The database drops A's membership connection (a network blip); A lives on and joins again.
    conn = await asyncpg.connect(pg_database.url, password=pg_database.password)
    try:
        assert a.proc is not None
        holder = await conn.fetchval(
            "SELECT l.pid FROM pg_locks l JOIN gateways g ON l.objid = g.lock_key::bigint::oid"
            " WHERE l.locktype = 'advisory' AND l.granted AND g.pid = $1", a.proc.pid)
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder)
    finally:
        await conn.close()
    await eventually(lambda: _async("joined again in time" in a.log.read_text()))
    await asyncio.sleep(2)  # long past the grace: B would have taken A's work and paged step 2 by now
    assert (await _phone(b, SECONDARY))["call"] is None
    pages = (await a.get(f"/api/v1/alerts/{alert_id}"))["pages"]
    assert [(p["step"], p["outcome"]) for p in pages] == [(1, None)]
    # The primary, still ringing on A, answers and presses 1: acknowledged.
    for action, body in (("answer", {}), ("press", {"digits": "1"})):
        async with http.post(f"{a.base}/api/v1/sandbox/phones/{PRIMARY}/{action}", headers=AUTH, json=body) as r:
            assert r.status == 200, await r.text()

    async def acknowledged() -> bool:
        return bool((await b.get(f"/api/v1/alerts/{alert_id}"))["status"] == "acknowledged")

    await eventually(acknowledged)
