from __future__ import annotations

import dataclasses
import textwrap
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest

from gateway.config import _TOP_KEYS as TOP_KEYS
from gateway.config import ConfigError, load_config
from gateway.durations import format_duration, parse_duration

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"

MINIMAL = """
api_tokens:
  - {name: demo, token: demo-token}
"""

FULL = """
server: {host: 0.0.0.0, port: 9000, max_body_bytes: 2048}
store: {path: data/gw.db}
defaults: {region: GB, language: en-GB, time_zone: Europe/London}
templates_dir: tpl
api_tokens:
  - {name: inline, token: " abc "}
  - {name: env, token_env: TEST_GATEWAY_TOKEN}
engineers:
  alice: {phones: "020 7946 0958"}
  bob: {name: Bob B, phones: ["+1 555 000 0002", "+15550000012"], language: de-DE}
  dave: {phones: ["+15550000004"]}
teams:
  sre:
    members: [alice, bob]
    rotation: {kind: custom, shift: 3d12h, start: 2026-11-02, handoff: "08:30", time_zone: Europe/Berlin}
    overrides:
      - {start: "2026-12-24T00:00", end: "2026-12-27T00:00", engineer: dave}
      - {start: "2026-12-24T00:00+00:00", end: 2026-12-25, engineer: alice, role: secondary}
  db:
    members: [dave]
policies:
  default:
    repeat: 2
    steps:
      - {notify: primary, timeout: 20s}
      - {notify: engineer:dave, via: both, timeout: 90}
      - {notify: team, via: sms}
routes:
  - name: sre-critical
    matchers: ['team="sre"', 'severity=~"critical|page"', {env: prod}]
    team: sre
    policy: default
    priority: high
  - {matchers: {team: db}, team: db, policy: default, routing_key_env: TEST_GATEWAY_KEY}
default_route: {team: sre, policy: default}
twilio: {account_sid: AC0123, auth_token: not-a-real-token, from_number: "+1 555 999 0002"}
sandbox:
  enabled: false
  caller_id: "+1 555 999 0001"
  phones:
    "+15550000003": {behaviour: never_answer}
    "+1 555 000 0005": {behaviour: answer, after: 3s, digits: 1}
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_demo_config_loads() -> None:
    config = load_config(DEMO)
    assert config.source == DEMO
    assert (config.host, config.port, config.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert config.store_path == DEMO.parent / "demo.db"
    assert [t.token for t in config.api_tokens] == ["demo-token"]
    assert config.engineers["alice"].phones == ("+15550000001",)
    assert config.engineers["bob"].phones == ("+15550000002",)
    sre = config.teams["sre"]
    assert sre.members == ("alice", "bob")
    assert sre.rotation is not None
    assert (sre.rotation.kind, sre.rotation.start, sre.rotation.handoff) == ("weekly", date(2026, 1, 5), time(9))
    policy = config.policies["default"]
    assert policy.repeat == 0
    assert [(s.target, s.timeout_s) for s in policy.steps] == [("primary", 20), ("secondary", 20)]
    assert [(r.name, r.priority) for r in config.routes] == [("sre-critical", "high")]
    assert config.default_route is not None
    assert (config.default_route.name, config.default_route.team, config.default_route.priority) == (
        "default",
        "sre",
        "low",
    )
    assert config.sandbox.enabled


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(str(path))
    assert config.source == path
    assert (config.host, config.port, config.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert config.max_body_bytes == 1024 * 1024
    assert config.store_path == tmp_path / "gateway.db"
    assert (config.default_region, config.default_language, config.time_zone) == ("US", "en-US", "UTC")
    assert config.templates_dir is None
    assert config.engineers == {} and config.teams == {} and config.routes == ()
    assert config.default_route is None
    assert config.sandbox.enabled and config.sandbox.caller_id == "+15559990000"


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GATEWAY_TOKEN", "from-env")
    monkeypatch.setenv("TEST_GATEWAY_KEY", "routing-secret")
    (tmp_path / "tpl").mkdir()
    config = load_config(write(tmp_path, FULL))

    assert (config.host, config.port, config.max_body_bytes) == ("0.0.0.0", 9000, 2048)
    assert config.public_url == "http://0.0.0.0:9000"
    assert config.store_path == tmp_path / "data" / "gw.db"
    assert config.templates_dir == tmp_path / "tpl"
    assert [(t.name, t.token) for t in config.api_tokens] == [("inline", "abc"), ("env", "from-env")]

    alice, bob = config.engineers["alice"], config.engineers["bob"]
    assert (alice.name, alice.phones, alice.language) == ("alice", ("+442079460958",), "en-GB")
    assert (bob.name, bob.phones, bob.language) == ("Bob B", ("+15550000002", "+15550000012"), "de-DE")

    sre = config.teams["sre"]
    assert sre.rotation is not None
    assert sre.rotation.shift == timedelta(days=3, hours=12)
    assert (sre.rotation.handoff, sre.rotation.time_zone) == (time(8, 30), "Europe/Berlin")
    first, second = sre.overrides
    # naive times are read in the rotation's zone (CET in December), stored in UTC
    assert (first.start, first.end) == (datetime(2026, 12, 23, 23, tzinfo=UTC), datetime(2026, 12, 26, 23, tzinfo=UTC))
    assert (first.role, first.engineer) == ("primary", "dave")
    assert second.start == datetime(2026, 12, 24, tzinfo=UTC)  # carries its own offset
    assert second.role == "secondary"
    assert config.teams["db"].rotation is None

    steps = config.policies["default"].steps
    assert config.policies["default"].repeat == 2
    assert [(s.target, s.engineer, s.via, s.timeout_s) for s in steps] == [
        ("primary", None, "call", 20),
        ("engineer", "dave", "both", 90),
        ("team", None, "sms", 300),
    ]

    critical, db = config.routes
    assert [(m.label, m.op, m.value) for m in critical.matchers] == [
        ("team", "=", "sre"),
        ("severity", "=~", "critical|page"),
        ("env", "=", "prod"),
    ]
    assert (critical.priority, critical.routing_key) == ("high", None)
    assert (db.name, db.priority, db.routing_key) == ("route-1", "low", "routing-secret")
    assert [(m.label, m.value) for m in db.matchers] == [("team", "db")]

    assert not config.sandbox.enabled
    assert config.sandbox.caller_id == "+15559990001"
    assert [(p.number, p.behaviour, p.after_s, p.digits) for p in config.sandbox.phones] == [
        ("+15550000003", "never_answer", 2.0, ""),
        ("+15550000005", "answer", 3.0, "1"),
    ]


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert isinstance(config.api_tokens, tuple)


def test_many_problems_reported_at_once_with_key_paths(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        server: {port: 70000, colour: red}
        api_tokens: [{name: demo, token: t}]
        engineers:
          alice: {phones: ["+1 555"], nmae: A}
          bob: {phones: "hello"}
        teams:
          sre:
            members: [alice, carol, alice]
        policies:
          p:
            steps:
              - {notify: engineer:zed, via: pigeon, timeout: 0.5s}
        routes:
          - {matchers: ['sev=~"(("'], team: nope, policy: p, priority: urgent}
        default_route: {team: sre, policy: nope}
        """,
    )
    name = str(path)
    assert problems_of(path) == [
        f"{name}: server.colour: unknown key (expected one of: host, port, public_url, max_body_bytes)",
        f"{name}: server.port: 70000 is out of range (0..65535)",
        f"{name}: engineers.alice.nmae: unknown key (expected one of: name, phones, language, notification_rules, "
        "email)",
        f"{name}: engineers.alice.phones[0]: '+1 555' is not a phone number (too short)",
        f"{name}: engineers.bob.phones: 'hello' is not a phone number "
        "(could not parse: the string supplied did not seem to be a phone number)",
        f"{name}: teams.sre.members[1]: unknown engineer 'carol'",
        f"{name}: teams.sre.members[2]: engineer 'alice' is listed twice",
        f"{name}: policies.p.steps[0].notify: unknown engineer 'zed'",
        f"{name}: policies.p.steps[0].via: 'pigeon' is not one of: call, sms, both, email, chat "
        "(or a list of channels)",
        f"{name}: policies.p.steps[0].timeout: must be at least 1s, got '0.5s'",
        f"{name}: routes[0].team: unknown team 'nope'",
        f"{name}: routes[0].matchers[0]: 'sev=~\"((\"' has an invalid regular expression: "
        "missing ), unterminated subpattern at position 4",
        f"{name}: routes[0].priority: 'urgent' is not one of: high, low",
        f"{name}: default_route.policy: unknown policy 'nope'",
    ]


