"""Run the benchmarks: `python -m bench` (all) or `python -m bench dial throughput ...`.

Each benchmark starts the real gateway process (`python -m gateway serve`)
with a fresh SQLite file (dial and throughput also on PostgreSQL, with one and
with two gateways: see bench.deploy), a provider peer in another process, and
drives the gateway over HTTP from this process. Figures are printed as they
come and as a table at the end, each with the settings that differ from the
defaults and the machine's load. Nothing here is a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench.deploy import POSTGRES, SETUPS, SQLITE, SQLITE_STORE, Config, Deployment, deploy
from bench.harness import AUTH, TOKEN, Peer, free_port, gateway, peer
from bench.loadgen import LoadGenerator, Result, Run, encode, percentile
from bench.peer import AMI_SECRET
from tests.peers.agi_peer import agi_environment
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN
from tests.peers.twilio_driver import TYPICAL_AMD_S, CallLeg, TwilioDriver, twilio_signature

FIGURES: list[tuple[str, str, str, str, str]] = []  # (measure, value, target, load average, settings)
URGENT_NUMBER = "+15550000009"  # high-priority alerts page this number, so the peer can tell them apart
HOTLINE_NUMBER = "+15557770000"


@dataclass(frozen=True, kw_only=True)
class Trunk:
    """The Twilio settings of a benchmark, and how long the peer lets each call last before ending it."""

    lines: int = 200
    calls_per_second: int = 1000  # the most the config accepts
    end_after_ms: float | None = 100  # None: the peer never ends a call
    end_as: str = "no-answer"
    hold_ms_to: tuple[tuple[str, float], ...] = ()  # calls to these numbers last this long instead

    def peer_options(self) -> list[str]:
        if self.end_after_ms is None:
            return []
        options = ["--end-after-ms", f"{self.end_after_ms:g}", "--end-as", self.end_as]
        for number, ms in self.hold_ms_to:
            options += ["--end-after-ms-to", f"{number}={ms:g}"]
        return options

    def describe(self) -> str:
        """Every setting that differs from the defaults (lines 10, calls_per_second 1, machine_detection on)."""
        text = f"{self.lines} lines, calls_per_second {self.calls_per_second}, machine_detection off"
        if self.end_after_ms is not None:
            text += f"; the peer ends each call {self.end_after_ms:g} ms after its create ({self.end_as})"
        for number, ms in self.hold_ms_to:
            text += f", calls to {number} after {ms:g} ms"
        return text


def twilio_config(port: int, peer_url: str, *, lines: int = 10_000, calls_per_second: int = 1000,
                  store: str = SQLITE_STORE) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
store: {store}
api_tokens: [{{name: bench, token: {TOKEN}}}]
engineers:
  a: {{name: A, phones: ["+15550000001"]}}
  b: {{name: B, phones: ["+15550000002"]}}
  u: {{name: U, phones: ["{URGENT_NUMBER}"]}}
teams:
  ops: {{members: [a, b]}}
  urgent: {{members: [u]}}
policies:
  page: {{steps: [{{notify: primary, via: call, timeout: 1h}}]}}
routes:
  - {{name: urgent, matchers: ['urgency="high"'], team: urgent, policy: page, priority: high}}
default_route: {{team: ops, policy: page, priority: low}}
dispatch: {{reserved_for_high: 20%}}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: "{peer_url}"
  max_concurrent_calls: {lines}
  calls_per_second: {calls_per_second}
  machine_detection: false
"""


def alert_request(tag: str, *, urgency: str = "low") -> Callable[[int], bytes]:
    def build(index: int) -> bytes:
        body = json.dumps({"summary": f"bench {tag} {index}", "dedup_key": f"{tag}-{index}",
                           "labels": {"urgency": urgency}}).encode()
        return encode("POST", "/api/v1/alerts", body, AUTH)

    return build


