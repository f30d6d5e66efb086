"""Chat pages through the real app: posts to Slack-, Teams- and generic-shaped receivers on loopback that
check the payload as those services do, errors mapped to tries or failure, and the posts' signed links."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.chat import signature
from gateway.config import load_config
from tests.peers.chat_receivers import Receiver, chat_app, rendered_links
from tests.support import ALICE, BOB, Gateway, eventually, write_config

PUBLIC = "https://oncall.example.com"
HOOK_SECRET = "hook-shared-secret"


class Receivers:
    def __init__(self) -> None:
        self.slack, self.teams, self.hook = Receiver(), Receiver(), Receiver()


@pytest.fixture
async def receivers(aiohttp_server: Callable[..., Any]) -> tuple[Receivers, str]:
    found = Receivers()
    server = await aiohttp_server(chat_app(found.slack, found.teams, found.hook, hook_secret=HOOK_SECRET))
    return found, str(server.make_url("")).rstrip("/")


@pytest.fixture
def gateway_for(aiohttp_client: Callable[..., Any], tmp_path: Path, receivers: tuple[Receivers, str],
                monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    _, base = receivers
    monkeypatch.setenv("GATEWAY_TEST_SLACK_URL", f"{base}/slack")
    monkeypatch.setenv("GATEWAY_TEST_HOOK_SECRET", HOOK_SECRET)

    async def start(steps: str) -> Gateway:
        path = write_config(tmp_path, f"""
server: {{public_url: "{PUBLIC}"}}
store: {{path: gateway.db}}
api_tokens: [{{name: tests, token: test-token}}]
engineers:
  alice: {{name: Alice, phones: ["{ALICE}"]}}
  bob: {{name: Bob, phones: ["{BOB}"]}}
teams:
  sre: {{members: [alice, bob]}}
policies:
  default:
    steps:
{steps}
default_route: {{team: sre, policy: default}}
chat:
  ops-slack: {{kind: slack, url_env: GATEWAY_TEST_SLACK_URL}}
  noc-teams: {{kind: teams, url: "{base}/teams"}}
  hook: {{kind: webhook, url: "{base}/hook", secret_env: GATEWAY_TEST_HOOK_SECRET, timeout: 5s}}