def test_problem_names_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "api_tokens: [{name: a, token: t}]\nbogus: 1\n", name="my.yaml")
    monkeypatch.chdir(tmp_path)
    assert problems_of(Path("my.yaml")) == [
        "my.yaml: bogus: unknown key (expected one of: server, store, defaults, templates_dir, api_tokens, "
        f"engineers, teams, policies, routes, {', '.join(TOP_KEYS[9:])})"
    ]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("defaults: {region: XX}", "defaults.region: 'XX' is not a region code (two letters, e.g. US, GB, DE)"),
        (
            "defaults: {time_zone: Mars/Base}",
            "defaults.time_zone: 'Mars/Base' is not a known IANA time zone (e.g. Europe/Berlin)",
        ),
        ("defaults: {language: 'english!'}", "defaults.language: 'english!' is not a language tag (e.g. en-US, de-DE)"),
        ("server: {port: web}", "server.port: expected a whole number, got the text 'web'"),
        ("server: {max_body_bytes: 0}", "server.max_body_bytes: must be at least 1, got 0"),
        (
            "server: {public_url: 'ftp://x'}",
            "server.public_url: 'ftp://x' is not an http(s) URL like https://oncall.example.com",
        ),
        ("server: [1]", "server: expected a mapping, got a list"),
        ("store: {path: 5}", "store.path: expected text, got the number 5"),
        ("sandbox: {enabled: maybe}", "sandbox.enabled: expected true or false, got the text 'maybe'"),
        ("sandbox: {caller_id: '+1 555'}", "sandbox.caller_id: '+1 555' is not a phone number (too short)"),
        (
            "sandbox: {phones: {'+15550000003': {behaviour: sleepy}}}",
            "sandbox.phones.+15550000003.behaviour: 'sleepy' is not one of: answer, never_answer, busy, reject",
        ),
        (
            "sandbox: {phones: {'+15550000003': {behaviour: busy, digits: '1'}}}",
            "sandbox.phones.+15550000003.digits: only allowed with behaviour: answer",
        ),
        (
            "sandbox: {phones: {+15550000003: {behaviour: busy}}}",
            "sandbox.phones.15550000003: expected text, got the number 15550000003: "
            "quote phone numbers (YAML reads +1555... as a number)",
        ),
        (
            "sandbox: {phones: {'+15550000003': {behaviour: answer, after: soon}}}",
            "sandbox.phones.+15550000003.after: 'soon' is not a duration (use e.g. 20s, 5m, 1h30m)",
        ),
        ("templates_dir: nowhere", "templates_dir: folder does not exist: {tmp}/nowhere"),
        ("engineers: {'bad id': {phones: '+15550000001'}}", "engineers.bad id: an id holds letters, digits, "
         "'_', '.' and '-', starting with a letter or digit"),
        ("engineers: {alice: {}}", "engineers.alice.phones: at least one entry is required"),
        ("engineers: {alice: {phones: []}}", "engineers.alice.phones: at least one entry is required"),
        (
            "engineers: {alice: {phones: ['+15550000001', '(555) 000-0001']}}",
            "engineers.alice.phones[1]: phone number '+15550000001' is listed twice",
        ),
        ("engineers: [alice]", "engineers: expected a mapping of ids, got a list"),
    ],
)
def test_single_problem(tmp_path: Path, section: str, expected: str) -> None:
    path = write(tmp_path, MINIMAL + section + "\n")
    assert problems_of(path) == [f"{path}: {expected.format(tmp=tmp_path)}"]


