"""A throwaway Redis server for the tests: Debian's redis-server on a free loopback port in a temporary folder."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as redis


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def redis_server(folder: Path) -> AsyncIterator[str]:
    """Start redis-server (no persistence, loopback only) and yield its URL; stopped on exit."""
    binary = shutil.which("redis-server")
    assert binary is not None, "the tests need Debian's redis-server (scripts/test installs it)"
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--logfile", str(folder / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        # The server is a service beside the tests, not code under test: never run it under libfaketime (when
        # the suite runs under `faketime`), which its allocator's clock calls clash with at start.
        env={key: value for key, value in os.environ.items() if key not in ("LD_PRELOAD", "FAKETIME")},
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        try:
            for _ in range(500):  # up to ~10 s on a loaded machine
                try:
                    if await client.ping():
                        break
                except redis.ConnectionError:
                    await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"redis-server did not answer on port {port}")
        finally:
            await client.aclose()
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