def report(measure: str, value: str, target: str, settings: str = "") -> None:
    """Record a figure with the machine's load while it was measured (1-minute average, all processes) and
    the settings it was measured with that differ from the defaults."""
    load = f"{os.getloadavg()[0]:.2f}"
    FIGURES.append((measure, value, target, load, settings))
    print(f"  {measure}: {value}   (target {target}; load {load}{'; ' + settings if settings else ''})", flush=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.001 else f"{seconds * 1000:.1f} ms"


async def _wait_for_dials(p: Peer, expected: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(p.dials) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def _dials(d: Deployment, p: Peer, run: Run, *, wait_s: float = 30.0) -> list[tuple[Result, float]]:
    """Each accepted alert of ``run`` whose first call reached the peer: its request's result, and when its
    Calls.json POST arrived there (the peer's monotonic clock, the same as ours on one machine).

    Waits up to ``wait_s`` for every accepted alert to be dialled (0: takes what has arrived)."""
    accepted = {json.loads(r.body)["id"]: r for r in run.results if r.status == 202}
    if not accepted:
        return []
    deadline = time.monotonic() + wait_s
    while True:
        pages = await d.first_pages(min(accepted), max(accepted))
        found = [(r, p.dials[f"page-{pages[a]}"]["t"]) for a, r in accepted.items()
                 if a in pages and f"page-{pages[a]}" in p.dials]
        if len(found) == len(accepted) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.5)


def _on_twilio(p: Peer, trunk: Trunk, make: Callable[..., str] | None = None) -> Config:
    """The gateway's config for ``setup``'s store, on the peer's Twilio API with ``trunk``'s settings."""
    build = make or twilio_config
    return lambda port, store: build(port, p.url, lines=trunk.lines, calls_per_second=trunk.calls_per_second,
                                     store=store)


def _spread(values: list[float]) -> str:
    return " / ".join(_ms(percentile(values, q)) for q in (50, 95, 99))


# ---------------------------------------------------------------- benchmarks


async def bench_dial(workdir: Path, *, rate: float = 200, duration_s: float = 30, trunk: Trunk = Trunk()) -> None:
    """1. Alert request sent (its scheduled start) to its first call's Calls.json POST at the peer, at a fixed
    rate, on SQLite and on PostgreSQL with one and with two gateways."""
    print(f"[dial] {rate:.0f} alerts/s for {duration_s:.0f} s on each of {', '.join(s.name for s in SETUPS)}; "
          f"alert request sent -> Calls.json POST at the Twilio peer; {trunk.describe()}")
    for setup in SETUPS:
        async with peer("twilio", *trunk.peer_options()) as p, deploy(setup, _on_twilio(p, trunk), workdir) as d:
            load = LoadGenerator("127.0.0.1", *d.ports)
            await load.run(rate=50, duration_s=1, request=alert_request("warmup"))
            run = await load.run(rate=rate, duration_s=duration_s, request=alert_request("dial"))
            await load.close()
            found = await _dials(d, p, run)
        accepted = sum(1 for r in run.results if r.status == 202)
        print(f"  [{setup.name}] {accepted} alerts accepted, {len(found)} dialled, {run.errors} errors")
        settings = f"{setup.name}; {rate:.0f} alerts/s for {duration_s:.0f} s; {trunk.describe()}"
        report(f"alert request sent to first dial p50 / p95 / p99 [{setup.name}]",
               _spread([t - r.scheduled for r, t in found]), "p99 <= 20 ms", settings)
        report(f"alert 202 read to first dial p50 / p95 / p99 [{setup.name}]",
               _spread([t - r.done for r, t in found]), "-", settings)
        report(f"alert intake (request sent to 202 read) p99 [{setup.name}]",
               _ms(percentile([r.latency_s for r in run.results], 99)), "-", settings)


THROUGHPUT_RATES = (100, 250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2500, 3000)


async def bench_throughput(workdir: Path, *, step_s: float = 10, bound_s: float = 1.0, share: float = 0.99,
                           trunk: Trunk = Trunk()) -> None:
    """2. Durable alerts per second: those accepted whose first call reached the peer within ``bound_s`` of
    the request being sent, at rising rates, on each setup. The peer ends every call (so lines are reused);
    a rate holds when at least ``share`` of the alerts offered meet the bound."""
    print(f"[throughput] rising rates, {step_s:.0f} s each, on each of {', '.join(s.name for s in SETUPS)}: "
          f"alerts whose first call reached the peer within {bound_s:g} s of the request being sent; a rate "
          f"holds when {share:.0%} of its alerts do; {trunk.describe()}")
    for setup in SETUPS:
        best_rate, best = 0, 0.0
        async with peer("twilio", *trunk.peer_options()) as p, deploy(setup, _on_twilio(p, trunk), workdir) as d:
            load = LoadGenerator("127.0.0.1", *d.ports)
            await load.run(rate=100, duration_s=1, request=alert_request("warmup"))
            for rate in THROUGHPUT_RATES:
                run = await load.run(rate=rate, duration_s=step_s, request=alert_request(f"tp{rate}"))
                await asyncio.sleep(bound_s + 0.5)  # every dial within the bound has reached the peer by now
                found = await _dials(d, p, run, wait_s=0)
                to_dial = [t - r.scheduled for r, t in found]
                good = sum(1 for lat in to_dial if lat <= bound_s)
                offered = int(rate * step_s)
                held = good >= share * offered
                intake = [r.latency_s for r in run.results]
                print(f"  [{setup.name}] {rate:5d}/s offered: {good / step_s:6.0f}/s dialled within {bound_s:g} s "
                      f"({good} of {offered}); request to 202 p99 {_ms(percentile(intake, 99))}, "
                      f"to dial p50 {_ms(percentile(to_dial, 50))} p99 {_ms(percentile(to_dial, 99))}; "
                      f"errors {run.errors} -> {'holds' if held else 'over'}", flush=True)
                if not held:
                    break
                best_rate, best = rate, good / step_s
                await asyncio.sleep(2)  # let any backlog drain before the next step
            await load.close()
        report(f"alerts per second with the first call dialled within {bound_s:g} s of the request [{setup.name}]",
               f"{best:.0f}/s", ">= 1000/s (pg x2)",
               f"{setup.name}; rates 100, 250, 500/s then by 250/s, {step_s:.0f} s each, the highest where {share:.0%} "
               "met the bound "
               f"(offered {best_rate}/s); {trunk.describe()}")


def twilio_webhook(port: int, call_id: str, what: str, params: dict[str, str]) -> bytes:
    """A webhook POST signed exactly as Twilio signs it (the public URL is the gateway's own here)."""
    path = f"/twilio/voice/{call_id}/{what}"
    body = urlencode(params).encode()
    signature = twilio_signature(DEFAULT_AUTH_TOKEN, f"http://127.0.0.1:{port}{path}", params)
    return encode("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded",
                                       "X-Twilio-Signature": signature})