TEAM_BASE = """
api_tokens: [{name: a, token: t}]
engineers:
  alice: {phones: "+15550000001"}
  bob: {phones: "+15550000002"}
policies:
  p: {steps: [{notify: primary}]}
default_route: {team: sre, policy: p}
teams:
  sre:
    members: [alice, bob]
"""


@pytest.mark.parametrize(
    ("team_extra", "expected"),
    [
        ("    rotation: {kind: hourly, start: 2026-01-05}", ["teams.sre.rotation.kind: 'hourly' is not one of: "
                                                            "daily, weekly, custom"]),
        ("    rotation: {kind: weekly}", ["teams.sre.rotation.start: is required"]),
        ("    rotation: {kind: custom, start: 2026-01-05}", ["teams.sre.rotation.shift: is required"]),
        (
            "    rotation: {kind: custom, shift: 0s, start: 2026-01-05}",
            ["teams.sre.rotation.shift: must be longer than zero, got '0s'"],
        ),
        (
            "    rotation: {kind: daily, shift: 2d, start: 2026-01-05}",
            ["teams.sre.rotation.shift: only allowed with kind: custom (daily shifts are fixed)"],
        ),
        (
            "    rotation: {kind: daily, start: 2026-13-01}",
            ["teams.sre.rotation.start: expected a date like 2026-01-05, got the text '2026-13-01'"],
        ),
        (
            "    rotation: {kind: daily, start: 2026-01-05, handoff: 10:30}",
            ["teams.sre.rotation.handoff: expected a time like \"09:00\", got the number 630 "
             "(quote it: YAML reads 10:30 as a number)"],
        ),
        (
            "    rotation: {kind: daily, start: 2026-01-05, handoff: '25:00'}",
            ["teams.sre.rotation.handoff: expected a time like \"09:00\", got the text '25:00'"],
        ),
        (
            "    rotation: {kind: daily, start: 2026-01-05, time_zone: Europe/Nowhere}",
            ["teams.sre.rotation.time_zone: 'Europe/Nowhere' is not a known IANA time zone (e.g. Europe/Berlin)"],
        ),
        (
            "    rotation: {kind: daily, start: 2026-01-05, every: 2}",
            ["teams.sre.rotation.every: unknown key (expected one of: kind, shift, start, handoff, time_zone)"],
        ),
        (
            "    overrides: [{start: '2026-01-02T00:00', end: '2026-01-01T00:00', engineer: zed, role: boss}]",
            [
                "teams.sre.overrides[0].role: 'boss' is not one of: primary, secondary",
                "teams.sre.overrides[0].engineer: unknown engineer 'zed'",
                "teams.sre.overrides[0].end: must be after start",
            ],
        ),
        (
            "    overrides: [{start: later, engineer: bob}]",
            [
                "teams.sre.overrides[0].start: expected a date and time like \"2026-12-24T09:00\", "
                "got the text 'later'",
                "teams.sre.overrides[0].end: is required",
            ],
        ),
    ],
)
def test_team_problems(tmp_path: Path, team_extra: str, expected: list[str]) -> None:
    path = write(tmp_path, TEAM_BASE + team_extra + "\n")
    assert problems_of(path) == [f"{path}: {line}" for line in expected]


