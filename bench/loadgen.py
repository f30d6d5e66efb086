"""An open-loop HTTP/1.1 load generator: requests start on a fixed schedule, whatever the answers do.

Latency is measured from the scheduled start, so a slow server cannot hide
queueing (no coordinated omission). Connections are kept alive and reused; a
new one is opened when all are busy. Deliberately small: asyncio streams and
pre-encoded requests, so the generator is not what gets measured. Given several
ports (several gateways), requests go to them in turn: request i to port i mod n.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class Result:
    index: int
    scheduled: float  # time.monotonic() when the request was due to start
    done: float  # when the whole answer was read
    status: int
    body: bytes
    target: int = 0  # which of the generator's ports it went to

    @property
    def latency_s(self) -> float:
        return self.done - self.scheduled


@dataclass(kw_only=True)
class Run:
    rate: float
    duration_s: float
    results: list[Result] = field(default_factory=list)
    errors: int = 0

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for r in self.results:
            counts[r.status] = counts.get(r.status, 0) + 1
        return counts


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body


def encode(method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Pool:
    """Kept-alive connections to one port."""

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self.max_connections = max_connections
        self._idle: list[_Conn] = []
        self._open = 0
        self._freed = asyncio.Event()

    async def take(self) -> _Conn:
        while True:
            if self._idle:
                return self._idle.pop()
            if self._open < self.max_connections:
                self._open += 1
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self._open -= 1
                    raise
                return _Conn(reader, writer)
            self._freed.clear()
            await self._freed.wait()

    def give(self, conn: _Conn | None) -> None:
        if conn is None:
            self._open -= 1
        else:
            self._idle.append(conn)
        self._freed.set()

    def close(self) -> None:
        for conn in self._idle:
            conn.writer.close()
        self._idle.clear()


class LoadGenerator:
    def __init__(self, host: str, *ports: int, max_connections: int = 512) -> None:
        if not ports:
            raise ValueError("at least one port")
        self._pools = [_Pool(host, port, max_connections) for port in ports]

    async def one(self, raw: bytes, target: int = 0) -> tuple[int, bytes]:
        """One request to the ``target``-th port; its status and body."""
        pool = self._pools[target % len(self._pools)]
        conn = await pool.take()
        try:
            status, body = await conn.send(raw)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            conn.writer.close()
            pool.give(None)
            raise
        pool.give(conn)
        return status, body

    async def run(self, *, rate: float, duration_s: float, request: Callable[[int], bytes]) -> Run:
        """Start ``rate`` requests per second for ``duration_s``; ``request(i)`` builds the i-th."""
        run = Run(rate=rate, duration_s=duration_s)
        total = int(rate * duration_s)
        start = time.monotonic() + 0.05
        tasks = []

        async def fire(index: int, due: float) -> None:
            target = index % len(self._pools)
            try:
                status, body = await self.one(request(index), target)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                return
            run.results.append(Result(index=index, scheduled=due, done=time.monotonic(), status=status, body=body,
                                      target=target))

        for index in range(total):
            due = start + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(fire(index, due)))
        await asyncio.gather(*tasks)
        return run

    async def close(self) -> None:
        for pool in self._pools:
            pool.close()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]
