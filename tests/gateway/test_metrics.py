"""/metrics: counters that move with alerts, pages and hotline calls; promtool accepts the page; the Grafana
dashboard queries only metrics the gateway exports; each app has a registry of its own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.peer_events import PeerEvents
from gateway.telemetry import Telemetry
from providers.base import SmsRequest, SmsStatus, SmsStatusChanged
from tests.gateway.test_provider_manager import _call, _rig
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.peers.twilio_driver import TwilioDriver
from tests.support import ALICE, AUTH, BASE_CONFIG, BOB, Gateway, eventually, write_config

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "examples" / "grafana" / "oncall-gateway.json"
README = ROOT / "README.md"
HOTLINE = "+15557770000"
CALLER = "+15557770001"
PUBLIC = "https://gateway.example.com"
HOTLINE_CONFIG = BASE_CONFIG.replace("policies:\n", """policies:
  hotline:
    steps:
      - {notify: primary, timeout: 20s}
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


async def scrape(gateway: Gateway) -> str:
    async with gateway.client.get("/metrics", headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "text/plain"
        return await resp.text()


def value(text: str, sample: str, **labels: str) -> float:
    """The value of the sample named ``sample`` with exactly ``labels`` (0 when absent, as Prometheus reads it)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return float(found.value)
    return 0.0


def exported_names(text: str) -> set[str]:
    """Every series name a query may use: the samples, and each family's names even before its first sample."""
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


async def acknowledged_alert(gateway: Gateway) -> int:
    """An alert from the API, acknowledged on its call 15 s (fake time) after it came (Alice presses 1)."""
    status, body = await gateway.post("/api/v1/alerts", {"summary": "disk full", "labels": {"team": "sre"}})
    assert status == 202, body
    await gateway.ringing(ALICE)
    await gateway.clock.advance(15)  # within the step's 20 s ring time
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/press", {"digits": "1"})
    await gateway.alert_where(body["id"], lambda a: a["status"] == "acknowledged")
    return int(body["id"])


async def dial_hotline(gateway: Gateway) -> None:
    status, caller = await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/dial", {"to": HOTLINE})
    assert status == 200, caller
    _, caller = await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/press", {"digits": "1"})
    assert "[music on hold]" in caller["call"]["hearing"]


async def connected_hotline_call(gateway: Gateway) -> None:
    """A caller waits, Alice accepts and is connected, and the caller hangs up."""
    await dial_hotline(gateway)
    await gateway.ringing(ALICE)
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/answer")
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/press", {"digits": "1"})

    async def bridged() -> bool:
        return bool((await gateway.phone(CALLER))["call"]["bridged_with"] == ALICE)

    await eventually(bridged)
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/hangup")
    _, alerts = await gateway.get("/api/v1/alerts")
    hotline = next(a for a in alerts["alerts"] if a["source"] == "hotline")
    await gateway.alert_where(hotline["id"], lambda a: a["status"] == "resolved")


async def test_an_alert_in_counts_once_by_source_and_route(gateway: Gateway) -> None:
    before = await scrape(gateway)
    assert value(before, "gateway_alerts_received_total", source="api", route="sre-critical") == 0
    body = {"summary": "disk full", "labels": {"team": "sre"}, "dedup_key": "disk-full"}
    assert (await gateway.post("/api/v1/alerts", body))[0] == 202
    assert (await gateway.post("/api/v1/alerts", body))[0] == 200  # a duplicate: no new alert
    after = await scrape(gateway)
    assert value(after, "gateway_alerts_received_total", source="api", route="sre-critical") == 1
    assert value(after, "gateway_alert_status_changes_total", status="triggered") == 1
    assert value(after, "gateway_alert_status_changes_total", status="acknowledged") == 0


async def test_a_declined_call_counts_as_a_page_outcome_on_its_provider(gateway: Gateway) -> None:
    assert (await gateway.post("/api/v1/alerts", {"summary": "m", "labels": {"team": "sre"}}))[0] == 202
    await gateway.ringing(ALICE)
    text = await scrape(gateway)
    assert value(text, "gateway_alert_to_first_dial_seconds_count") == 1
    assert value(text, "gateway_pages_total", channel="call", provider="sandbox", outcome="declined") == 0
    await gateway.post(f"/api/v1/sandbox/phones/{ALICE}/reject")

    async def declined() -> float:
        return value(await scrape(gateway), "gateway_pages_total", channel="call", provider="sandbox",
                     outcome="declined")

    assert await eventually(declined) == 1


async def test_acknowledging_observes_the_time_to_acknowledge(gateway: Gateway) -> None:
    await acknowledged_alert(gateway)
    text = await scrape(gateway)
    assert value(text, "gateway_time_to_acknowledge_seconds_count", source="api", priority="high") == 1
    # Alice pressed 1 15 s (fake time) after the alert: in the 20 s bucket, not the 10 s one.
    assert value(text, "gateway_time_to_acknowledge_seconds_bucket", source="api", priority="high", le="10.0") == 0
    assert value(text, "gateway_time_to_acknowledge_seconds_bucket", source="api", priority="high", le="20.0") == 1
    assert value(text, "gateway_alert_status_changes_total", status="acknowledged") == 1
    assert value(text, "gateway_pages_total", channel="call", provider="sandbox", outcome="acknowledged") == 1


async def test_a_waiting_hotline_caller_shows_until_they_hang_up(gateway: Gateway) -> None:
    text = await scrape(gateway)
    assert 'gateway_hotline_callers_waiting{hotline="ops"} 0.0' in text
    await dial_hotline(gateway)
    text = await scrape(gateway)
    assert value(text, "gateway_hotline_callers_waiting", hotline="ops") == 1
    assert value(text, "gateway_alerts_received_total", source="hotline", route="hotline:ops") == 1
    await gateway.post(f"/api/v1/sandbox/phones/{CALLER}/hangup")

    async def gone() -> str | None:
        text = await scrape(gateway)
        return text if value(text, "gateway_hotline_callers_waiting", hotline="ops") == 0 else None

    text = await eventually(gone)
    assert value(text, "gateway_hotline_wait_seconds_count", outcome="hung_up") == 1
    assert value(text, "gateway_hotline_wait_seconds_count", outcome="connected") == 0


async def test_promtool_accepts_metrics_after_alerts_pages_an_ack_and_a_hotline_call(gateway: Gateway) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (./scripts/test does)"
    await acknowledged_alert(gateway)
    await gateway.post("/api/v1/sms", {"to": ALICE, "message": "a text page"})

    async def delivered() -> float:
        return value(await scrape(gateway), "gateway_pages_total", channel="sms", provider="sandbox",
                     outcome="delivered")

    assert await eventually(delivered) == 1
    await connected_hotline_call(gateway)
    text = await scrape(gateway)
    assert value(text, "gateway_hotline_wait_seconds_count", outcome="connected") == 1
    assert value(text, "gateway_hotline_callers_waiting", hotline="ops") == 0
    assert value(text, "gateway_pages_total", channel="call", provider="sandbox", outcome="accepted") == 1
    assert value(text, "gateway_alert_to_first_dial_seconds_count") == 2
    assert value(text, "process_resident_memory_bytes") > 0
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), (result.stdout, result.stderr)