def test_team_members_required(tmp_path: Path) -> None:
    path = write(tmp_path, TEAM_BASE.replace("members: [alice, bob]", "members: []"))
    assert problems_of(path) == [f"{path}: teams.sre.members: at least one entry is required"]


def test_default_route_required_when_teams_exist(tmp_path: Path) -> None:
    path = write(tmp_path, TEAM_BASE.replace("default_route: {team: sre, policy: p}\n", ""))
    assert problems_of(path) == [f"{path}: default_route: is required when teams are configured"]


def test_policy_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        TEAM_BASE.replace(
            "  p: {steps: [{notify: primary}]}",
            "  p: {repeat: -1, steps: [{notify: everyone, timeout: forever}, {notify: secondary, timeout: 1.5}]}\n"
            "  q: {steps: []}\n"
            "  r: {}",
        ),
    )
    assert problems_of(path) == [
        f"{path}: policies.p.steps[0].notify: 'everyone' is not one of: primary, secondary, team, engineer:<id>",
        f"{path}: policies.p.steps[0].timeout: 'forever' is not a duration (use e.g. 20s, 5m, 1h30m)",
        f"{path}: policies.p.steps[1].timeout: must be a whole number of seconds, got 1.5",
        f"{path}: policies.p.repeat: -1 is out of range (0..100)",
        f"{path}: policies.q.steps: at least one entry is required",
        f"{path}: policies.r.steps: at least one entry is required",
    ]


