"""A gateway on a real port and Debian's Chromium (headless) driven by Playwright, both on the test's loop."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.support import BASE_CONFIG, TOKEN, write_config

CHROMIUM = "/usr/bin/chromium"
HOTLINE = "+15557770000"
VIEWER_TOKEN = "viewer-token-0000"
CONFIG = BASE_CONFIG.replace(
    "api_tokens:\n",
    f"api_tokens:\n  - name: night-viewer\n    token: {VIEWER_TOKEN}\n    role: viewer\n",
).replace(
    "routes:\n",
    "  hotline:\n    steps:\n      - {notify: primary, via: call, timeout: 30s}\n"
    "      - {notify: secondary, via: call, timeout: 30s}\nroutes:\n",
) + f"""
hotlines:
  - name: ops
    number: "{HOTLINE}"
    team: sre
    policy: hotline
    greeting: "You have reached the on-call hotline."
maintenance:
  - name: db-upgrade
    matchers: ['service="db"']
    start: "2026-01-10T22:00"
    end: "2026-01-11T02:00"
    time_zone: UTC
    comment: Postgres 17
heartbeats:
  nightly-backup:
    interval: 24h
    grace: 30m
    team: dba
"""


class Console:
    """The gateway under test and a way to open pages on it."""

    def __init__(self, server: TestServer, clock: FakeClock, browser: Browser) -> None:
        self.server = server
        self.clock = clock
        self.browser = browser

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    async def page(self, *, width: int = 1280, height: int = 800) -> Page:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        return await context.new_page()

    async def signed_in(self, token: str = TOKEN, **size: int) -> Page:
        page = await self.page(**size)
        await page.goto(self.url("/console/alerts"))
        await page.fill("input[name=token]", token)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/alerts")
        return page


@pytest.fixture
async def console(tmp_path: Path, aiohttp_server: Callable[..., Any]) -> AsyncIterator[Console]:
    assert shutil.which("chromium") or Path(CHROMIUM).exists(), "scripts/test installs Debian's chromium"
    clock = FakeClock()
    server = await aiohttp_server(create_app(load_config(write_config(tmp_path, CONFIG)), clock=clock))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield Console(server, clock, browser)
        finally:
            await browser.close()