async def test_the_dashboard_queries_only_exported_metrics(gateway: Gateway) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_exprs(dashboard))
    queried = {name for expr in exprs for name in re.findall(r"\b(?:gateway|process)_[a-z0-9_]+", expr)}
    assert len(queried) >= 10, queried
    # Alert rate, pages by outcome, dial latency p99, time to ack, providers up, queue depth, hotline waiting.
    for wanted in ("gateway_alerts_received_total", "gateway_pages_total", "gateway_provider_up",
                   "gateway_alert_to_first_dial_seconds_bucket", "gateway_time_to_acknowledge_seconds_bucket",
                   "gateway_queue_depth", "gateway_hotline_callers_waiting"):
        assert wanted in queried, wanted
    assert any("histogram_quantile(0.99" in expr and "first_dial" in expr for expr in exprs)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])
    missing = queried - exported_names(await scrape(gateway))
    assert not missing, f"the dashboard queries metrics /metrics does not export: {sorted(missing)}"


def _exprs(node: Any) -> Any:
    if isinstance(node, dict):
        for key, item in node.items():
            if key == "expr" and isinstance(item, str):
                yield item
            else:
                yield from _exprs(item)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


async def test_each_app_counts_in_a_registry_of_its_own(aiohttp_client: Callable[..., Any], tmp_path: Path,
                                                        gateway: Gateway) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = Gateway(await aiohttp_client(create_app(load_config(write_config(other_dir, HOTLINE_CONFIG)),
                                                    clock=FakeClock())), FakeClock())
    assert (await gateway.post("/api/v1/alerts", {"summary": "m", "labels": {"team": "sre"}}))[0] == 202
    assert value(await scrape(gateway), "gateway_alerts_received_total", source="api", route="sre-critical") == 1
    assert value(await scrape(other), "gateway_alerts_received_total", source="api", route="sre-critical") == 0
    async with other.client.get("/metrics") as resp:
        assert resp.status == 401


