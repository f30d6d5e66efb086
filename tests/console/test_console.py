"""The console in Debian's Chromium (headless, Playwright): sign-in, live alerts, acting, overrides, phones."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from tests.console.conftest import HOTLINE, VIEWER_TOKEN, Console
from tests.support import ALICE, AUTH, eventually

WAIT_MS = 30_000  # generous: a loaded machine is slow, not wrong


async def api(console: Console, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, console.url(path), json=body,
                                                             headers=AUTH) as resp:
        return resp.status, await resp.json()


async def trigger(console: Console, summary: str, team: str = "sre") -> int:
    status, body = await api(console, "POST", "/api/v1/alerts", {"summary": summary, "team": team})
    assert status == 202, body
    return int(body["id"])


async def csrf_of(page: Page) -> str:
    value = await page.get_attribute("form[action='/console/sign-out'] input[name=csrf]", "value")
    assert value
    return value


async def test_unauthenticated_pages_go_to_sign_in_and_the_api_stays_token_only(console: Console) -> None:
    page = await console.page()
    await page.goto(console.url("/console/alerts?status=triggered"))
    assert "/console/sign-in" in page.url
    await page.fill("input[name=token]", "not-a-token")
    await page.click("button[type=submit]")
    await expect(page.locator(".error")).to_contain_text("not an API token", timeout=WAIT_MS)
    elsewhere = await page.request.post(console.url("/console/sign-in"), form={"token": "test-token"},
                                        headers={"Origin": "https://evil.example"}, max_redirects=0)
    assert elsewhere.status == 403 and "set-cookie" not in elsewhere.headers
    page = await console.signed_in()
    cookies = await page.context.cookies()
    (cookie,) = [c for c in cookies if c["name"] == "gateway_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["expires"] > 0
    answer = await page.request.get(console.url("/api/v1/alerts"))  # the cookie is sent, but is no API token
    assert answer.status == 401


async def test_an_alert_arrives_live_and_filters_apply(console: Console) -> None:
    page = await console.signed_in()
    await expect(page.locator("#alert-list")).to_contain_text("No alerts", timeout=WAIT_MS)
    await page.evaluate("window.sameDocument = true")
    await expect(page.locator("body[data-live=on]")).to_have_count(1, timeout=WAIT_MS)
    alert_id = await trigger(console, "disk full on db-7")
    row = page.locator(f"li[data-alert='{alert_id}']")
    await expect(row).to_contain_text("disk full on db-7", timeout=WAIT_MS)
    await expect(row).to_contain_text("triggered", timeout=WAIT_MS)
    assert await page.evaluate("window.sameDocument") is True  # no reload: the list was swapped in place
    await api(console, "POST", f"/api/v1/alerts/{alert_id}/acknowledge", {})
    await expect(row.locator(".badge").first).to_have_text("acknowledged", timeout=WAIT_MS)
    await page.select_option("select[name=status]", "triggered")
    await page.click("form.filters button")
    await expect(page.locator("#alert-list")).to_contain_text("No alerts match", timeout=WAIT_MS)


async def test_acknowledge_from_the_alert_page_and_the_timeline_updates(console: Console) -> None:
    alert_id = await trigger(console, "checkout 5xx above 2%")
    page = await console.signed_in()
    await page.goto(console.url(f"/console/alerts/{alert_id}"))
    await expect(page.locator("#pages")).to_contain_text("alice", timeout=WAIT_MS)
    await page.click("button:has-text('Acknowledge')")
    await expect(page.locator("#alert-status")).to_have_text("acknowledged", timeout=WAIT_MS)
    await expect(page.locator("#timeline")).to_contain_text("acknowledged by tests (console)", timeout=WAIT_MS)
    _, body = await api(console, "GET", f"/api/v1/alerts/{alert_id}")
    assert body["status"] == "acknowledged" and body["acknowledged_by"] == "tests"
    # A change made elsewhere reaches the open page without a reload.
    await page.evaluate("window.sameDocument = true")
    await api(console, "POST", f"/api/v1/alerts/{alert_id}/resolve", {})
    await expect(page.locator("#alert-status")).to_have_text("resolved", timeout=WAIT_MS)
    assert await page.evaluate("window.sameDocument") is True


async def test_a_viewer_sees_no_buttons_and_the_server_refuses_its_posts(console: Console) -> None:
    alert_id = await trigger(console, "viewer looks")
    page = await console.signed_in(VIEWER_TOKEN)
    await page.goto(console.url(f"/console/alerts/{alert_id}"))
    await expect(page.locator("#alert-status")).to_have_text("triggered", timeout=WAIT_MS)
    assert await page.locator("button:has-text('Acknowledge')").count() == 0
    answer = await page.request.post(console.url(f"/console/alerts/{alert_id}/acknowledge"),
                                     form={"csrf": await csrf_of(page)}, max_redirects=0)
    assert answer.status == 403 and "responder" in await answer.text()
    assert (await api(console, "GET", f"/api/v1/alerts/{alert_id}"))[1]["status"] == "triggered"


async def test_a_forged_csrf_token_and_an_expired_session_are_refused(console: Console) -> None:
    alert_id = await trigger(console, "csrf probe")
    page = await console.signed_in()
    for form in ({"csrf": "forged"}, {}):
        answer = await page.request.post(console.url(f"/console/alerts/{alert_id}/acknowledge"), form=form,
                                         max_redirects=0)
        assert answer.status == 403 and "CSRF" in await answer.text()
    assert (await api(console, "GET", f"/api/v1/alerts/{alert_id}"))[1]["status"] == "triggered"
    csrf = await csrf_of(page)
    await console.clock.advance(13 * 3600)  # past the session's 12 hours, on the gateway's clock
    answer = await page.request.post(console.url(f"/console/alerts/{alert_id}/acknowledge"), form={"csrf": csrf},
                                     max_redirects=0)
    assert answer.status == 303 and "/console/sign-in" in answer.headers["location"]
    await page.goto(console.url("/console/alerts"))
    assert "/console/sign-in" in page.url
    assert (await api(console, "GET", f"/api/v1/alerts/{alert_id}"))[1]["status"] != "acknowledged"


async def test_an_override_changes_the_picture_and_the_api(console: Console) -> None:
    _, before = await api(console, "GET", "/api/v1/oncall?team=sre")
    assert before["teams"][0]["primary"]["id"] == "alice"
    page = await console.signed_in()
    await page.goto(console.url("/console/oncall"))
    team = page.locator("#team-sre")
    await expect(team.locator(".primary-now")).to_have_text("Alice", timeout=WAIT_MS)
    assert await team.locator(".bar.override").count() == 0
    await team.locator("summary:has-text('Add an override')").click()
    await team.locator("select[name=engineer]").select_option("bob")
    await team.locator("select[name=role]").select_option("primary")
    await team.locator("input[name=start]").fill("2026-01-07T11:00")  # the gateway's clock: 2026-01-07 12:00 UTC
    await team.locator("input[name=end]").fill("2026-01-09T11:00")
    await team.locator("button:has-text('Add override')").click()
    await expect(team.locator(".primary-now")).to_have_text("Bob", timeout=WAIT_MS)
    await expect(team.locator(".lane[data-role=primary] .bar.override[data-engineer=bob]")).to_have_count(
        1, timeout=WAIT_MS)
    await expect(page.locator("#overrides")).to_contain_text("tests (console)", timeout=WAIT_MS)
    _, after = await api(console, "GET", "/api/v1/oncall?team=sre")
    assert after["teams"][0]["primary"]["id"] == "bob", after
    assert after["teams"][0]["secondary"]["id"] == "alice", after  # a swap
    assert after["teams"][0]["until"] == "2026-01-09T11:00:00Z"


async def test_the_sandbox_story_by_clicking_phones(console: Console) -> None:
    page = await console.signed_in()
    await page.goto(console.url("/console/phones"))
    await expect(page.locator("body[data-live=on]")).to_have_count(1, timeout=WAIT_MS)
    alice = page.locator(f"article[data-number='{ALICE}']")
    await expect(alice).to_have_attribute("data-state", "idle", timeout=WAIT_MS)
    alert_id = await trigger(console, "payments queue stuck")
    await expect(alice).to_have_attribute("data-state", "ringing", timeout=WAIT_MS)  # live, no reload
    await alice.locator("button:has-text('Answer')").click()
    await expect(alice.locator(".hearing")).to_contain_text("Press 1 to acknowledge", timeout=WAIT_MS)
    await alice.locator("button:has-text('Press 1')").click()

    async def acknowledged() -> bool:
        return (await api(console, "GET", f"/api/v1/alerts/{alert_id}"))[1]["status"] == "acknowledged"

    await eventually(acknowledged)
    await page.goto(console.url(f"/console/alerts/{alert_id}"))
    await expect(page.locator("#alert-status")).to_have_text("acknowledged", timeout=WAIT_MS)
    await expect(page.locator("#pages")).to_contain_text(re.compile("acknowledged"), timeout=WAIT_MS)


async def test_a_caller_dials_the_hotline_from_the_dial_pad_and_the_primary_takes_it(console: Console) -> None:
    page = await console.signed_in()
    await page.goto(console.url("/console/phones"))
    await page.fill("#dialpad input[name=from]", "+15557770001")
    await page.select_option("#dialpad select[name=to]", HOTLINE)
    await page.click("#dialpad button:has-text('Call')")
    caller = page.locator("article[data-number='+15557770001']")
    await expect(caller.locator(".hearing")).to_contain_text("music on hold", timeout=WAIT_MS)
    await page.goto(console.url("/console/hotline"))
    await expect(page.locator("#waiting")).to_contain_text("+1555***0001", timeout=WAIT_MS)
    await page.goto(console.url("/console/phones"))
    alice = page.locator(f"article[data-number='{ALICE}']")
    await expect(alice).to_have_attribute("data-state", "ringing", timeout=WAIT_MS)
    await alice.locator("button:has-text('Answer')").click()
    await alice.locator("button:has-text('Press 1')").click()
    await expect(caller.locator(".hearing")).to_contain_text(f"connected to {ALICE}", timeout=WAIT_MS)
    await page.goto(console.url("/console/hotline"))
    await expect(page.locator("#waiting")).to_contain_text("Nobody is waiting", timeout=WAIT_MS)
    await expect(page.locator("#hotline-history")).to_contain_text("alice (accepted)", timeout=WAIT_MS)
