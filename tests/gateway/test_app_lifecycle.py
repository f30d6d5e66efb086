"""The composition root's lifecycle: a start that fails half-way stops what it had started."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.heartbeats import Heartbeats
from gateway.web.keys import STORE


async def test_a_start_failing_late_stops_the_services_started_before_and_closes_the_store(
    config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: Heartbeats) -> None:
        raise OSError("the disk went away")

    # Heartbeats start after the store, the providers, paging, the scheduler and the maintenance windows.
    monkeypatch.setattr(Heartbeats, "start", refuse)
    before = asyncio.all_tasks()
    app = create_app(load_config(config_path), clock=FakeClock())
    runner = web.AppRunner(app)
    with pytest.raises(OSError, match="the disk went away"):
        await runner.setup()
    await runner.cleanup()  # as web.run_app does when its start fails
    left = {task.get_name() for task in asyncio.all_tasks() - before if not task.done()}
    assert left == set()  # no scheduler, dispatcher or maintenance loop goes on in a gateway that never started
    with pytest.raises(RuntimeError, match="not open"):
        await app[STORE].next_due()


async def test_a_gateway_stopped_leaves_nothing_running(config_path: Path) -> None:
    before = asyncio.all_tasks()
    app = create_app(load_config(config_path), clock=FakeClock())
    runner = web.AppRunner(app)
    await runner.setup()
    assert {task.get_name() for task in asyncio.all_tasks() - before} >= {"escalation scheduler"}
    await runner.cleanup()
    assert {task.get_name() for task in asyncio.all_tasks() - before if not task.done()} == set()
    with pytest.raises(RuntimeError, match="not open"):
        await app[STORE].next_due()