""")
        clock = FakeClock()
        return Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)

    return start


ALL_THREE = """      - {notify: primary, via: [call, chat], chat: [ops-slack, noc-teams, hook], timeout: 20s}
      - {notify: secondary, via: call, timeout: 20s}"""


async def started(gateway_for: Callable[[str], Any], steps: str = ALL_THREE) -> Gateway:
    gateway: Gateway = await gateway_for(steps)
    return gateway


async def trigger(gateway: Gateway) -> int:
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "queue <backlog> growing", "team": "sre",
                                                           "labels": {"queue": "billing"}})
    assert status == 202, answer
    alert_id: int = answer["id"]
    return alert_id


async def accepted(receiver: Receiver, count: int = 1) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        return receiver.accepted if len(receiver.accepted) >= count else None

    found: list[dict[str, Any]] = await eventually(check)
    return found


def chat_pages(alert: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["number"]: p for p in alert["pages"] if p["channel"] == "chat"}


async def test_one_step_posts_to_slack_teams_and_a_signed_webhook(gateway_for: Callable[[str], Any],
                                                                    receivers: tuple[Receivers, str]) -> None:
    found, _ = receivers
    gateway = await started(gateway_for)
    alert_id = await trigger(gateway)
    await gateway.ringing(ALICE)

    [slack] = await accepted(found.slack)
    assert f"Alert #{alert_id}" in slack["text"] and "queue &lt;backlog&gt; growing" in slack["text"]
    assert "queue &lt;backlog&gt; growing" in slack["blocks"][0]["text"]["text"]  # mrkdwn escapes
    buttons = {b["action_id"]: b["url"] for b in slack["blocks"][2]["elements"]}
    assert buttons["open"] == f"{PUBLIC}/console/alerts/{alert_id}"
    assert buttons["acknowledge"].startswith(f"{PUBLIC}/a/") and buttons["resolve"].startswith(f"{PUBLIC}/a/")

    [teams] = await accepted(found.teams)
    card = teams["attachments"][0]["content"]
    assert card["version"] == "1.4"
    assert {a["title"]: a["url"] for a in card["actions"]}["Open in console"] == f"{PUBLIC}/console/alerts/{alert_id}"
    assert any([run["text"] for run in block["inlines"]] == ["queue: ", "billing"] for block in card["body"])

    [hook] = await accepted(found.hook)  # the receiver verified the signature
    assert hook["alert"]["id"] == alert_id and hook["alert"]["labels"] == {"queue": "billing"}
    assert hook["links"]["console"] == f"{PUBLIC}/console/alerts/{alert_id}"
    hook_page = [p for p in (await gateway.alert(alert_id))["pages"] if p["number"] == "hook"]
    assert hook["delivery"] == f"page-{hook_page[0]['id']}"

    alert = await gateway.alert_where(alert_id, lambda a: len([p for p in chat_pages(a).values()
                                                                if p["outcome"] == "sent"]) == 3)
    assert set(chat_pages(alert)) == {"ops-slack", "noc-teams", "hook"}
    assert any(t["message"] == "chat post to ops-slack: sent" for t in alert["timeline"])
    assert alert["status"] == "triggered"  # a post is not an answer

    # Anyone in the channel can use a link, once; the timeline says which channel it came from.
    path = urlsplit(buttons["acknowledge"]).path
    async with gateway.client.get(path) as response:
        assert response.status == 200
    assert (await gateway.alert(alert_id))["status"] == "triggered"
    async with gateway.client.post(path) as response:
        assert response.status == 200
    alert = await gateway.alert(alert_id)
    assert (alert["status"], alert["acknowledged_by"]) == ("acknowledged", "chat:ops-slack")
    assert any(t["message"] == "acknowledged by ops-slack (chat link)" for t in alert["timeline"])
    async with gateway.client.post(path) as response:
        assert response.status == 410


async def test_transient_errors_are_tried_again_and_permanent_ones_fail_without_holding_up_the_call(
        gateway_for: Callable[[str], Any], receivers: tuple[Receivers, str]) -> None:
    found, _ = receivers
    found.slack.fail_next(429, "rate_limited", {"Retry-After": "7"})
    found.teams.fail_next(503, "busy", times=2)
    found.hook.fail_next(404, "no_service")
    gateway = await started(gateway_for)
    alert_id = await trigger(gateway)
    await gateway.ringing(ALICE)  # the call went out at once, whatever the chat posts do

    alert = await gateway.alert_where(alert_id, lambda a: chat_pages(a)["hook"]["status"] == "done")
    assert chat_pages(alert)["hook"]["outcome"] == "failed"
    assert "HTTP 404 (no_service)" in chat_pages(alert)["hook"]["detail"]
    assert found.hook.requests == 1  # a 4xx is not tried again
    await gateway.alert_where(alert_id, lambda a: sum("trying again" in t["message"] for t in a["timeline"]) == 2)
    timeline = [t["message"] for t in (await gateway.alert(alert_id))["timeline"]]
    slack_refused = ("chat post to ops-slack failed (slack webhook answered HTTP 429 (rate_limited)); "
                     "trying again in 7 s")
    assert slack_refused in timeline, timeline
    assert any("chat post to noc-teams failed" in m and "trying again in 5 s" in m for m in timeline), timeline

    await gateway.clock.advance(5)  # Teams' second try (503 again), then a wait of 30 s
    await gateway.alert_where(alert_id, lambda a: sum("trying again" in t["message"] for t in a["timeline"]) == 3)
    await gateway.clock.advance(2)  # Slack's Retry-After has passed
    await accepted(found.slack)
    await gateway.clock.advance(30)
    await accepted(found.teams)
    alert = await gateway.alert_where(alert_id, lambda a: all(p["status"] == "done" for p in chat_pages(a).values()))
    outcomes = {name: (p["outcome"], p["detail"]) for name, p in chat_pages(alert).items()}
    assert outcomes["ops-slack"] == ("sent", "on try 2")
    assert outcomes["noc-teams"] == ("sent", "on try 3")
    await gateway.ringing(BOB)  # escalation kept its own time meanwhile: step 2 after 20 s
    assert alert["status"] == "triggered"


async def test_a_chat_only_step_whose_posts_all_fail_moves_on(gateway_for: Callable[[str], Any],
                                                                receivers: tuple[Receivers, str]) -> None:
    found, _ = receivers
    found.hook.fail_next(400, "bad")
    gateway = await started(gateway_for, """      - {notify: primary, via: chat, chat: [hook], timeout: 5m}
      - {notify: secondary, via: call, timeout: 20s}""")
    await trigger(gateway)
    await gateway.ringing(BOB)  # nobody could be told: the next step starts now, not in 5 minutes


def test_the_documented_signature_is_what_a_receiver_computes() -> None:
    body = json.dumps({"a": 1}).encode()
    header = signature(HOOK_SECRET, 1767787200, body)
    timestamp, mac = (part.split("=", 1)[1] for part in header.split(","))
    assert timestamp == "1767787200"
    assert mac == hmac.new(HOOK_SECRET.encode(), b"1767787200." + body, hashlib.sha256).hexdigest()


async def test_closing_the_alert_cancels_a_post_waiting_to_try_again(gateway_for: Callable[[str], Any],
                                                                       receivers: tuple[Receivers, str]) -> None:
    found, _ = receivers
    found.teams.fail_next(503, "busy")
    step = """      - {notify: primary, via: [call, chat], chat: [noc-teams], timeout: 20s}"""
    gateway = await started(gateway_for, step)
    alert_id = await trigger(gateway)
    await gateway.alert_where(alert_id, lambda a: any("trying again in 5 s" in t["message"] for t in a["timeline"]))
    status, _ = await gateway.post(f"/api/v1/alerts/{alert_id}/acknowledge")
    assert status == 200
    alert = await gateway.alert(alert_id)  # at once, not when the wait is over
    assert (chat_pages(alert)["noc-teams"]["outcome"], chat_pages(alert)["noc-teams"]["detail"]) == (
        "canceled", "alert closed; not sent")
    await gateway.clock.advance(60)
    alert = await gateway.alert(alert_id)
    assert found.teams.requests == 1 and found.teams.accepted == []
    assert chat_pages(alert)["noc-teams"]["outcome"] == "canceled"


async def test_the_receivers_refuse_what_the_services_refuse(receivers: tuple[Receivers, str]) -> None:
    found, base = receivers
    good_slack = {"text": "t", "blocks": [{"type": "actions", "elements": [
        {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "A"}, "url": "https://x"}]}]}
    bad = [
        ("slack", "text/plain", json.dumps(good_slack)),  # Slack wants JSON
        ("slack", "application/json", json.dumps({"blocks": []})),  # no text, no blocks
        ("slack", "application/json", json.dumps({**good_slack, "blocks": [{**good_slack["blocks"][0], "elements": [
            {**good_slack["blocks"][0]["elements"][0], "text": {"type": "mrkdwn", "text": "A"}}]}]})),  # button text
        ("teams", "application/json", json.dumps({"type": "message", "attachments": []})),
        ("teams", "application/json", json.dumps({"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.teams.card.o365connector", "content": {}}]})),  # old cards
        ("teams", "application/json", json.dumps({"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": {
                "type": "AdaptiveCard", "version": "1.4", "body": [
                    {"type": "RichTextBlock", "inlines": [{"type": "TextBlock", "text": "x"}]}]}}]})),  # no TextRun
        ("hook", "application/json", json.dumps({"a": 1})),  # unsigned
    ]
    async with aiohttp.ClientSession() as session:
        for path, content_type, body in bad:
            async with session.post(f"{base}/{path}", data=body, headers={"Content-Type": content_type}) as response:
                assert response.status == 400, (path, body)
        async with session.post(f"{base}/slack", json=good_slack) as response:
            assert (response.status, await response.text()) == (200, "ok")
    assert len(found.slack.refused) == 3 and len(found.teams.refused) == 3 and len(found.hook.refused) == 1


async def test_alert_text_cannot_slip_a_link_or_a_mention_into_slack_or_teams(
        gateway_for: Callable[[str], Any], receivers: tuple[Receivers, str]) -> None:
    found, _ = receivers
    step = """      - {notify: primary, via: chat, chat: [ops-slack, noc-teams], timeout: 20s}"""
    gateway = await started(gateway_for, step)
    status, answer = await gateway.post("/api/v1/alerts", {
        "summary": "[Acknowledge here](https://evil.example/a) <!channel> <https://evil.example|Resolve>",
        "team": "sre", "labels": {"[runbook](https://evil.example/r)": "[fix](https://evil.example/f)"}})
    assert status == 202, answer
    alert_id = answer["id"]

    [teams] = await accepted(found.teams)
    card = teams["attachments"][0]["content"]
    links = rendered_links(card)
    assert {label for label, _ in links} == {"Acknowledge", "Resolve", "Open in console"}, links
    assert all(url.startswith(f"{PUBLIC}/") for _, url in links), links
    shown = [run["text"] for block in card["body"] for run in block.get("inlines", [])]
    assert f"Alert #{alert_id}: [Acknowledge here](https://evil.example/a) <!channel> <https://evil.example|Resolve>" \
        in shown  # shown as written, in a TextRun (no markdown)

    [slack] = await accepted(found.slack)
    texts = [slack["text"], slack["blocks"][0]["text"]["text"], *(f["text"] for f in slack["blocks"][1]["fields"])]
    for text in texts:  # neither a mention nor a <url|label> link: Slack's control characters are escaped
        assert "<" not in text and ">" not in text, text
    assert "&lt;!channel&gt;" in slack["text"]
