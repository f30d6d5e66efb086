"""A step's ``ring_timeout``: how long its calls ring before they count as unanswered."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import ConfigError, load_config
from tests.support import ALICE, BASE_CONFIG, BOB, Gateway, write_config

STEPS = """      - {notify: primary, via: call, timeout: 20s}
      - {notify: secondary, via: call, timeout: 20s}"""


def _config(tmp_path: Path, first_step: str) -> Path:
    assert STEPS in BASE_CONFIG
    text = BASE_CONFIG.replace(STEPS, f"      - {first_step}\n      - {{notify: secondary, via: call, timeout: 20s}}")
    # Both steps name their engineer, so the test holds whoever is on call this week.
    text = text.replace("{notify: secondary, via: call, timeout: 20s}", "{notify: 'engineer:bob', timeout: 20s}")
    return write_config(tmp_path, text)


async def test_a_call_rings_for_the_steps_ring_timeout_then_the_next_step_pages(
    tmp_path: Path, aiohttp_client: Callable[..., Any]
) -> None:
    path = _config(tmp_path, "{notify: 'engineer:alice', via: call, timeout: 10m, ring_timeout: 15s}")
    clock = FakeClock()
    gateway = Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    assert status == 202, answer
    await gateway.ringing(ALICE)
    await clock.advance(14)
    assert (await gateway.phone(ALICE))["call"]["state"] == "ringing"
    assert (await gateway.phone(BOB))["call"] is None
    # At 15 s Alice's call rings out; that was the step's only page, so Bob is called now, not after 10 minutes.
    await clock.advance(1)
    await gateway.ringing(BOB)
    alert = await gateway.alert(answer["id"])
    assert next((p["engineer"], p["outcome"]) for p in alert["pages"]) == ("alice", "no_answer")


def test_default_ring_time_is_the_step_timeout_within_10s_and_2m(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "{notify: primary, timeout: 5s}"))
    assert config.policies["default"].steps[0].ring_s == 10
    config = load_config(_config(tmp_path, "{notify: primary, timeout: 45s}"))
    assert config.policies["default"].steps[0].ring_s == 45
    config = load_config(_config(tmp_path, "{notify: primary, timeout: 10m}"))
    assert config.policies["default"].steps[0].ring_s == 120
    config = load_config(_config(tmp_path, "{notify: primary, timeout: 10m, ring_timeout: 5m}"))
    assert config.policies["default"].steps[0].ring_s == 300


@pytest.mark.parametrize(("step", "problem"), [
    ("{notify: primary, timeout: 20s, ring_timeout: 30s}",
     "policies.default.steps[0].ring_timeout: 30 s is longer than the step's timeout (20 s)"),
    ("{notify: primary, timeout: 1h, ring_timeout: 2s}",
     "policies.default.steps[0].ring_timeout: must be between 5s and 10m"),
    ("{notify: primary, timeout: 1h, ring_timeout: 11m}",
     "policies.default.steps[0].ring_timeout: must be between 5s and 10m"),
    ("{notify: primary, timeout: 1h, ring_timeout: soon}",
     "policies.default.steps[0].ring_timeout:"),
])
def test_check_config_reports_a_bad_ring_timeout_with_its_key_path(tmp_path: Path, step: str, problem: str) -> None:
    path = _config(tmp_path, step)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(p.startswith(f"{path}: {problem}") for p in caught.value.problems), caught.value.problems
