"""The console's Maintenance page over real HTTP (no browser): what each role sees, adding and ending a window
by the API's rules, and what bad input and a forged form get."""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.console.maintenance_page import MESSAGES, duration
from gateway.console.views import HUB
from gateway.web import maintenance as api_maintenance
from gateway.web.keys import STORE
from tests.console.test_http import drain
from tests.support import AUTH, BASE_CONFIG, TOKEN, eventually, write_config

Client = Callable[..., Awaitable[TestClient]]
VIEWER = "viewer-token-0000"
CONFIG = BASE_CONFIG.replace(
    f"    token: {TOKEN}\n", f"    token: {TOKEN}\n  - {{name: night-viewer, token: {VIEWER}, role: viewer}}\n",
) + """
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


async def _gateway(tmp_path: Path, aiohttp_client: Client, token: str = TOKEN) -> tuple[TestClient, Any, FakeClock]:
    clock = FakeClock()
    app = create_app(load_config(write_config(tmp_path, CONFIG)), clock=clock)
    client = await aiohttp_client(app)
    answer = await client.post("/console/sign-in", data={"token": token}, allow_redirects=False)
    assert answer.status == 303
    return client, app, clock


async def _csrf(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', await (await client.get("/console/maintenance")).text())
    assert found
    return found.group(1)


async def _windows(client: TestClient) -> list[dict[str, Any]]:
    answer = await client.get("/api/v1/maintenance", headers=AUTH)
    assert answer.status == 200
    return list((await answer.json())["windows"])


async def test_a_viewer_sees_windows_and_heartbeats_but_no_forms_and_its_posts_are_refused(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, _, _ = await _gateway(tmp_path, aiohttp_client, VIEWER)
    answer = await client.get("/console/maintenance")
    text = await answer.text()
    assert answer.status == 200
    assert 'href="/console/maintenance" aria-current="page"' in text
    assert "db-upgrade" in text and "upcoming" in text and "service=&#34;db&#34;" in text and "Postgres 17" in text
    assert 'data-heartbeat="nightly-backup"' in text and "never" in text
    assert "Add a maintenance window" not in text and "End now" not in text
    token = await _csrf(client)
    refused = await client.post("/console/maintenance", allow_redirects=False, data={
        "csrf": token, "matchers": 'service="db"', "end": "2026-01-07T14:00"})
    assert refused.status == 403 and "responder" in await refused.text()
    assert [w for w in await _windows(client) if w["source"] == "api"] == []


async def test_a_responder_adds_and_ends_a_window_recorded_under_its_token(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, _ = await _gateway(tmp_path, aiohttp_client)
    queue = app[HUB].subscribe()
    token = await _csrf(client)
    assert "Add a maintenance window" in await (await client.get("/console/maintenance")).text()
    added = await client.post("/console/maintenance", allow_redirects=False, data={
        "csrf": token, "matchers": 'service="db"\r\nenv=~"prod|staging"\r\n', "start": "",
        "end": "2026-01-07T14:00", "action": "suppress", "comment": "failover drill"})
    assert added.status == 303, await added.text()
    assert ("maintenance", {}) in drain(queue)  # the open pages fetch their part again
    (window,) = [w for w in await _windows(client) if w["source"] == "api"]
    assert window["state"] == "active" and window["created_by"] == "tests"
    assert window["matchers"] == ['service="db"', 'env=~"prod|staging"'] and window["end"] == "2026-01-07T14:00:00Z"
    assert added.headers["Location"] == f"/console/maintenance#window-{window['id']}"

    status = await client.post("/api/v1/alerts", headers=AUTH, json={
        "summary": "db down", "team": "sre", "labels": {"service": "db", "env": "prod"}})
    assert status.status == 202
    alert_id = (await status.json())["id"]
    page = await (await client.get("/console/maintenance")).text()
    assert f'href="/console/alerts/{alert_id}" data-alert="{alert_id}">#{alert_id} db down</a>' in page
    assert "failover drill" in page and "End now" in page

    ended = await client.post(f"/console/maintenance/{window['id']}/end", data={"csrf": token},
                              allow_redirects=False)
    assert ended.status == 303
    (window,) = [w for w in await _windows(client) if w["source"] == "api"]
    assert window["state"] == "ended" and window["ended_by"] == "tests"

    async def released() -> bool:
        return not await app[STORE].list_holds()
    await eventually(released)
    page = await (await client.get("/console/maintenance")).text()
    assert "ended early by tests" in page and "End now" not in page
    again = await client.post(f"/console/maintenance/{window['id']}/end", data={"csrf": token},
                              allow_redirects=False)
    assert again.headers["Location"] == "/console/maintenance?message=window_over"
    assert MESSAGES["window_over"] in await (await client.get(again.headers["Location"])).text()
    for odd in ("999", "%C2%B2", "db-upgrade"):  # unknown, not ASCII digits, a YAML window
        gone = await client.post(f"/console/maintenance/{odd}/end", data={"csrf": token}, allow_redirects=False)
        assert gone.headers["Location"] == "/console/maintenance?message=window_gone", odd


async def test_bad_input_shows_the_apis_message_keeps_what_was_typed_and_stores_nothing(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, _, _ = await _gateway(tmp_path, aiohttp_client)
    token = await _csrf(client)
    cases = [
        ({"matchers": "", "end": "2026-01-07T14:00"}, "matchers: must be a non-empty list"),
        ({"matchers": "service~db", "end": "2026-01-07T14:00"}, "matchers[0]: 'service~db' is not a matcher"),
        ({"matchers": 'env!="dev"', "end": "2026-01-07T14:00"}, "matchers:"),
        ({"matchers": 'service="db"', "end": ""}, "end: must be an ISO 8601 time"),
        ({"matchers": 'service="db"', "start": "2026-01-07T09:00", "end": "2026-01-07T11:00"}, "end: is in the past"),
        ({"matchers": 'service="db"', "start": "2026-01-07T15:00", "end": "2026-01-07T14:00"}, "end: must be after"),
        ({"matchers": 'service="db"', "end": "2026-06-07T14:00"}, "at most 90 days"),
        ({"matchers": 'service="db"', "end": "99999-01-01T00:00"}, "end: must be an ISO 8601 time"),
        ({"matchers": 'service="db"', "end": "2026-01-07T14:00", "action": "page-loudly"}, "action: must be one of"),
        ({"matchers": 'service="<b>x</b>"', "end": "2026-01-07T14:00", "comment": "c" * 1025}, "comment:"),
    ]
    for form, expected in cases:
        answer = await client.post("/console/maintenance", allow_redirects=False, data={"csrf": token, **form})
        text = await answer.text()
        assert answer.status == 422, (form, text)
        found = re.search(r'id="window-error">([^<]*)<', text)
        assert found and expected in html.unescape(found.group(1)), (form, found)
        assert "<b>x</b>" not in text  # what was typed is shown back, escaped
        if form.get("end"):
            assert f'name="end" value="{form["end"]}"' in text
    assert [w for w in await _windows(client) if w["source"] == "api"] == []


async def test_a_forged_or_missing_csrf_value_is_refused_and_nothing_is_stored(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, _, _ = await _gateway(tmp_path, aiohttp_client)
    for form in ({"csrf": "forged"}, {}):
        answer = await client.post("/console/maintenance", allow_redirects=False, data={
            **form, "matchers": 'service="db"', "end": "2026-01-07T14:00"})
        assert answer.status == 403 and "CSRF" in await answer.text()
    assert [w for w in await _windows(client) if w["source"] == "api"] == []


async def test_a_late_heartbeat_links_its_alert_and_a_check_in_is_published_and_shown(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, clock = await _gateway(tmp_path, aiohttp_client)

    async def row() -> str:
        text = await (await client.get("/console/maintenance")).text()
        found = re.search(r'data-heartbeat="nightly-backup">(.*?)</tr>', text)
        assert found
        return found.group(1)

    assert '<td class="">never</td>' in await row() and "24h + 30m" in await row()
    await clock.advance(24 * 3600 + 31 * 60)  # past the first deadline: start + interval + grace
    assert (await client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)).status == 303

    async def late() -> str | None:
        found = re.search(r'<td class="bad">late</td>.*href="/console/alerts/(\d+)">#\d+</a>', await row())
        return found.group(1) if found else None

    alert_id = await eventually(late)
    alert = await (await client.get(f"/api/v1/alerts/{alert_id}", headers=AUTH)).json()
    assert alert["dedup_key"] == "heartbeat:nightly-backup" and alert["status"] == "triggered"
    queue = app[HUB].subscribe()
    assert (await client.post("/api/v1/heartbeats/nightly-backup", headers=AUTH)).status == 200
    assert ("heartbeat", {}) in drain(queue)
    shown = await row()
    assert '<td class="ok">ok</td>' in shown and "Thu 8 Jan 12:31 UTC" in shown and "/console/alerts/" not in shown


def test_durations_are_short() -> None:
    assert [duration(s) for s in (0, 45, 1800, 86400, 93784, -5)] == ["0", "45s", "30m", "24h", "26h 3m 4s", "0"]


async def test_the_apis_limit_on_live_windows_holds_on_the_page_and_api_changes_are_published(
        tmp_path: Path, aiohttp_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_maintenance, "MAX_LIVE", 1)
    client, app, _ = await _gateway(tmp_path, aiohttp_client)
    queue = app[HUB].subscribe()
    added = await client.post("/api/v1/maintenance", headers=AUTH, json={
        "matchers": ['service="db"'], "end": "2026-01-07T14:00:00Z"})
    assert added.status == 201
    assert ("maintenance", {}) in drain(queue)  # added through the API: the open pages hear it too
    token = await _csrf(client)
    refused = await client.post("/console/maintenance", allow_redirects=False, data={
        "csrf": token, "matchers": 'service="queue"', "end": "2026-01-07T14:00"})
    assert refused.status == 409 and "the most allowed: end some first" in await refused.text()
    assert len([w for w in await _windows(client) if w["source"] == "api"]) == 1
    ended = await client.post(f"/api/v1/maintenance/{(await added.json())['id']}/end", headers=AUTH)
    assert ended.status == 200
    assert ("maintenance", {}) in drain(queue)


async def test_the_page_hears_of_the_windows_every_minute_so_one_that_starts_on_its_own_shows(
        tmp_path: Path, aiohttp_client: Client) -> None:
    client, app, clock = await _gateway(tmp_path, aiohttp_client)
    added = await client.post("/api/v1/maintenance", headers=AUTH, json={
        "matchers": ['service="db"'], "start": "2026-01-07T12:01:00Z", "end": "2026-01-07T14:00:00Z"})
    assert added.status == 201 and (await added.json())["state"] == "upcoming"
    queue = app[HUB].subscribe()
    await clock.advance(61)

    async def heard() -> bool:
        return ("maintenance", {}) in drain(queue)

    await eventually(heard)
    text = await (await client.get("/console/maintenance")).text()
    assert re.search(r'id="window-1" data-state="active"', text)
