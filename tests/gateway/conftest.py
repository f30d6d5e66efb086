from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.support import BASE_CONFIG, Gateway, write_config


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, BASE_CONFIG)


@pytest.fixture
async def gateway(aiohttp_client: Callable[..., Any], config_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(config_path), clock=clock))
    yield Gateway(client, clock)