def test_route_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_GATEWAY_MISSING", raising=False)
    routes = """
routes:
  - {name: a, matchers: ['bad matcher', {x: [1]}], team: sre, policy: p}
  - {name: a, team: sre, policy: p, routing_key: k1}
  - {team: sre, policy: p, routing_key: k1}
  - {team: sre, policy: p, routing_key: k2, routing_key_env: K}
  - {team: sre, policy: p, routing_key_env: TEST_GATEWAY_MISSING}
  - {team: sre}
  - just-text
"""
    path = write(tmp_path, TEAM_BASE + routes)
    assert problems_of(path) == [
        f"{path}: routes[0].matchers[0]: 'bad matcher' is not a matcher: expected label=\"value\" (ops: = != =~ !~)",
        f"{path}: routes[0].matchers[1].x: expected a label value as text, got a list",
        f"{path}: routes[3]: set either routing_key or routing_key_env, not both",
        f"{path}: routes[4].routing_key_env: environment variable TEST_GATEWAY_MISSING is not set or empty",
        f"{path}: routes[5].policy: is required",
        f"{path}: routes[6]: expected a mapping, got the text 'just-text'",
        f"{path}: routes[1].name: route name 'a' is listed twice",
        f"{path}: routes[2]: this routing_key is already used by an earlier route",
    ]


def test_api_tokens_required(tmp_path: Path) -> None:
    path = write(tmp_path, "engineers: {}\n")
    assert problems_of(path) == [
        f"{path}: api_tokens: at least one token is required: every API client must authenticate"
    ]


def test_two_api_tokens_with_the_same_secret_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GATEWAY_TOKEN", "shared-secret")
    path = write(tmp_path, "api_tokens:\n  - {name: a, token: shared-secret}\n  - {name: b, token: other}\n"
                 "  - {name: c, token: shared-secret, role: viewer}\n  - {name: d, token_env: TEST_GATEWAY_TOKEN}\n")
    problems = problems_of(path)
    assert problems == [
        f"{path}: api_tokens[2].token: the same secret as api_tokens[0]: each entry needs its own",
        f"{path}: api_tokens[3].token_env: the same secret as api_tokens[0]: each entry needs its own",
    ]
    assert not any("shared-secret" in problem for problem in problems)


def test_api_token_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_GATEWAY_TOKEN", "  s3cret  ")
    path = write(tmp_path, "api_tokens: [{name: env, token_env: TEST_GATEWAY_TOKEN}]\n")
    assert load_config(path).api_tokens[0].token == "s3cret"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_api_token_env_missing_or_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("TEST_GATEWAY_TOKEN", raising=False)
    else:
        monkeypatch.setenv("TEST_GATEWAY_TOKEN", value)
    path = write(tmp_path, "api_tokens: [{name: env, token_env: TEST_GATEWAY_TOKEN}]\n")
    assert problems_of(path) == [
        f"{path}: api_tokens[0].token_env: environment variable TEST_GATEWAY_TOKEN is not set or empty"
    ]