async def test_refused_twilio_webhooks_are_counted_by_reason(aiohttp_client: Callable[..., Any],
                                                              tmp_path: Path) -> None:
    async with FakeTwilioApi() as api:
        config = BASE_CONFIG + f"""
server:
  public_url: {PUBLIC}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "+15559990000"
  api_base_url: {api.base_url}
"""
        client = await aiohttp_client(create_app(load_config(write_config(tmp_path, config)), clock=FakeClock()))
        gateway = Gateway(client, FakeClock())
        params = {"From": "+15550009999", "To": "+15559990000", "Body": "hi", "MessageSid": "SM1"}
        async with TwilioDriver(base_url=str(client.make_url("/")), public_base_url=PUBLIC) as twilio:
            status, _ = await twilio.post("/twilio/sms/inbound", params, signed=False)
            assert status == 403
            status, _ = await twilio.post("/twilio/sms/inbound", params,
                                          signature=twilio.sign(PUBLIC + "/elsewhere", params))
            assert status == 403
            status, _ = await twilio.post("/twilio/sms/inbound", params)
            assert status == 200
        text = await scrape(gateway)
    assert value(text, "gateway_webhook_signature_failures_total", provider="twilio", reason="missing") == 1
    assert value(text, "gateway_webhook_signature_failures_total", provider="twilio", reason="mismatch") == 1


