"""Real processes for tests: the recording provider peer and ``gateway serve``, started and killed at will."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import AUTH, eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Peer:
    """The recording Twilio peer process: every Calls.json POST it got, with its monotonic arrival time."""

    def __init__(self) -> None:
        self.dials: list[dict[str, Any]] = []
        self.url = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.peer", "twilio", stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.PIPE)
        assert self._proc.stdout is not None
        ready = await asyncio.wait_for(self._proc.stdout.readline(), 60)
        self.url = f"http://127.0.0.1:{ready.decode().split()[1]}"
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for line in self._proc.stdout:
            record = json.loads(line)
            if "call_id" in record:  # a dial (the peer also reports call updates: hang-ups)
                self.dials.append(record)

    async def send(self, command: dict[str, Any]) -> None:
        """A command for the peer (see bench/peer.py), e.g. ``{"hang_to": number}``."""
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps(command) + "\n").encode())
        await self._proc.stdin.drain()

    def dials_of(self, call_id: str) -> list[dict[str, Any]]:
        return [d for d in self.dials if d["call_id"] == call_id]

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()


class Gateway:
    """``gateway serve`` as a process on one config and database, started and killed at will."""

    def __init__(self, folder: Path, config: Callable[[int], str], *, env: dict[str, str] | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.extra_env = env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = folder / "gateway.yaml"
        self.config.write_text(config(self.port))
        self.log = folder / "gateway.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.kills: list[float] = []  # monotonic times of each SIGKILL (or self-kill seen)
        self.http: aiohttp.ClientSession | None = None

    async def start(self, crash_at: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "GATEWAY_CRASH_AT"} | self.extra_env
        if crash_at:
            env["GATEWAY_CRASH_AT"] = crash_at
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", str(self.config), stdout=log, stderr=log, env=env,
                cwd=self.folder)
        await eventually(self._healthy, timeout=60)

    async def _healthy(self) -> bool:
        assert self.http is not None and self.proc is not None
        assert self.proc.returncode is None, f"the gateway exited: {self.log.read_text()[-3000:]}"
        try:
            async with self.http.get(f"{self.base}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
            self.kills.append(time.monotonic())  # when it was gone: nothing it did can come after this
        await self.proc.wait()

    async def died(self) -> None:
        """Wait for a self-kill at a crash point."""
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), 60)
        assert self.proc.returncode == -signal.SIGKILL, self.log.read_text()[-3000:]
        self.kills.append(time.monotonic())

    async def post_alert(self, key: str, *, urgency: str | None = None) -> int | None:
        """The alert's id when the gateway answered 2xx, else None (it died first)."""
        assert self.http is not None
        body: dict[str, Any] = {"summary": f"test {key}", "dedup_key": key}
        if urgency is not None:
            body["labels"] = {"urgency": urgency}
        try:
            async with self.http.post(f"{self.base}/api/v1/alerts", headers=AUTH, json=body) as resp:
                return int((await resp.json())["id"]) if resp.status in (200, 202) else None
        except aiohttp.ClientError:
            return None

    async def get(self, path: str) -> Any:
        assert self.http is not None
        async with self.http.get(f"{self.base}{path}", headers=AUTH) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def acknowledge(self, alert_id: int) -> float:
        """Acknowledge; the monotonic time its 200 was read."""
        assert self.http is not None
        async with self.http.post(f"{self.base}/api/v1/alerts/{alert_id}/acknowledge", headers=AUTH,
                                  json={"by": "crash test"}) as resp:
            assert resp.status == 200, await resp.text()
        return time.monotonic()