def _call_params(dial: dict[str, Any], status: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": DEFAULT_ACCOUNT_SID, "CallSid": dial["sid"], "From": "+15559990000", "To": dial["to"],
            "Direction": "outbound-api", "CallStatus": status, **extra}


async def bench_priority(workdir: Path, *, lines: int = 50, low_hold_ms: float = 2000, high_hold_ms: float = 100,
                         high_rate: float = 40, duration_s: float = 60) -> None:
    """3. High-priority time to dial, alone and under a low-priority flood at 10x what the trunk carries.

    The trunk has ``lines`` lines (20 % reserved for high, the default). The peer ends every call as Twilio
    would (no answer): low calls after ``low_hold_ms``, so the trunk carries lines/hold low calls per second
    and the flood offers ten times that; high calls hold their line ``high_hold_ms``. Each phase has
    ``high_rate * duration_s`` high-priority samples (thousands), timed from the request being sent.
    """
    trunk = Trunk(lines=lines, end_after_ms=low_hold_ms, hold_ms_to=((URGENT_NUMBER, high_hold_ms),))
    flood_rate = 10 * lines / (low_hold_ms / 1000)
    samples = int(high_rate * duration_s)
    settings = (f"{trunk.describe()} (the high-priority number); 20 % of the lines reserved for high (the "
                f"default); high alerts {high_rate:g}/s for {duration_s:g} s a phase ({samples} samples), low flood "
                f"{flood_rate:g}/s")
    print(f"[priority] high alerts at {high_rate:g}/s for {duration_s:g} s alone, then under a low flood of "
          f"{flood_rate:g}/s (10x what the trunk carries); {settings}")
    async with peer("twilio", *trunk.peer_options()) as p, deploy(SQLITE, _on_twilio(p, trunk), workdir) as d:
        load = LoadGenerator("127.0.0.1", *d.ports)
        try:
            await load.run(rate=20, duration_s=2, request=alert_request("high-warmup", urgency="high"))
            await asyncio.sleep(1)
            alone = await load.run(rate=high_rate, duration_s=duration_s,
                                   request=alert_request("high-alone", urgency="high"))
            alone_found = await _dials(d, p, alone)
            flood = asyncio.create_task(load.run(rate=flood_rate, duration_s=duration_s + 5,
                                                 request=alert_request("low-flood")))
            await asyncio.sleep(5)  # let the flood fill the trunk and build a queue first
            loaded = await load.run(rate=high_rate, duration_s=duration_s,
                                    request=alert_request("high-flood", urgency="high"))
            flood_run = await flood
            loaded_found = await _dials(d, p, loaded)
        finally:
            await load.close()
    low_dialled = sum(1 for dial in p.dials.values() if dial["to"] != URGENT_NUMBER)
    print(f"  high alerts dialled: {len(alone_found)} of {samples} alone, {len(loaded_found)} of {samples} under "
          f"the flood; low alerts offered {len(flood_run.results)}, low calls dialled {low_dialled} (the rest wait)")
    alone_lat = [t - r.scheduled for r, t in alone_found]
    loaded_lat = [t - r.scheduled for r, t in loaded_found]
    report("high priority request sent to dial p50 / p95 / p99, alone", _spread(alone_lat), "-", settings)
    report("high priority request sent to dial p50 / p95 / p99, under a 10x low flood", _spread(loaded_lat), "-",
           settings)
    report("ratio of the p99s, flood / alone", f"{percentile(loaded_lat, 99) / percentile(alone_lat, 99):.2f}",
           "<= 1.5", settings)


