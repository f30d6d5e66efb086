"""Failover: two gateways on one PostgreSQL; gateway A is killed (SIGKILL) just before an escalation step
it owns is due; how long until the survivor B dials that step. ``./scripts/bench failover``.

Each round:

1. ``alerts`` alerts are sent to A at once. Their policy: step 1 calls the primary (timeout
   ``step_timeout_s``), step 2 the secondary. The peer lets the primary's calls ring for
   ``primary_rings_s`` (longer than the step's timeout: a step whose calls all ended unanswered moves on
   at once) and ends the others ``end_after_ms`` after their create, as no-answer; so step 2 becomes
   due at step 1's timeout, while step 1 still rings.
2. When every step-1 call has reached the peer, the bench reads each alert's ``escalations.next_due``
   from the database (A's wall clock, turned into the bench's monotonic clock): the time step 2 is due.
   The round's due time is the earliest of them.
3. A is killed with SIGKILL ``kill_before_s`` before that due time; the kill is timed when A is gone
   (its process reaped).
4. The "next due step" is, for each alert of the round, its first call to the secondary's number: a
   ``pages`` row of that alert with the secondary's number, whose Calls.json POST reached the peer with
   a ``StatusCallback`` on B's URL (so B dialled it). Its time is when that POST reached the peer.
5. The round's failover time is from the kill to the last of its alerts' step-2 dials (all the dead
   gateway's due work picked up); also printed: to the first, and from the due time to the last.
   A round that sees no such dial within ``BENCH_FAILOVER_WAIT_S`` (default 30 s) counts as failed.
6. A is started again (same port and config) before the next round.

Figures: p50 and max over the rounds of the kill -> last step-2 dial time. Note the floor: the step is
due ``kill_before_s`` after the kill, so a perfect failover shows about that much.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.deploy import PG_TWO, Deployment, deploy
from bench.harness import AUTH, TOKEN, Peer, peer
from bench.loadgen import LoadGenerator, encode, percentile
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

PRIMARY, SECONDARY = "+15550000101", "+15550000102"
WAIT_ENV = "BENCH_FAILOVER_WAIT_S"


def failover_config(port: int, peer_url: str, *, store: str, step_timeout_s: int, lines: int,
                    calls_per_second: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
store: {store}
api_tokens: [{{name: bench, token: {TOKEN}}}]
engineers:
  p: {{name: Primary, phones: ["{PRIMARY}"]}}
  s: {{name: Secondary, phones: ["{SECONDARY}"]}}
teams:
  ops: {{members: [p, s]}}
policies:
  page:
    steps:
      - {{notify: primary, via: call, timeout: {step_timeout_s}s}}
      - {{notify: secondary, via: call, timeout: 1h}}
default_route: {{team: ops, policy: page, priority: high}}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: "{peer_url}"
  max_concurrent_calls: {lines}
  calls_per_second: {calls_per_second}
  machine_detection: false
"""


def _alert(round_number: int, index: int) -> bytes:
    body = json.dumps({"summary": f"failover round {round_number} alert {index}",
                       "dedup_key": f"failover-{round_number}-{index}"}).encode()
    return encode("POST", "/api/v1/alerts", body, AUTH)


