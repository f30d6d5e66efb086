"""Processes for a benchmark: the real gateway (`python -m gateway serve`) and a provider peer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """One ``gateway serve`` process: :meth:`start` it (again after a kill), :meth:`stop` it."""

    def __init__(self, config: str, workdir: Path, port: int, *, name: str = "gateway",
                 env: dict[str, str] | None = None) -> None:
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(config)
        self.log_path = workdir / f"{name}.log"
        self.env = env or {}
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def proc(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise RuntimeError("the gateway is not started")
        return self._proc

    async def start(self) -> None:
        """Start the process and wait until it answers /healthz.

        ``BENCH_GATEWAY_ROOT`` (a checkout of another commit, say) runs that gateway instead of this one, so a
        change can be measured before and after with the same benchmarks and peers.
        """
        with self.log_path.open("ab") as log:
            self._proc = proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "serve", str(self.config_path), "--port", str(self.port),
                "--log-level", "WARNING", cwd=os.environ.get("BENCH_GATEWAY_ROOT", ROOT), stdout=log,
                stderr=asyncio.subprocess.STDOUT, env={**os.environ, **self.env},
            )
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                try:
                    async with http.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                if proc.returncode is not None:
                    raise RuntimeError(f"the gateway exited; its log ends:\n{self._log_tail()}")
                await asyncio.sleep(0.05)
        raise RuntimeError(f"the gateway did not come up; its log ends:\n{self._log_tail()}")

    def _log_tail(self, lines: int = 20) -> str:
        """The end of the log (the benchmark's folder is deleted afterwards)."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def kill(self) -> float:
        """SIGKILL; returns time.monotonic() when the process is gone (reaped)."""
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        return time.monotonic()

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@asynccontextmanager
async def gateway(config: str, workdir: Path, port: int, *, name: str = "gateway",
                  env: dict[str, str] | None = None) -> AsyncIterator[Gateway]:
    """A started gateway with ``config`` (YAML), stopped afterwards; ``name`` names its files in ``workdir``."""
    gw = Gateway(config, workdir, port, name=name, env=env)
    try:
        await gw.start()
        yield gw
    finally:
        await gw.stop()


class Peer:
    """A provider peer process; ``dials`` collects what it reported, by call id."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dials: dict[str, dict[str, Any]] = {}
        self.updates: list[dict[str, Any]] = []  # the Twilio peer's call updates, in order
        self._reader: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            record = json.loads(line)
            if record.get("kind") == "update":
                self.updates.append(record)
            else:
                self.dials.setdefault(record["call_id"], record)
            self.changed.set()

    async def send(self, command: dict[str, Any]) -> None:
        """One command to the peer (see bench.peer)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()


@asynccontextmanager
async def peer(kind: str, *options: str) -> AsyncIterator[Peer]:
    """The peer process; ``options`` as ``python -m bench.peer`` takes them (``--end-after-ms 100``)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.peer", kind, *options, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    ready = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
    if ready[:1] != ["READY"]:
        raise RuntimeError(f"the {kind} peer did not start: {ready}")
    p = Peer(proc, int(ready[1]))
    p._reader = asyncio.create_task(p._read())
    try:
        yield p
    finally:
        p._reader.cancel()
        proc.terminate()
        await proc.wait()


async def alert_pages(gw: Gateway, alert_ids: list[int]) -> dict[int, list[int]]:
    """alert id -> its page ids, read back through the API after a run."""
    found: dict[int, list[int]] = {}
    async with aiohttp.ClientSession(headers=AUTH) as http:
        sem = asyncio.Semaphore(32)

        async def one(alert_id: int) -> None:
            async with sem, http.get(f"{gw.url}/api/v1/alerts/{alert_id}") as resp:
                body = await resp.json()
                found[alert_id] = [p["id"] for p in body["pages"]]

        await asyncio.gather(*(one(a) for a in alert_ids))
    return found
