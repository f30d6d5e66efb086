"""The live part of a page in a real browser: typing survives an update; a hidden tab holds no stream."""

from __future__ import annotations

from playwright.async_api import expect

from gateway.console.views import HUB
from tests.console.conftest import Console
from tests.console.test_console import WAIT_MS, trigger
from tests.support import ALICE, CAROL, eventually


async def test_an_update_waits_while_the_operator_types_in_the_live_part(console: Console) -> None:
    page = await console.signed_in()
    await page.goto(console.url("/console/phones"))
    await expect(page.locator("body[data-live=on]")).to_have_count(1, timeout=WAIT_MS)
    alice = page.locator(f"article[data-number='{ALICE}']")
    await alice.locator("summary:has-text('Text or call')").click()
    box = alice.locator("input[name=text]")
    await box.fill("ack 1 - on my way")
    await trigger(console, "dba thing", team="dba")  # Carol is texted: a phone event for another card
    await expect(page.locator("body[data-deferred]")).to_have_count(1, timeout=WAIT_MS)
    assert await box.input_value() == "ack 1 - on my way"
    assert await page.evaluate("document.activeElement && document.activeElement.name") == "text"
    await expect(page.locator(f"article[data-number='{CAROL}']")).not_to_contain_text("dba thing")
    await box.fill("")  # given up: the field is left unchanged, so the update happens
    await box.blur()
    await expect(page.locator(f"article[data-number='{CAROL}'] .sms")).to_contain_text("dba thing",
                                                                                     timeout=WAIT_MS)


async def test_a_hidden_tab_closes_its_stream_and_catches_up_when_shown(console: Console) -> None:
    page = await console.signed_in()
    await expect(page.locator("body[data-live=on]")).to_have_count(1, timeout=WAIT_MS)
    hub = console.server.app[HUB]
    assert hub.listeners == 1

    async def show(state: str) -> None:
        await page.evaluate("""state => {
            Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""", state)

    await show("hidden")
    await eventually(lambda: _true(hub.listeners == 0))
    alert_id = await trigger(console, "raised while the tab was hidden")
    row = page.locator(f"li[data-alert='{alert_id}']")
    await expect(row).to_have_count(0)
    await show("visible")
    await expect(row).to_have_count(1, timeout=WAIT_MS)
    assert hub.listeners == 1


async def _true(value: bool) -> bool:
    return value


async def test_a_link_from_another_site_opens_the_page_signed_in(console: Console) -> None:
    alert_id = await trigger(console, "linked from chat")
    page = await console.signed_in()
    target = console.url(f"/console/alerts/{alert_id}")
    await page.route("http://chat.example/", lambda route: route.fulfill(
        content_type="text/html", body=f'<a id="go" href="{target}">alert</a>'))
    await page.goto("http://chat.example/")
    await page.click("#go")
    await page.wait_for_url(target, timeout=WAIT_MS)
    await expect(page.locator("body")).to_contain_text("linked from chat", timeout=WAIT_MS)
