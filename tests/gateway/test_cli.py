from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import Config

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"

TWO_TEAMS = """
api_tokens: [{name: a, token: t}]
defaults: {time_zone: Europe/Berlin}
engineers:
  alice: {name: Alice, phones: "+15550000001"}
  bob: {name: Bob, phones: "+15550000002"}
  carol: {name: Carol, phones: "+44 20 7946 0958"}
teams:
  sre:
    members: [alice, bob]
    rotation: {kind: daily, start: 2026-03-01, time_zone: Europe/Berlin}
  solo:
    members: [carol]
policies:
  p: {steps: [{notify: primary}]}
default_route: {team: sre, policy: p}
"""


def test_check_config_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(DEMO)]) == 0
    assert capsys.readouterr().out == ("ok: 2 engineers, 1 team, 1 policy, 2 routes, 1 hotline; voice via sandbox, "
                                       "SMS via sandbox\n")


def test_check_config_counts_singular_and_plural(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(TWO_TEAMS)
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == ("ok: 3 engineers, 2 teams, 1 policy, 1 route, 0 hotlines; voice via sandbox, "
                                       "SMS via sandbox\n")


def test_check_config_counts_the_optional_parts_a_config_uses(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(TWO_TEAMS + """
time_windows:
  nights: {weekly: [{days: daily, from: "22:00", to: "06:00"}]}
  weekends: {weekly: [{days: sat-sun, from: "00:00", to: "24:00"}]}
priority_rules: [{name: core, matchers: ['equipment="core-router"']}]
maintenance: [{name: m, matchers: ['service="db"'], during: [nights]}]
heartbeats: {backup: {interval: 1h, team: sre}}
""")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == ("ok: 3 engineers, 2 teams, 1 policy, 1 route, 0 hotlines; voice via sandbox, "
                                       "SMS via sandbox; 2 time windows, 1 priority rule, 1 maintenance window, "
                                       "1 heartbeat\n")


def test_check_config_prints_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: {port: -1}\nengineers: {alice: {phones: '+1 555'}}\n")
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}: server.port: -1 is out of range (0..65535)",
        f"{path}: engineers.alice.phones: '+1 555' is not a phone number (too short)",
        f"{path}: api_tokens: at least one token is required: every API client must authenticate",
    ]


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.yaml"
    assert main(["check-config", str(path)]) == 1
    assert capsys.readouterr().out == f"{path}: cannot read the file: No such file or directory\n"


def test_oncall_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(TWO_TEAMS)
    assert main(["oncall", str(path), "--at", "2026-03-02T10:00+01:00"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["TEAM", "sre", "solo"]
    assert [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines] == [
        ["TEAM", "PRIMARY", "SECONDARY", "UNTIL"],
        ["sre", "Bob (+1555***0002)", "Alice (+1555***0001)", "2026-03-03 09:00 CET"],
        ["solo", "Carol (+4420***0958)", "-", "-"],
    ]
    assert "+15550000001" not in "\n".join(lines)


def test_oncall_naive_at_is_read_in_default_time_zone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(TWO_TEAMS)
    # 08:30 Berlin is before the 09:00 handoff of 2026-03-02: still Alice (shift 0)
    assert main(["oncall", str(path), "--team", "sre", "--at", "2026-03-02T08:30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("sre   Alice (+1555***0001)  Bob (+1555***0002)")
    assert lines[1].endswith("2026-03-02 09:00 CET")


def test_oncall_unknown_team(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(TWO_TEAMS)
    assert main(["oncall", str(path), "--team", "web"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "unknown team 'web' (teams: sre, solo)" in captured.err


def test_oncall_bad_at(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oncall", str(DEMO), "--at", "tomorrow"]) == 2
    assert "'tomorrow' is not an ISO 8601 date and time" in capsys.readouterr().err


def test_oncall_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("nonsense: true\napi_tokens: [{name: a, token: t}]\n")
    assert main(["oncall", str(path)]) == 2
    assert f"{path}: nonsense: unknown key" in capsys.readouterr().err


def test_serve_with_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("server: {port: web}\n")
    assert main(["serve", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: server.port: expected a whole number, got the text 'web'",
        f"{path}: api_tokens: at least one token is required: every API client must authenticate",
    ]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [([], ("127.0.0.1", 8080)), (["--host", "0.0.0.0", "--port", "9999", "--log-level", "debug"], ("0.0.0.0", 9999))],
)
def test_serve_runs_the_server(
    monkeypatch: pytest.MonkeyPatch, extra: list[str], expected: tuple[str, int]
) -> None:
    calls: list[dict[str, Any]] = []

    def run_server(config: Config, *, host: str, port: int) -> None:
        calls.append({"config": config, "host": host, "port": port})

    monkeypatch.setitem(sys.modules, "gateway.app", types.SimpleNamespace(run_server=run_server))
    assert main(["serve", str(DEMO), *extra]) == 0
    (call,) = calls
    assert (call["host"], call["port"]) == expected
    assert call["config"].source == DEMO


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["check-config", "--help"], ["oncall", "--help"]])
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 0
    assert "usage: gateway" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([])
    assert caught.value.code == 2
    assert "usage: gateway" in capsys.readouterr().err


def test_python_dash_m_gateway() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(DEMO)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout) == (0, "ok: 2 engineers, 1 team, 1 policy, 2 routes, 1 hotline; "
                                                     "voice via sandbox, SMS via sandbox\n")
