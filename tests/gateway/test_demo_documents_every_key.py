"""examples/demo.yaml documents every key the config accepts.

The config reader declares the keys of each section in its ``mapping()`` calls. This test records those
calls while a config that uses every section is loaded, checks that every ``mapping()`` call in the
reader was reached (so a new section cannot slip past), and then looks for each key in its section
of demo.yaml, commented out or not.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from gateway import config as config_module
from gateway.config import load_config

DEMO = Path(__file__).parents[2] / "examples" / "demo.yaml"

EVERY_SECTION = """
server: {host: 127.0.0.1, port: 8080, public_url: "https://oncall.example.com", max_body_bytes: 1048576}
store: {path: gateway.db}
defaults: {region: US, language: en-US, time_zone: UTC}
templates_dir: templates
api_tokens:
  - {name: tests, token: t0k3n}
engineers:
  alice: {name: Alice, phones: ["+15550000001"], language: en-US, email: alice@example.com}
  bob: {name: Bob, phones: ["+15550000002"]}
teams:
  sre:
    members: [alice, bob]
    rotation: {kind: custom, shift: 3d, start: 2026-01-05, handoff: "09:00", time_zone: UTC}
    overrides:
      - {start: "2026-12-24T00:00", end: "2026-12-27T00:00", engineer: bob, role: primary}
    handoff_notice: {lead: 30m, roles: [primary, secondary], via: [sms], time_zone: UTC}
    summary: {every: weekly, day: mon, at: "09:00", to: [alice], via: [sms], time_zone: UTC}
  companyapp2-sre:
    directory: {name: corp, group: /sre/companyapp2}
    rotation: {kind: weekly, start: 2026-01-05}
  noc:
    layers:
      - {name: day, members: [alice, bob], rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00"}}
      - {name: night, members: [bob], when: [after_hours]}
time_windows:
  business_hours:
    time_zone: UTC
    weekly: [{days: mon-fri, from: "09:00", to: "17:00"}]
    dates: [2026-12-24]
    except_dates: [2026-12-25]
    except: [holidays]
  holidays: {dates: [2026-12-31]}
  after_hours: {not: business_hours}
maintenance:
  - {name: db-upgrade, matchers: ['service="db"'], start: "2026-12-24T22:00", end: "2026-12-25T02:00",
     time_zone: UTC, action: suppress, comment: "planned"}
  - {name: nights, matchers: {team: sre}, during: [after_hours], action: low_priority}
heartbeats:
  backup: {interval: 1h, grace: 5m, labels: {team: sre}, team: sre, summary: "backup late", priority: high}
policies:
  default:
    repeat: 1
    steps:
      - {notify: primary, via: call, timeout: 60s, ring_timeout: 30s}
      - {notify: team, via: [email, chat], chat: [ops], timeout: 60s}
routes:
  - {name: r, matchers: ['severity="critical"'], team: sre, policy: default, priority: high,
     routing_key: "0123456789abcdef0123456789abcdef"}
  - {matchers: {team: sre}, team: sre, policy: default, routing_key_env: GATEWAY_TEST_ROUTING_KEY}
  - {name: night, when: [after_hours], unless: holidays, expression: 'labels.tier == "gold"', receiver: "=~prod-.*",
     team: sre, policy: default}
default_route: {team: sre, policy: default, priority: low}
priority_rules:
  - {name: core, matchers: ['equipment="core-router"'], receiver: prod, when: after_hours, unless: [holidays],
     expression: 'hour < 6', routes: [night]}
sandbox:
  enabled: false
  caller_id: "+15559990000"
  lines: 10
  phones:
    "+15550000003": {behaviour: answer, after: 3s, digits: "1"}
hotlines:
  - {name: ops, number: "+15557770000", team: sre, policy: default, greeting: "Hi", priority_menu: false,
     priority: high, voicemail: true, max_voicemail: 2m}
dispatch: {reserved_for_high: 20%, low_wait_warning: 60s}
providers: {voice: [asterisk, twilio], sms: [twilio]}
twilio:
  account_sid: ACxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
  auth_token: secret
  signing_key: key
  from_number: "+15551230000"
  api_base_url: https://api.twilio.com
  max_concurrent_calls: 10
  calls_per_second: 1
  machine_detection: true
asterisk:
  host: 127.0.0.1
  port: 5038
  username: gateway
  secret: secret
  dial_string: "Local/{number}@from-gateway/n"
  caller_id: "+15551230000"
  agi_listen_host: 127.0.0.1
  agi_listen_port: 4573
  agi_url: agi://127.0.0.1:4573
  agi_allowed_hosts: [10.0.0.5]
  max_channels: 10
  tts_command: [espeak-ng, -w, "{out}", "{text}"]
  tts_resample: [sox, "{in}", "{out}"]
  sounds_dir: sounds
  record_dir: recordings
directories:
  corp: {kind: keycloak, url: "https://sso.example.com", realm: company, client_id: oncall-gateway,
         client_secret: s3cret, phone_attribute: phoneNumber, email_attribute: email, cache_ttl: 5m, timeout: 10s}
cache: {url: "redis://127.0.0.1:6379/0"}
kavenegar:
  api_key: key
  sender: "10004346"
  api_url: https://api.kavenegar.com
  inbound_secret: 0123456789abcdef0123
  status_poll_interval: 30s
  receive_poll_interval: 10s
email: {host: smtp.example.com, port: 587, starttls: true, username: u, password: p, from: "On-call <o@example.com>",
        timeout: 30s}
chat:
  ops: {kind: webhook, url: "https://hooks.example.com/x", secret: s, timeout: 10s}
action_links: {secret_env: T_DEMO_LINK_KEY, previous_secret_env: T_DEMO_OLD_LINK_KEY, expires_after: 24h}
"""


def _mapping_call_lines() -> set[int]:
    """Line numbers of every ``self.mapping(...)`` call in the config reader."""
    source = inspect.getsource(config_module)
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "mapping"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"):
            lines.add(node.lineno)
    return lines


def _accepted_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, set[str]], set[int]]:
    """Section (top-level key, "" for the top) -> the keys accepted anywhere below it; the call lines reached."""
    monkeypatch.setenv("GATEWAY_TEST_ROUTING_KEY", "fedcba9876543210fedcba9876543210")
    monkeypatch.setenv("T_DEMO_LINK_KEY", "a link key, long enough")
    monkeypatch.setenv("T_DEMO_OLD_LINK_KEY", "the previous link key")
    keys: dict[str, set[str]] = {}
    reached: set[int] = set()
    original = config_module._Reader.mapping

    def recording(self: Any, raw: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        frame = inspect.currentframe()
        assert frame is not None and frame.f_back is not None
        reached.add(frame.f_back.f_lineno)
        section = re.split(r"[.\[]", path, maxsplit=1)[0]
        keys.setdefault(section, set()).update(allowed)
        return original(self, raw, path, allowed)

    monkeypatch.setattr(config_module._Reader, "mapping", recording)
    (tmp_path / "templates").mkdir()
    path = tmp_path / "gateway.yaml"
    path.write_text(EVERY_SECTION)
    load_config(path)
    return keys, reached


def _section_block(text: str, section: str) -> str:
    """The lines of demo.yaml from ``section:`` (commented out or not) to the next top-level key."""
    lines = text.splitlines()
    top = re.compile(r"^#? ?([a-z_]+):")
    start = next((i for i, line in enumerate(lines) if (m := top.match(line)) and m.group(1) == section), None)
    assert start is not None, f"demo.yaml has no '{section}:' section"
    end = next((i for i in range(start + 1, len(lines)) if top.match(lines[i])), len(lines))
    return "\n".join(lines[start:end])


def test_every_reader_section_is_exercised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, reached = _accepted_keys(tmp_path, monkeypatch)
    missing = _mapping_call_lines() - reached
    assert not missing, f"config.py lines {sorted(missing)} read a section EVERY_SECTION does not use: add it"


def test_demo_yaml_documents_every_accepted_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys, _ = _accepted_keys(tmp_path, monkeypatch)
    text = DEMO.read_text()
    undocumented = []
    for section, accepted in sorted(keys.items()):
        if section == "":
            block = text
            pattern = r"^#? ?{key}:"
        else:
            block = _section_block(text, section)
            pattern = r"(?:^|[\s#{{,-]){key}:"
        for key in sorted(accepted):
            if not re.search(pattern.format(key=re.escape(key)), block, re.MULTILINE):
                undocumented.append(f"{section or '(top level)'}.{key}")
    assert not undocumented, f"accepted by the config but not documented in examples/demo.yaml: {undocumented}"