async def _until(what: str, check: Any, timeout_s: float, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(interval_s)


class Round:
    """One round's alerts, read back from the database and matched with the peer's dials."""

    def __init__(self, db: Any, p: Peer, alert_ids: list[int]) -> None:
        self.db, self.p, self.alert_ids = db, p, alert_ids

    async def dials_to(self, number: str, by_port: int | None = None) -> dict[int, float] | None:
        """alert id -> when its first call to ``number`` reached the peer (placed by the gateway on
        ``by_port`` when given); None until every alert has one."""
        rows = await self.db.fetch("SELECT alert_id, id FROM pages WHERE alert_id = ANY($1) AND number = $2 "
                                   "ORDER BY id", self.alert_ids, number)
        found: dict[int, float] = {}
        for alert_id, page_id in rows:
            dial = self.p.dials.get(f"page-{page_id}")
            if dial is None or alert_id in found:
                continue
            if by_port is not None and not dial["form"].get("StatusCallback", "").startswith(
                    f"http://127.0.0.1:{by_port}/"):
                continue
            found[alert_id] = dial["t"]
        return found if len(found) == len(self.alert_ids) else None

    async def due(self) -> float:
        """When the earliest of the alerts' next steps is due, on this process's monotonic clock."""
        rows = await self.db.fetch("SELECT next_due FROM escalations WHERE alert_id = ANY($1) AND next_due IS NOT "
                                   "NULL", self.alert_ids)
        if len(rows) != len(self.alert_ids):
            raise RuntimeError("an alert of the round has no next step due")
        return float(min(r[0] for r in rows)) - time.time() + time.monotonic()


async def bench_failover(workdir: Path, *, rounds: int = 20, alerts: int = 5, step_timeout_s: int = 2,
                         kill_before_s: float = 0.2, end_after_ms: float = 500, primary_rings_s: float = 10,
                         lines: int = 200, calls_per_second: int = 1000) -> None:
    """5. Kill -9 a gateway just before a step it owns is due; time until the survivor dials it."""
    from bench.__main__ import report  # (the runner imports this module)

    wait_s = float(os.environ.get(WAIT_ENV, "30"))
    settings = (f"pg x2; {rounds} rounds of {alerts} alerts on gateway A, step 1 primary (timeout {step_timeout_s} s) "
                f"then secondary; A killed {kill_before_s:g} s before step 2 is due; {lines} lines, calls_per_second "
                f"{calls_per_second}, machine_detection off; the peer ends the primary's calls {primary_rings_s:g} s "
                f"and the others {end_after_ms:g} ms after their create (no-answer)")
    print(f"[failover] {settings}; a round fails after {wait_s:g} s ({WAIT_ENV})")

    def config(port: int, store: str) -> str:
        return failover_config(port, p.url, store=store, step_timeout_s=step_timeout_s, lines=lines,
                               calls_per_second=calls_per_second)

    to_last: list[float] = []
    due_to_last: list[float] = []
    failed = 0
    async with peer("twilio", "--end-after-ms", f"{end_after_ms:g}",
                    "--end-after-ms-to", f"{PRIMARY}={primary_rings_s * 1000:g}") as p, \
            deploy(PG_TWO, config, workdir) as d:
        a, b = d.gateways
        db = await asyncpg.connect(d.database_url, password=d.password, timeout=30)
        try:
            for number in range(1, rounds + 1):
                result = await _round(d, db, p, number, alerts=alerts, kill_before_s=kill_before_s, wait_s=wait_s)
                if result is None:
                    failed += 1
                    print(f"  round {number:2d}: no step-2 dial by the survivor within {wait_s:g} s", flush=True)
                else:
                    kill_to_first, kill_to_last, late = result
                    to_last.append(kill_to_last)
                    due_to_last.append(late)
                    print(f"  round {number:2d}: kill -> survivor's step-2 dials: first {_s(kill_to_first)}, last "
                          f"{_s(kill_to_last)} (due -> last {_s(late)})", flush=True)
                await a.start()  # the killed gateway comes back for the next round
                await asyncio.sleep(0.5)
        finally:
            await db.close()
        del b
    value = (f"p50 {_s(percentile(to_last, 50))} / max {_s(max(to_last))} (from the due time: p50 "
             f"{_s(percentile(due_to_last, 50))} / max {_s(max(due_to_last))})" if to_last else "none dialled")
    if failed:
        value += f"; {failed} of {rounds} rounds saw no dial within {wait_s:g} s"
    report(f"failover: kill -9 to the survivor's dial of the next due step, over {rounds} kills [pg x2]", value,
           "-", settings)


async def _round(d: Deployment, db: Any, p: Peer, number: int, *, alerts: int, kill_before_s: float,
                 wait_s: float) -> tuple[float, float, float] | None:
    a, b = d.gateways
    load = LoadGenerator("127.0.0.1", a.port)
    try:
        answers = await asyncio.gather(*(load.one(_alert(number, i)) for i in range(alerts)))
    finally:
        await load.close()
    if any(status != 202 for status, _ in answers):
        raise RuntimeError(f"gateway A refused an alert: {answers}")
    this = Round(db, p, [int(json.loads(body)["id"]) for _, body in answers])
    await _until("step 1 dialled", lambda: this.dials_to(PRIMARY), 30)
    due = await this.due()
    await asyncio.sleep(max(0.0, due - kill_before_s - time.monotonic()))
    killed = await a.kill()
    try:
        dials = await _until("step 2 dialled by the survivor", lambda: this.dials_to(SECONDARY, b.port), wait_s)
    except TimeoutError:
        return None
    return min(dials.values()) - killed, max(dials.values()) - killed, max(dials.values()) - due


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
