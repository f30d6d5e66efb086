"""The Maintenance page in Debian's Chromium (headless, Playwright): a window added from the form holds an
alert that arrives, live; ended from the page, the alert pages."""

from __future__ import annotations

from playwright.async_api import expect

from tests.console.conftest import VIEWER_TOKEN, Console
from tests.console.test_console import WAIT_MS, api


async def test_a_window_added_on_the_page_holds_an_arriving_alert_until_ended_there(console: Console) -> None:
    page = await console.signed_in()
    await page.click("nav a:has-text('Maintenance')")
    await page.wait_for_url("**/console/maintenance")
    await expect(page.locator("#windows")).to_contain_text("db-upgrade", timeout=WAIT_MS)  # the YAML's, upcoming
    await expect(page.locator("tr[data-heartbeat='nightly-backup']")).to_contain_text("never", timeout=WAIT_MS)
    await page.click("summary:has-text('Add a maintenance window')")
    await page.fill("textarea[name=matchers]", 'service="db"\nenv="prod"')
    await page.fill("input[name=end]", "2026-01-07T14:00")  # the gateway's clock: 2026-01-07 12:00 UTC
    await page.fill("input[name=comment]", "failover drill")
    await page.click("button:has-text('Add window')")
    window = page.locator("#windows li:has-text('failover drill')")
    await expect(window).to_have_attribute("data-state", "active", timeout=WAIT_MS)
    await expect(window).to_contain_text("added by tests", timeout=WAIT_MS)
    _, listed = await api(console, "GET", "/api/v1/maintenance")
    (added,) = [w for w in listed["windows"] if w["source"] == "api"]
    assert added["created_by"] == "tests" and added["matchers"] == ['service="db"', 'env="prod"'], added

    await expect(page.locator("body[data-live=on]")).to_have_count(1, timeout=WAIT_MS)
    await page.evaluate("window.sameDocument = true")
    status, body = await api(console, "POST", "/api/v1/alerts", {
        "summary": "primary db unreachable", "team": "sre", "labels": {"service": "db", "env": "prod"}})
    assert status == 202, body
    alert_id = int(body["id"])
    await expect(window.locator(f".held a[data-alert='{alert_id}']")).to_have_count(1, timeout=WAIT_MS)  # live
    assert await page.evaluate("window.sameDocument") is True

    await window.locator("button:has-text('End now')").click()
    await expect(window).to_have_attribute("data-state", "ended", timeout=WAIT_MS)
    await expect(window).to_contain_text("ended early by tests", timeout=WAIT_MS)
    await expect(window.locator("button:has-text('End now')")).to_have_count(0, timeout=WAIT_MS)
    await expect(window.locator(".held")).to_have_count(0, timeout=WAIT_MS)  # released: it pages now
    await page.goto(console.url(f"/console/alerts/{alert_id}"))
    await expect(page.locator("#timeline")).to_contain_text("held by maintenance window maintenance", timeout=WAIT_MS)
    await expect(page.locator("#timeline")).to_contain_text("ended early by tests): paging starts now",
                                                            timeout=WAIT_MS)
    await expect(page.locator("#pages")).to_contain_text("alice", timeout=WAIT_MS)


async def test_a_viewer_sees_the_page_without_forms_and_cannot_post(console: Console) -> None:
    page = await console.signed_in(VIEWER_TOKEN)
    await page.goto(console.url("/console/maintenance"))
    await expect(page.locator("#windows")).to_contain_text("db-upgrade", timeout=WAIT_MS)
    assert await page.locator("summary:has-text('Add a maintenance window')").count() == 0
    csrf = await page.get_attribute("form[action='/console/sign-out'] input[name=csrf]", "value")
    answer = await page.request.post(console.url("/console/maintenance"), max_redirects=0, form={
        "csrf": csrf or "", "matchers": 'service="db"', "end": "2026-01-07T14:00"})
    assert answer.status == 403 and "responder" in await answer.text()