async def bench_webhook_and_memory(workdir: Path, *, calls: int = 5000, rate: float = 500,
                                   duration_s: float = 20) -> None:
    """4 (TwiML part). Webhook latency at ``rate``/s; 5. resident memory per tracked active call."""
    print(f"[webhook+memory] {calls} answered calls in progress; then TwiML gather webhooks at {rate:.0f}/s")
    port = free_port()
    async with peer("twilio") as p, gateway(twilio_config(port, p.url), workdir, port) as gw:
        load = LoadGenerator("127.0.0.1", port)
        await load.run(rate=200, duration_s=1, request=alert_request("warmup"))
        await asyncio.sleep(1)
        before = gw.rss_kib()
        await load.run(rate=1000, duration_s=calls / 1000, request=alert_request("mem"))
        await _wait_for_dials(p, calls + 200)
        dials = [d for c, d in p.dials.items() if c.startswith("page-")]
        answers = await load.run(rate=1000, duration_s=len(dials) / 1000, request=lambda i: twilio_webhook(
            port, dials[i]["call_id"], "answer", _call_params(dials[i], "in-progress")))
        ordered = sorted(answers.results, key=lambda r: r.index)
        live = [d for d, r in zip(dials, ordered, strict=False) if r.status == 200]
        await asyncio.sleep(2)
        after = gw.rss_kib()
        print(f"  {len(live)} calls answered and in their flow; gateway RSS {before} KiB -> {after} KiB")
        report(f"memory per active call at {len(live)} calls", f"{(after - before) / max(1, len(live)):.1f} KiB",
               "<= 50 KiB")
        run = await load.run(rate=rate, duration_s=duration_s, request=lambda i: twilio_webhook(
            port, live[i % len(live)]["call_id"], "gather", _call_params(live[i % len(live)], "in-progress",
                                                                        Digits="*")))
        await load.close()
        ok = [r.latency_s for r in run.results if r.status == 200 and b"<Gather" in r.body]
        print(f"  {len(ok)} of {int(rate * duration_s)} gather webhooks answered with TwiML, {run.errors} errors")
        report(f"TwiML webhook latency p50 at {rate:.0f}/s", _ms(percentile(ok, 50)), "-")
        report(f"TwiML webhook latency p99 at {rate:.0f}/s", _ms(percentile(ok, 99)), "<= 5 ms")


