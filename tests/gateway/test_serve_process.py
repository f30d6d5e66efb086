"""`gateway serve` as a real process: starts, pages, logs masked numbers, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path

import aiohttp

from tests.support import ALICE, AUTH, BASE_CONFIG, eventually, write_config

# Alice alone in the rotation: she is primary whatever the real date (the process runs on the real clock).
ALICE_ONLY_CONFIG = BASE_CONFIG.replace("members: [alice, bob]", "members: [alice]")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_runs_the_gateway_until_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    config = write_config(tmp_path, ALICE_ONLY_CONFIG)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", str(config), "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await eventually(healthy, timeout=60)
            async with http.post(f"{base}/api/v1/alerts", headers=AUTH,
                                 json={"summary": "from a real process", "team": "sre"}) as resp:
                assert resp.status == 202
            async def alices_call() -> dict[str, object] | None:
                async with http.get(f"{base}/api/v1/sandbox/phones/{ALICE}", headers=AUTH) as resp:
                    call: dict[str, object] | None = (await resp.json())["call"]
                    return call

            call = await eventually(alices_call, timeout=30)
            assert call["state"] == "ringing"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, output.decode()
    log = output.decode()
    assert "alert 1 triggered from api" in log
    assert "+1555***0001" in log and ALICE not in log


async def test_serve_with_a_bad_config_lists_the_problems(tmp_path: Path) -> None:
    config = write_config(tmp_path, BASE_CONFIG.replace('phones: ["+15550000002"]', 'phones: ["12"]'))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 2
    assert f"{config}: engineers.bob.phones[0]:" in err.decode()


async def test_serve_with_a_store_it_cannot_open_says_so_in_one_line(tmp_path: Path) -> None:
    # A store path whose folder is a plain file: SQLite cannot create the database there (as with a Docker
    # volume the container's user cannot write; the tests run as root, who may write anywhere).
    (tmp_path / "not-a-folder").write_text("")
    text = BASE_CONFIG.replace("path: gateway.db", "path: not-a-folder/gateway.db")
    config = write_config(tmp_path, text)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", str(config), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    folder = tmp_path / "not-a-folder"
    assert lines == [f"gateway serve: cannot open the store {folder / 'gateway.db'}: "
                     f"unable to open database file ({folder} is not a folder)"], lines
    assert "Traceback" not in out.decode()