async def test_the_readme_alerting_rules_pass_promtool(gateway: Gateway, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (./scripts/test does)"
    section = README.read_text().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rules = [block for block in re.findall(r"```yaml\n(.*?)```", section, re.S) if "groups:" in block]
    assert len(rules) == 1, "the README's Metrics section shows one Prometheus rules file"
    path = tmp_path / "rules.yml"
    path.write_text(rules[0])
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    missing = set(re.findall(r"\bgateway_[a-z0-9_]+", rules[0])) - exported_names(await scrape(gateway))
    assert not missing, f"the README's rules use metrics /metrics does not export: {sorted(missing)}"


async def test_a_failover_counts_the_error_on_the_first_provider_and_the_page_on_the_second() -> None:
    manager, (asterisk, _twilio), _gateway, _carried, _clock = _rig("asterisk", "twilio")
    telemetry = manager.telemetry = Telemetry()
    asterisk.refuse = True
    await manager.place_call(_call("page-1"))
    telemetry.page_finished("page-1", channel="call", outcome="acknowledged")
    text = telemetry.exposition().decode()
    assert value(text, "gateway_provider_errors_total", provider="asterisk") == 1
    assert value(text, "gateway_provider_errors_total", provider="twilio") == 0
    assert value(text, "gateway_pages_total", channel="call", provider="twilio", outcome="acknowledged") == 1
    assert value(text, "gateway_pages_total", channel="call", provider="asterisk", outcome="acknowledged") == 0


async def test_a_waiting_caller_is_not_counted_past_the_longest_possible_wait(gateway: Gateway) -> None:
    """Whatever was missed about the caller (their call's end reached another gateway, say), the gauge drops
    once they cannot be waiting any more: the hotline's policy run to the end twice over, and an hour."""
    await dial_hotline(gateway)
    assert value(await scrape(gateway), "gateway_hotline_callers_waiting", hotline="ops") == 1
    await gateway.clock.advance(3600)  # the policy (one step: 20 s, ringing 20 s) ran out long ago
    assert value(await scrape(gateway), "gateway_hotline_callers_waiting", hotline="ops") == 1
    await gateway.clock.advance(2 * 40 + 1)
    text = await scrape(gateway)
    assert value(text, "gateway_hotline_callers_waiting", hotline="ops") == 0
    assert value(text, "gateway_hotline_wait_seconds_count", outcome="hung_up") == 0  # not timed: unknown


async def test_a_caller_whose_alert_another_gateway_closed_is_not_waiting_here() -> None:
    """The 'closed' push from another gateway (the caller's hang-up or an engineer's accept reached it)."""
    telemetry = Telemetry()
    telemetry.hotlines(["ops"])
    telemetry.caller_waiting("call-1", hotline="ops", alert_id=7, arrived_at=0.0, gone_by=1e9)
    telemetry.caller_waiting("call-2", hotline="ops", alert_id=8, arrived_at=0.0, gone_by=1e9)
    released: list[int] = []

    class Paging:
        def __init__(self) -> None:
            self.telemetry = telemetry

        async def release_local(self, alert_id: int) -> None:
            released.append(alert_id)

    peers = PeerEvents(Paging(), None, None, None)  # type: ignore[arg-type]
    await peers.alert_closed_elsewhere(7)
    await peers.alert_closed_elsewhere(99)  # not a hotline caller's
    text = telemetry.exposition().decode()
    assert released == [7, 99]
    assert value(text, "gateway_hotline_callers_waiting", hotline="ops") == 1  # call-2 still waits
    telemetry.caller_done("call-1", outcome="hung_up", now=5.0)  # its end heard here later: counted once
    assert value(telemetry.exposition().decode(), "gateway_hotline_wait_seconds_count", outcome="hung_up") == 0


async def test_a_later_steps_call_after_a_restart_is_not_timed_as_the_alerts_first(
    aiohttp_client: Callable[..., Any], tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, HOTLINE_CONFIG))
    clock = FakeClock()
    before = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
    status, body = await before.post("/api/v1/alerts", {"summary": "disk full", "labels": {"team": "sre"}})
    assert status == 202, body
    await before.ringing(ALICE)
    assert value(await scrape(before), "gateway_alert_to_first_dial_seconds_count") == 1
    await before.client.close()  # a restart: the memory of alerts dialled already is gone

    clock = FakeClock()
    after = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
    await clock.advance(21)  # the first step (20 s) is over: the second calls bob
    await after.ringing(BOB)
    assert value(await scrape(after), "gateway_alert_to_first_dial_seconds_count") == 0  # was 1: timed again


async def test_a_delivery_reported_twice_counts_one_page() -> None:
    manager, (twilio,), _gateway, _carried, _clock = _rig("twilio")
    telemetry = manager.telemetry = Telemetry()
    await manager.send_sms(SmsRequest(sms_id="page-1", to="+15550000001", body="hi"))
    for _ in range(2):  # a provider's status callback, retried
        await twilio.events.sms_status(SmsStatusChanged(sms_id="page-1", status=SmsStatus.DELIVERED))
    text = telemetry.exposition().decode()
    assert value(text, "gateway_pages_total", channel="sms", provider="twilio", outcome="delivered") == 1