def asterisk_config(port: int, ami_port: int, agi_port: int) -> str:
    base = twilio_config(port, "http://unused").split("twilio:")[0]
    return base.replace("policies:\n", "policies:\n  hotline: {steps: [{notify: primary, timeout: 1h}]}\n") + f"""
hotlines:
  - {{name: bench, number: "{HOTLINE_NUMBER}", team: ops, policy: hotline, priority_menu: true}}
asterisk:
  port: {ami_port}
  username: gateway
  secret: {AMI_SECRET}
  caller_id: "+15559990000"
  dial_string: "Local/{{number}}@sim-phones"
  agi_listen_port: {agi_port}
  agi_url: "agi://127.0.0.1:{agi_port}"
  max_channels: 1000
"""


async def _agi_caller(agi_port: int, index: int, steps: list[float]) -> None:
    """One caller on the hotline route, answering like Asterisk at once; a wrong menu key each time.

    A step is the gateway's time from our reply to its next command. The session ends at the hold.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", agi_port)
    writer.write(agi_environment(script="hotline", request_host=f"127.0.0.1:{agi_port}",
                                 channel=f"PJSIP/caller-{index:08x}", uniqueid=f"bench-{index}",
                                 callerid=f"+1555{index % 10_000_000:07d}", extension=HOTLINE_NUMBER))
    replied = None
    try:
        while True:
            line = (await reader.readline()).decode().strip()
            if not line:
                return
            if replied is not None:
                steps.append(time.monotonic() - replied)
            if line.startswith("EXEC MusicOnHold") or line == "HANGUP":
                return
            if line.startswith("WAIT FOR DIGIT"):
                reply = "200 result=55"  # "7": not in the menu, so the menu plays again
            elif line.startswith("GET DATA"):
                reply = "200 result=7"
            elif line.startswith("STREAM FILE"):
                reply = "200 result=0 endpos=8000"
            else:
                reply = "200 result=0"
            writer.write(reply.encode() + b"\n")
            replied = time.monotonic()
    finally:
        writer.close()


async def bench_fastagi(workdir: Path, *, sessions_per_s: float = 25, duration_s: float = 20) -> None:
    """4 (FastAGI part). Gateway time per AGI step (our reply -> its next command), hotline callers in parallel."""
    port, agi_port = free_port(), free_port()
    async with peer("ami") as pbx, gateway(asterisk_config(port, pbx.port, agi_port), workdir, port):
        steps: list[float] = []
        await asyncio.gather(*(_agi_caller(agi_port, i, []) for i in range(20)))  # warm-up
        start = time.monotonic()
        tasks = []
        for i in range(int(sessions_per_s * duration_s)):
            delay = start + i / sessions_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_agi_caller(agi_port, 1000 + i, steps)))
        await asyncio.gather(*tasks, return_exceptions=True)
        rate = len(steps) / (time.monotonic() - start)
        print(f"[fastagi] {len(tasks)} hotline callers ({sessions_per_s:.0f}/s), {len(steps)} AGI steps, "
              f"{rate:.0f} steps/s")
        report(f"FastAGI step latency p50 at {rate:.0f} steps/s", _ms(percentile(steps, 50)), "-")
        report(f"FastAGI step latency p99 at {rate:.0f} steps/s", _ms(percentile(steps, 99)), "<= 5 ms")


def hotline_config(port: int, peer_url: str) -> str:
    """One engineer on call for a Twilio hotline with a priority menu; answering-machine detection on."""
    return f"""
server: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}"}}
store: {{path: bench.db}}
api_tokens: [{{name: bench, token: {TOKEN}}}]
engineers:
  a: {{name: Alice, phones: ["+15550000001"]}}
teams:
  ops: {{members: [a]}}
policies:
  page: {{steps: [{{notify: primary, via: call, timeout: 1h}}]}}
  hotline: {{steps: [{{notify: primary, timeout: 1h}}]}}
default_route: {{team: ops, policy: page, priority: low}}
hotlines:
  - {{name: bench, number: "{HOTLINE_NUMBER}", team: ops, policy: hotline, priority_menu: true}}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: "{peer_url}"
  max_concurrent_calls: 100
  calls_per_second: 100
  machine_detection: true