def test_api_token_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        api_tokens:
          - {name: a}
          - {name: a, token: x, token_env: Y}
          - {token: x}
          - {name: b, token: 123}
        """,
    )
    assert problems_of(path) == [
        f"{path}: api_tokens[0]: needs token (or token_env, the name of an environment variable)",
        f"{path}: api_tokens[1]: set either token or token_env, not both",
        f"{path}: api_tokens[2].name: is required",
        f"{path}: api_tokens[3].token: expected text, got the number 123",
        f"{path}: api_tokens[1].name: token name 'a' is listed twice",
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert problems_of(path) == [f"{path}: cannot read the file: No such file or directory"]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "api_tokens:\n  - name: a\n    token: [unclosed\nserver: {}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: line 4, column ")
    assert "invalid YAML" in problem


def test_duplicate_yaml_keys_are_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "api_tokens: [{name: a, token: t}]\nserver:\n  port: 1\n  port: 2\n")
    assert problems_of(path) == [f"{path}: line 4: duplicate key 'port' (the later one would silently win)"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert problems_of(path) == [f"{path}: expected a mapping of sections at the top level, got a list"]


def test_empty_file_needs_a_token(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert problems_of(path) == [
        f"{path}: api_tokens: at least one token is required: every API client must authenticate"
    ]


def test_port_zero_and_public_url(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "server: {port: 0, public_url: 'https://oncall.example.com/'}\n")
    config = load_config(path)
    assert (config.port, config.public_url) == (0, "https://oncall.example.com")


def test_absolute_store_path_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "x.db"
    config = load_config(write(tmp_path, MINIMAL + f"store: {{path: '{target}'}}\n"))
    assert config.store_path == target


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (20, timedelta(seconds=20)),
        (1.5, timedelta(seconds=1.5)),
        ("20", timedelta(seconds=20)),
        ("20s", timedelta(seconds=20)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(days=7)),
        ("1h30m", timedelta(minutes=90)),
        ("1h 30m", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("0.5s", timedelta(milliseconds=500)),
    ],
)
def test_parse_duration(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["", "5x", "m5", "-5s", "1h-30m", "h", -1, True, None, [1]])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(days=2, seconds=5)) == "2d5s"


def test_a_config_without_any_phone_provider_is_refused(tmp_path: Path) -> None:
    from tests.support import BASE_CONFIG

    path = tmp_path / "g.yaml"
    path.write_text(BASE_CONFIG + "sandbox: {enabled: false}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: sandbox.enabled: no phone provider: configure twilio or asterisk, "
                                     "or enable the sandbox"]


def test_hotlines_twilio_and_asterisk_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support import BASE_CONFIG

    monkeypatch.setenv("TWILIO_TOKEN", "secret-token")
    path = tmp_path / "g.yaml"
    path.write_text(BASE_CONFIG + """
hotlines:
  - {name: ops, number: "(555) 777-0000", team: sre, policy: default, priority_menu: true}
twilio:
  account_sid: AC123
  auth_token_env: TWILIO_TOKEN
  from_number: "+15559990000"
""")
    config = load_config(path)
    assert config.hotlines[0].number == "+15557770000" and config.hotlines[0].priority_menu
    assert config.twilio is not None and config.twilio.auth_token == "secret-token"
    assert config.voice_provider == "twilio" and config.sms_provider == "twilio"

    path.write_text(BASE_CONFIG + """
hotlines:
  - {number: "12", team: nope, policy: nope, greeting: "{{ unclosed"}
asterisk:
  username: gateway
  dial_string: "PJSIP/trunk"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    for expected in ("hotlines[0].team: unknown team 'nope'", "hotlines[0].policy: unknown policy 'nope'",
                     "hotlines[0].greeting: not a valid template", "hotlines[0].number:",
                     "asterisk: needs secret", "asterisk.caller_id: is required",
                     "asterisk.dial_string: must contain {number} or {digits}"):
        assert expected in problems, expected
