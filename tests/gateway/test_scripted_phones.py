"""Sandbox phones with scripted behaviour from the config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.support import ALICE, BASE_CONFIG, BOB, Gateway, write_config

SCRIPTED = BASE_CONFIG + f"""
sandbox:
  phones:
    "{ALICE}": {{behaviour: busy}}
    "{BOB}": {{behaviour: answer, after: 3s, digits: "1"}}
"""


async def test_busy_primary_moves_on_and_scripted_secondary_acknowledges(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    clock = FakeClock()
    gateway = Gateway(await aiohttp_client(create_app(load_config(write_config(tmp_path, SCRIPTED)), clock=clock)),
                      clock)
    _, body = await gateway.post("/api/v1/alerts", {"summary": "scripted", "team": "sre"})
    # Alice is busy: Bob is called at once, without waiting for the 20 s step.
    await gateway.ringing(BOB)
    await clock.advance(3)  # Bob's phone answers after 3 s and presses 1
    alert = await gateway.alert_where(body["id"], lambda a: a["status"] == "acknowledged")
    assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "busy"), ("bob", "acknowledged")]
    assert alert["acknowledged_by"] == "bob"