"""


async def _until(p: Any, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    """Wait for something the peer reports (``check`` returns it, or None)."""
    deadline = time.monotonic() + timeout_s
    while (found := check()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not do what the benchmark waited for")
        p.changed.clear()
        try:
            await asyncio.wait_for(p.changed.wait(), 0.5)
        except TimeoutError:
            pass
    return found


async def _hotline_call(p: Any, twilio: TwilioDriver, index: int, amd_s: float) -> float:
    """One caller dials, presses 1 (emergency) and holds; the engineer answers at once and presses 1.

    Returns the seconds from the caller's dial to the moment both are in the conference: the engineer
    by its own TwiML, the caller when it follows the gateway's REST redirect off hold.
    """
    caller = CallLeg(from_=f"+1555{index % 10_000_000:07d}", to=HOTLINE_NUMBER, direction="inbound")
    await p.send({"incoming": caller.sid, "from": caller.from_, "to": caller.to})
    known = set(p.dials)
    start = time.monotonic()
    _, twiml = await twilio.incoming_call("/twilio/voice/inbound", caller)
    held = await twilio.follow(twiml, leg=caller, digits=["1"], max_redirects=0, url="/twilio/voice/inbound")
    assert held[-1][0] == "parked", held

    async def engineer() -> tuple[float, dict[str, Any], CallLeg]:
        dial = await _until(p, lambda: next((d for c, d in p.dials.items() if c not in known), None))
        form, leg = dial["form"], CallLeg(from_=dial["form"]["From"], to=dial["to"], sid=dial["sid"])
        _, twiml = await twilio.pick_up(form, leg, amd_s=amd_s)  # AMD as the call asked for it
        transcript = await twilio.follow(twiml, leg=leg, digits=["1"], url=form["Url"])
        assert transcript[-1][0] == "dial", transcript
        return time.monotonic(), dial, leg

    async def caller_bridged() -> float:
        update = await _until(p, lambda: next((u for u in p.updates if u["sid"] == caller.sid
                                               and "Url" in u["form"]), None))
        document = await twilio.fetch(update["form"]["Url"], caller)
        transcript = await twilio.follow(document, leg=caller, url=update["form"]["Url"])
        assert transcript[-1][0] == "dial", transcript
        return time.monotonic()

    (engineer_in, dial, leg), caller_in = await asyncio.gather(engineer(), caller_bridged())
    # Both hang up: the gateway frees the engineer's line and closes the hotline record.
    await twilio.status_callback("/twilio/voice/status", caller, "completed")
    await twilio.status_callback(dial["form"]["StatusCallback"], leg, "completed")
    return float(max(engineer_in, caller_in) - start)


async def bench_hotline(workdir: Path, *, calls: int = 40, amd_s: float = TYPICAL_AMD_S) -> None:
    """6. Hotline: caller dials -> bridged with an engineer who answers at once and presses 1 (Twilio).

    The Twilio peer plays Twilio's answering-machine detection as each call asks for it: synchronous AMD
    holds the engineer in silence for ``amd_s`` before the first TwiML request; asynchronous AMD fetches
    the TwiML at once and posts its verdict later; none fetches it at once.
    """
    print(f"[hotline] {calls} hotline calls one after another, Twilio; the engineer answers at once and "
          f"presses 1; synchronous AMD, where a call asks for it, takes {amd_s:g} s")
    port = free_port()
    async with peer("twilio") as p, gateway(hotline_config(port, p.url), workdir, port) as gw:
        async with TwilioDriver(base_url=gw.url) as twilio:
            await _hotline_call(p, twilio, 0, amd_s)  # warm-up
            times = [await _hotline_call(p, twilio, i, amd_s) for i in range(1, calls + 1)]
        await asyncio.gather(*twilio.verdicts, return_exceptions=True)
        screening = next(d for d in p.dials.values())["form"]
        amd = ("asynchronous" if screening.get("AsyncAmd") == "true" else "synchronous") \
            if "MachineDetection" in screening else "none"
        print(f"  answering-machine detection on the engineer's (screening) call: {amd}")
        report("hotline caller dial to bridged with the engineer p50", _ms(percentile(times, 50)), "-")
        report("hotline caller dial to bridged with the engineer p99", _ms(percentile(times, 99)), "-")


HUNG_NUMBER = "+15550000007"


def hung_config(port: int, peer_url: str, *, lines: int = 10, calls_per_second: int = 1000,
                store: str = SQLITE_STORE) -> str:
    """Two low-priority teams on 10 lines: one whose engineer's number never gets an answer from Twilio."""
    return twilio_config(port, peer_url, lines=lines, calls_per_second=calls_per_second, store=store).replace(
        "teams:\n", "teams:\n  stuck: {members: [h]}\n", 1).replace(
        "engineers:\n", f'engineers:\n  h: {{name: H, phones: ["{HUNG_NUMBER}"]}}\n', 1)


