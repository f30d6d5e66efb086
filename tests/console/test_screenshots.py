"""Screenshots of every console page at phone and desktop widths, and the alerts page's weight and time to
first render in the headless browser (printed; nothing asserted about time).

The pictures go to the test's temporary folder; with ``UPDATE_SCREENSHOTS=1`` to docs/screenshots/ (shown in
the README), so an ordinary run leaves the working tree as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.console.conftest import HOTLINE, Console
from tests.console.test_console import WAIT_MS, api, trigger

DOCS = Path(__file__).parents[2] / "docs" / "screenshots"
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
PAGES = ("alerts", "alert", "oncall", "hotline", "maintenance", "system", "phones")


def folder(tmp_path: Path) -> Path:
    """docs/screenshots/ only when asked (``UPDATE_SCREENSHOTS=1``), else a temporary folder."""
    return DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "screenshots"


def test_screenshots_go_to_the_docs_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UPDATE_SCREENSHOTS", raising=False)
    assert folder(tmp_path) == tmp_path / "screenshots"
    monkeypatch.setenv("UPDATE_SCREENSHOTS", "1")
    assert folder(tmp_path) == DOCS


async def test_screenshots_of_each_page_and_the_alerts_page_weight(console: Console, tmp_path: Path) -> None:
    shots = folder(tmp_path)
    first = await trigger(console, "checkout 5xx above 2% for 5 min")
    await trigger(console, "replication lag on db-7", team="dba")
    acked = await trigger(console, "disk 91% full on logs-2")
    await api(console, "POST", f"/api/v1/alerts/{acked}/acknowledge", {})
    status, body = await api(console, "POST", "/api/v1/teams/sre/overrides",
                             {"engineer": "bob", "role": "primary", "start": "2026-01-09T09:00:00Z",
                              "end": "2026-01-10T21:00:00Z"})
    assert status == 201, body
    await api(console, "POST", "/api/v1/sandbox/phones/+15550009999/dial", {"to": HOTLINE})
    status, body = await api(console, "POST", "/api/v1/maintenance", {
        "matchers": ['service="payments"', 'env="prod"'], "end": "2026-01-07T16:00:00Z", "comment": "PSP failover"})
    assert status == 201, body
    await api(console, "POST", "/api/v1/heartbeats/nightly-backup")
    shots.mkdir(parents=True, exist_ok=True)
    for label, (width, height) in SIZES.items():
        page = await console.signed_in(width=width, height=height)
        for name in PAGES:
            path = f"/console/alerts/{first}" if name == "alert" else f"/console/{name}"
            await page.goto(console.url(path))
            await expect(page.locator("body[data-live=on]")).to_have_count(1, timeout=WAIT_MS)
            if name == "system":  # the test's temporary folder differs on every run: keep the picture stable
                await page.locator("#store-where").evaluate("e => e.textContent = 'gateway.db'")
            await page.screenshot(path=str(shots / f"{name}-{label}.png"), animations="disabled")
        await page.context.close()
    sign_in = await console.page(width=390, height=844)
    await sign_in.goto(console.url("/console/sign-in"))
    await sign_in.screenshot(path=str(shots / "sign-in-phone.png"))
    for name in PAGES:
        for label in SIZES:
            assert (shots / f"{name}-{label}.png").stat().st_size > 5_000

    signed_in = await console.signed_in()
    # A fresh browser context holding only the session cookie: nothing cached, every byte counted.
    fresh = await console.browser.new_context(storage_state=await signed_in.context.storage_state())
    page = await fresh.new_page()
    await page.goto(console.url("/console/alerts"))
    timing = json.loads(await page.evaluate("""async () => JSON.stringify({
        first_contentful_paint_ms: await new Promise(resolve => new PerformanceObserver(list => resolve(
            list.getEntries().find(e => e.name === 'first-contentful-paint').startTime))
            .observe({type: 'paint', buffered: true})),
        transferred: performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
            .filter(e => !e.name.includes('/console/events'))
            .reduce((sum, e) => sum + e.transferSize, 0),
        dom_content_loaded_ms: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd})"""))
    assert timing["transferred"] > 0
    print(f"\nalerts page (3 alerts): {timing['transferred']} bytes transferred (HTML, CSS, script; the event "
          f"stream left out), first contentful paint {timing['first_contentful_paint_ms']:.0f} ms, "
          f"DOMContentLoaded {timing['dom_content_loaded_ms']:.0f} ms")
