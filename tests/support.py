"""Helpers shared by the tests: a config file on disk, a gateway on a fake clock, polling."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from core.clock import FakeClock

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE, BOB, CAROL = "+15550000001", "+15550000002", "+15550000003"

BASE_CONFIG = f"""
store:
  path: gateway.db
api_tokens:
  - name: tests
    token: {TOKEN}
engineers:
  alice: {{name: Alice, phones: ["{ALICE}"]}}
  bob: {{name: Bob, phones: ["{BOB}"]}}
  carol: {{name: Carol, phones: ["{CAROL}"]}}
teams:
  sre:
    members: [alice, bob]
    rotation: {{kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: UTC}}
  dba:
    members: [carol]
policies:
  default:
    steps:
      - {{notify: primary, via: call, timeout: 20s}}
      - {{notify: secondary, via: call, timeout: 20s}}
  texting:
    repeat: 1
    steps:
      - {{notify: primary, via: sms, timeout: 60s}}
routes:
  - name: sre-critical
    matchers: ['team="sre"']
    team: sre
    policy: default
    priority: high
  - name: dba
    matchers: ['team="dba"']
    team: dba
    policy: texting
    routing_key: dba-routing-key-0000000000000000
default_route: {{team: sre, policy: default, priority: low}}
"""


def write_config(folder: Path, text: str = BASE_CONFIG) -> Path:
    path = folder / "gateway.yaml"
    path.write_text(text)
    return path


def payload(name: str) -> Any:
    return json.loads((FIXTURES / "payloads" / name).read_text())


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy (real time; the store runs in a thread)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last result: {result!r}")
        await asyncio.sleep(0.01)


class Gateway:
    """A running gateway app driven through its own HTTP API."""

    def __init__(self, client: TestClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    async def post(self, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                   data: bytes | None = None) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": headers if headers is not None else AUTH}
        if data is not None:
            kwargs["data"] = data
        elif body is not None:
            kwargs["json"] = body
        async with self.client.post(path, **kwargs) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.client.get(path, headers=headers if headers is not None else AUTH) as resp:
            return resp.status, await resp.json()

    async def alert(self, alert_id: int) -> dict[str, Any]:
        status, body = await self.get(f"/api/v1/alerts/{alert_id}")
        assert status == 200, body
        return body

    async def phone(self, number: str) -> dict[str, Any]:
        status, body = await self.get(f"/api/v1/sandbox/phones/{number}")
        assert status == 200, body
        return body

    async def ringing(self, number: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            phone = await self.phone(number)
            return phone if phone["call"] and phone["call"]["state"] == "ringing" else None

        return await eventually(check)

    async def alert_where(self, alert_id: int, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            alert = await self.alert(alert_id)
            return alert if predicate(alert) else None

        return await eventually(check)