def team_alert(tag: str, team: str) -> Callable[[int], bytes]:
    def build(index: int) -> bytes:
        body = json.dumps({"summary": f"bench {tag} {index}", "dedup_key": f"{tag}-{index}", "team": team,
                           "priority": "low"}).encode()
        return encode("POST", "/api/v1/alerts", body, AUTH)

    return build


async def bench_hung(workdir: Path, *, stuck: int = 12, others: int = 50) -> None:
    """Issue 9: while Twilio accepts the creates to one number and never answers, how long other pages wait."""
    trunk = Trunk(lines=10, end_after_ms=500)  # answered calls end, freeing lines
    print(f"[hung] {stuck} alerts to a number whose creates Twilio never answers, then {others} other alerts "
          f"(10/s, the same priority); {trunk.describe()}")
    async with peer("twilio", *trunk.peer_options()) as p, \
            deploy(SQLITE, _on_twilio(p, trunk, hung_config), workdir) as d:
        await p.send({"hang_to": HUNG_NUMBER})
        load = LoadGenerator("127.0.0.1", *d.ports)
        await load.run(rate=stuck * 2, duration_s=0.5, request=team_alert("stuck", "stuck"))
        await asyncio.sleep(1)  # their creates are in flight
        run = await load.run(rate=10, duration_s=others / 10, request=team_alert("other", "ops"))
        found = await _dials(d, p, run, wait_s=180)
        await load.close()
    lat = [t - r.done for r, t in found]
    print(f"  {len(lat)} of {others} other alerts dialled")
    report("other alerts' 202 to first dial while one number hangs, p50", _ms(percentile(lat, 50)), "-",
           trunk.describe())
    report("other alerts' 202 to first dial while one number hangs, max", _ms(max(lat, default=float("nan"))),
           "seconds, not minutes", trunk.describe())


async def bench_failover(workdir: Path) -> None:
    """5. Failover between two gateways on one PostgreSQL (bench.failover says how it is timed)."""
    from bench.failover import bench_failover as run

    await run(workdir)


async def bench_routing(_: Path) -> None:
    """In process: what choosing a route costs per alert (time rules, CEL, receivers, priority rules)."""
    from bench import routing

    print("\nrouting: select_route and priority rules per alert, in process")
    routing.main()


async def bench_layers(_: Path) -> None:
    """In process: who_is_on_call for a one-rotation and a three-layer team, and a calendar feed's span."""
    from bench import oncall_layers

    print("\nlayers: who_is_on_call, in process")
    oncall_layers.main()


async def bench_directory(_: Path) -> None:
    """A directory group's lookup, uncached (the Keycloak peer) and cached (Redis, in process)."""
    from bench import directory

    print("\ndirectory: a Keycloak group's lookup, 20 members")
    await directory.main(20, 500)


BENCHMARKS: dict[str, Callable[[Path], Awaitable[None]]] = {
    "dial": bench_dial,
    "throughput": bench_throughput,
    "priority": bench_priority,
    "webhook": bench_webhook_and_memory,
    "fastagi": bench_fastagi,
    "hotline": bench_hotline,
    "hung": bench_hung,
    "failover": bench_failover,
    "routing": bench_routing,
    "layers": bench_layers,
    "directory": bench_directory,
}


async def _main(names: list[str]) -> None:
    print(f"on-call gateway benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}: "
          f"{os.cpu_count()} cores, Python {platform.python_version()}")
    try:
        for name in names:
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as folder:
                await BENCHMARKS[name](Path(folder))
    finally:
        POSTGRES.close()
    print("\n| measure | result | target | load (1 min) | settings that differ from the defaults |\n"
          "|---|---|---|---|---|")
    for measure, value, target, load, settings in FIGURES:
        print(f"| {measure} | {value} | {target} | {load} | {settings} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} "
                        "(default: all)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    asyncio.run(_main(args.names or list(BENCHMARKS)))


if __name__ == "__main__":
    main()
