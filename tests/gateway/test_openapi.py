"""GET /openapi.json describes exactly the routes the app serves, and a live gateway for sync clients.

``LiveGateway`` (also used by the schemathesis and fuzz tests) runs the real app on a loopback port
in a thread of its own, so synchronous clients (requests, raw sockets under hypothesis) can call it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.web.fallback import is_catch_all
from gateway.web.openapi import OPERATIONS, SCHEMAS, UNDOCUMENTED
from tests.support import BASE_CONFIG, Gateway, write_config

T = TypeVar("T")


class LiveGateway:
    """``with LiveGateway(folder) as gw:`` the app at ``gw.url``, on a fake clock, in its own thread."""

    def __init__(self, folder: Path, config_text: str = BASE_CONFIG) -> None:
        self.config_path = write_config(folder, config_text)
        self.clock = FakeClock()
        self.app = create_app(load_config(self.config_path), clock=self.clock)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-gateway", daemon=True)
        self._runner = web.AppRunner(self.app, access_log=None)
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, make: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run ``make()`` on the gateway's loop and wait for its result."""

        async def wrapped() -> T:
            return await make()

        future: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return future.result(timeout)

    def __enter__(self) -> LiveGateway:
        self._thread.start()

        async def start() -> int:
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return int(self._runner.addresses[0][1])

        self.port = self.run(start)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._runner.cleanup)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=60)
            self.loop.close()


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {(r.method, r.resource.canonical) for r in app.router.routes()
            if r.method != "HEAD" and r.resource is not None and not is_catch_all(r)
            and not r.resource.canonical.startswith("/console")}  # HTML pages, not the JSON API


def operations_of(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


async def test_the_document_lists_exactly_the_served_routes(gateway: Gateway) -> None:
    status, document = await gateway.get("/openapi.json", headers={})  # public, like /healthz
    assert status == 200 and document["openapi"] == "3.1.0"
    app = gateway.client.app
    assert app is not None
    assert operations_of(document) == routes_of(app)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] != UNDOCUMENTED, f"describe {method.upper()} {path} in gateway/web/openapi.py"


def test_every_described_operation_is_a_route_of_some_configuration(tmp_path: Path) -> None:
    # The sandbox app serves the sandbox routes; the rest are served whatever the providers.
    app = create_app(load_config(write_config(tmp_path)))
    assert set(OPERATIONS) <= routes_of(app)


def test_twilio_webhooks_are_in_the_document_of_a_twilio_gateway(tmp_path: Path) -> None:
    from tests.gateway.test_twilio_story import twilio_config

    with LiveGateway(tmp_path, twilio_config("http://127.0.0.1:9")) as live:
        import json
        import urllib.request

        with urllib.request.urlopen(f"{live.url}/openapi.json") as answer:
            document = json.load(answer)
        served = routes_of(live.app)
    twilio = {(m, p) for m, p in served if p.startswith("/twilio/")}
    assert twilio and operations_of(document) == served
    assert not any(p.startswith("/api/v1/sandbox") for _, p in served)
    for method, path in twilio:
        operation = document["paths"][path][method.lower()]
        assert operation["security"] == [{"twilioSignature": []}]
        assert "text/xml" in operation["responses"]["200"]["content"]


def test_every_schema_reference_resolves(tmp_path: Path) -> None:
    from gateway.web.openapi import document

    text = repr(document(create_app(load_config(write_config(tmp_path)))))
    import re

    for kind, name in re.findall(r"#/components/(schemas|responses)/(\w+)", text):
        assert kind != "schemas" or name in SCHEMAS, name


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveGateway]:
    with LiveGateway(tmp_path) as gateway:
        yield gateway


def test_live_gateway_serves_over_loopback(live: LiveGateway) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{live.url}/healthz") as answer:
        assert answer.status == 200
