"""The whole gateway on Twilio: a loopback Twilio API, and webhooks signed for the public URL.

The driver signs every webhook for ``https://gateway.example.com`` and sends it
to the test server on 127.0.0.1, as a reverse proxy would; it follows the
TwiML the gateway answers, like Twilio.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from multidict import MultiDict

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.web.keys import PROVIDERS
from providers.twilio import conference_name
from tests.peers.twilio_api import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeTwilioApi,
)
from tests.peers.twilio_driver import CallLeg, Transcript, TwilioDriver
from tests.support import (
    ALICE,
    BASE_CONFIG,
    BOB,
    CAROL,
    Gateway,
    eventually,
    write_config,
)

PUBLIC = "https://gateway.example.com"
FROM = "+15559990000"
HOTLINE = "+15557770000"
CALLER = "+15557770001"
CALLS = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls.json"
MESSAGES = f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"


def twilio_config(api_base_url: str) -> str:
    return BASE_CONFIG.replace("policies:\n", """policies:
  hotline:
    steps:
      - {notify: primary, timeout: 20s}
      - {notify: secondary, timeout: 20s}
""") + f"""
server:
  public_url: {PUBLIC}
twilio:
  account_sid: {DEFAULT_ACCOUNT_SID}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "{FROM}"
  api_base_url: {api_base_url}
  calls_per_second: 50  # the dispatcher paces calls in real time; keep the story fast
hotlines:
  - name: ops
    number: "{HOTLINE}"
    team: sre
    policy: hotline
    greeting: "You have reached the {{{{ team }}}} on-call hotline."
    priority_menu: true
"""


@dataclass
class Story:
    gateway: Gateway
    api: FakeTwilioApi
    twilio: TwilioDriver

    async def call(self, index: int, to: str) -> tuple[MultiDict[str], CallLeg]:
        """The ``index``-th call the gateway placed (it must be to ``to``), and its leg."""
        await eventually(lambda: _true(len(self.api.calls) > index))
        form = self.api.calls[index]
        assert form["To"] == to, (form["To"], to)
        return form, CallLeg(from_=form["From"], to=to, sid=self.api.call_sids[index])

    async def answer(self, form: MultiDict[str], leg: CallLeg, digits: list[str | None]) -> Transcript:
        """The callee picks up (Twilio's answering-machine detection as the call asked) and presses ``digits``."""
        status, twiml = await self.twilio.pick_up(form, leg)
        assert status == 200, twiml
        return await self.twilio.follow(twiml, leg=leg, digits=digits, url=form["Url"])

    async def dial_in(self, menu_key: str) -> tuple[CallLeg, Transcript]:
        """A caller dials the hotline, picks a priority and ends up looping on hold."""
        caller = CallLeg(from_=CALLER, to=HOTLINE, direction="inbound")
        self.api.incoming(caller.sid, from_=CALLER, to=HOTLINE)
        status, twiml = await self.twilio.incoming_call("/twilio/voice/inbound", caller)
        assert status == 200, twiml
        held = await self.twilio.follow(twiml, leg=caller, digits=[menu_key], max_redirects=1,
                                        url="/twilio/voice/inbound")
        assert ("say", "You have reached the sre on-call hotline.") in held
        assert held[-1] == ("parked", f"{PUBLIC}/twilio/voice/tw-{caller.sid}/hold")
        return caller, held

    async def redirected(self, sid: str) -> str:
        """Where the gateway redirected the live call ``sid`` (the URL Twilio then fetches)."""
        async def check() -> str | None:
            urls = [form["Url"] for updated, form in self.api.updates if updated == sid and "Url" in form]
            return urls[-1] if urls else None

        return await eventually(check)

    async def updated(self, sid: str) -> list[dict[str, str]]:
        async def check() -> list[dict[str, str]]:
            return [dict(form) for updated, form in self.api.updates if updated == sid]

        return await eventually(check)

    async def alert_id(self) -> int:
        _, body = await self.gateway.get("/api/v1/alerts")
        return int(body["alerts"][0]["id"])


@pytest.fixture
async def story(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Story]:
    async with FakeTwilioApi() as api:
        clock = FakeClock()
        config = load_config(write_config(tmp_path, twilio_config(api.base_url)))
        client = await aiohttp_client(create_app(config, clock=clock))
        async with TwilioDriver(base_url=str(client.make_url("/")), public_base_url=PUBLIC) as twilio:
            yield Story(gateway=Gateway(client, clock), api=api, twilio=twilio)


def room_of(form: MultiDict[str]) -> str:
    """The conference an engineer's call waits in once accepted: named after its call id."""
    call_id = form["Url"].removeprefix(f"{PUBLIC}/twilio/voice/").split("/")[0]
    return f"conference:{conference_name(call_id)}"


async def _true(value: bool) -> bool:
    return value


# ------------------------------------------------------------------------- alerts


async def test_primary_rings_out_secondary_presses_1_and_nobody_is_called_again(story: Story) -> None:
    gateway = story.gateway
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "disk full on db-1", "team": "sre"})
    assert status == 202, answer

    alice_form, alice = await story.call(0, ALICE)
    assert ("POST", CALLS) in story.api.requests
    assert alice_form["From"] == FROM
    assert (alice_form["MachineDetection"], alice_form["AsyncAmd"]) == ("Enable", "true")
    assert alice_form["Url"].startswith(f"{PUBLIC}/twilio/voice/")
    await story.twilio.status_callback(alice_form["StatusCallback"], alice, "ringing")
    await story.twilio.status_callback(alice_form["StatusCallback"], alice, "no-answer")

    # No clock movement: the secondary is called at once.
    bob_form, bob = await story.call(1, BOB)
    transcript = await story.answer(bob_form, bob, ["1"])
    assert ("say", "Press 1 to acknowledge, 2 to pass it on, or star to hear this again.") in transcript
    assert transcript[-2:] == [("say", "Acknowledged. Thank you."), ("hangup", "")]
    await story.twilio.status_callback(bob_form["StatusCallback"], bob, "completed")

    alert = await gateway.alert_where(answer["id"], lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "bob"
    assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "no_answer"),
                                                                       ("bob", "acknowledged")]
    for _ in range(4):
        await gateway.clock.advance(900)
    assert len(story.api.calls) == 2
    assert len((await gateway.alert(answer["id"]))["pages"]) == 2


async def test_an_answering_machine_does_not_acknowledge_and_the_escalation_moves_on(story: Story) -> None:
    gateway = story.gateway
    _, answer = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    alice_form, alice = await story.call(0, ALICE)

    story.api.set_call_status(alice.sid, "in-progress")
    status, twiml = await story.twilio.pick_up(alice_form, alice)
    assert status == 200 and [e.tag for e in ET.fromstring(twiml)] == ["Gather"]  # the message starts at once
    status, _ = await story.twilio.amd_verdict(alice_form, alice, "machine_start")
    assert status == 200
    assert await story.updated(alice.sid) == [{"Status": "completed"}]  # the gateway ends the call
    # Even a "1" posted afterwards (a replay, or a confused recording) changes nothing.
    gather = alice_form["Url"].replace("/answer", "/gather")
    status, twiml = await story.twilio.post(gather, {**alice.params("in-progress", DEFAULT_ACCOUNT_SID),
                                                     "Digits": "1"})
    assert status == 200 and [e.tag for e in ET.fromstring(twiml)] == ["Hangup"]

    await story.call(1, BOB)  # at once
    alert = await gateway.alert(answer["id"])
    assert alert["status"] == "triggered"
    assert alert["pages"][0]["outcome"] == "machine"


async def test_sms_ack_from_the_paged_engineer_acknowledges_and_strangers_change_nothing(story: Story) -> None:
    gateway = story.gateway
    status, answer = await gateway.post("/api/v1/alerts", {"summary": "replica lag", "labels": {"team": "dba"}})
    assert status == 202, answer
    await eventually(lambda: _true(len(story.api.messages) == 1))
    sms = story.api.messages[0]
    assert ("POST", MESSAGES) in story.api.requests
    assert (sms["To"], sms["From"]) == (CAROL, FROM) and f"Alert #{answer['id']}" in sms["Body"]
    await story.twilio.sms_status(sms["StatusCallback"], message_sid="SM1", status="delivered",
                                  from_=FROM, to=CAROL)

    status, twiml = await story.twilio.inbound_sms("/twilio/sms/inbound", from_="+15550009999", to=FROM,
                                                   body="ack")
    assert status == 200 and list(ET.fromstring(twiml)) == []
    assert (await gateway.alert(answer["id"]))["status"] == "triggered"

    status, twiml = await story.twilio.inbound_sms("/twilio/sms/inbound", from_=CAROL, to=FROM, body="ack")
    assert status == 200
    reply = ET.fromstring(twiml).find("Message")
    assert reply is not None and (reply.text or "").startswith(f"Alert #{answer['id']} acknowledged")
    alert = await gateway.alert(answer["id"])
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "carol"


async def test_forged_webhooks_are_refused_and_change_nothing(story: Story) -> None:
    gateway = story.gateway
    _, answer = await gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    alice_form, alice = await story.call(0, ALICE)
    sms = {"From": ALICE, "To": FROM, "Body": "ack", "MessageSid": "SM1", "AccountSid": DEFAULT_ACCOUNT_SID}
    caller = CallLeg(from_=CALLER, to=HOTLINE, direction="inbound")

    for url, params in (("/twilio/sms/inbound", sms),
                        (alice_form["Url"], alice.params("in-progress", DEFAULT_ACCOUNT_SID)),
                        (alice_form["StatusCallback"], alice.params("completed", DEFAULT_ACCOUNT_SID)),
                        ("/twilio/voice/inbound", caller.params("ringing", DEFAULT_ACCOUNT_SID))):
        for kwargs in ({"signature": story.twilio.sign(PUBLIC + "/elsewhere", params)}, {"signed": False}):
            status, body = await story.twilio.post(url, params, **kwargs)
            assert status == 403, (url, body)

    await gateway.clock.advance(1)
    alert = await gateway.alert(answer["id"])
    assert alert["status"] == "triggered"
    assert [p["outcome"] for p in alert["pages"]] == [None]
    _, listing = await gateway.get("/api/v1/alerts")
    assert len(listing["alerts"]) == 1  # the forged hotline call opened nothing
    assert len(story.api.calls) == 1
    # The real Twilio still gets through.
    transcript = await story.answer(alice_form, alice, ["1"])
    assert transcript[-1] == ("hangup", "")
    await gateway.alert_where(answer["id"], lambda a: a["status"] == "acknowledged")


# ------------------------------------------------------------------------ hotline


async def test_hotline_caller_holds_primary_passes_secondary_accepts_and_they_are_bridged(story: Story) -> None:
    gateway = story.gateway
    caller, held = await story.dial_in("1")
    assert ("say", "Please hold while we reach the on-call engineer.") in held

    alice_form, alice = await story.call(0, ALICE)
    assert "MachineDetection" not in alice_form  # screening: the press of 1 proves a person, at once
    declined = await story.answer(alice_form, alice, ["2"])
    assert ("say", "Hotline call from +1 555-777-0001. Press 1 to accept.") in declined
    assert declined[-2:] == [("say", "Passing it on. Goodbye."), ("hangup", "")]
    await story.twilio.status_callback(alice_form["StatusCallback"], alice, "completed")

    bob_form, bob = await story.call(1, BOB)
    accepted = await story.answer(bob_form, bob, ["1"])
    assert accepted[-2:] == [("say", "Connecting you now."), ("dial", room_of(bob_form))]

    # The gateway takes the caller off hold: Twilio fetches the redirect URL.
    url = await story.redirected(caller.sid)
    assert url == f"{PUBLIC}/twilio/voice/tw-{caller.sid}/hold?redirected=1"
    bridged = await story.twilio.follow(await story.twilio.fetch(url, caller), leg=caller, url=url)
    assert bridged == [("say", "Connecting you to Bob."), ("dial", room_of(bob_form))]

    alert_id = await story.alert_id()
    alert = await gateway.alert(alert_id)
    assert alert["source"] == "hotline" and alert["priority"] == "high"
    assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "bob"
    assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "declined"), ("bob", "accepted")]

    # The caller hangs up: the record is closed and Bob's leg is hung up too.
    await story.twilio.status_callback("/twilio/voice/status", caller, "completed")
    alert = await gateway.alert_where(alert_id, lambda a: a["status"] == "resolved")
    assert any("connected to Bob" in t["message"] for t in alert["timeline"])
    assert await story.updated(bob.sid) == [{"Status": "completed"}]


async def test_nobody_accepts_the_caller_leaves_a_voicemail_and_the_team_gets_the_link(story: Story) -> None:
    gateway = story.gateway
    caller, _ = await story.dial_in("2")
    for index, number in enumerate((ALICE, BOB)):
        form, leg = await story.call(index, number)
        await story.twilio.status_callback(form["StatusCallback"], leg, "no-answer")

    url = await story.redirected(caller.sid)
    transcript = await story.twilio.follow(await story.twilio.fetch(url, caller), leg=caller, url=url)
    assert [kind for kind, _ in transcript] == ["say", "record", "say", "hangup"]
    assert "leave a message after the beep" in transcript[0][1]
    recording = transcript[1][1]

    await eventually(lambda: _true(len(story.api.messages) == 2))
    assert {m["To"] for m in story.api.messages} == {ALICE, BOB}
    for message in story.api.messages:
        assert "Missed hotline call from +1 555-777-0001" in message["Body"]
        assert recording in message["Body"]
    await story.twilio.status_callback("/twilio/voice/status", caller, "completed")
    alert = await gateway.alert_where(await story.alert_id(), lambda a: a["status"] == "resolved")
    assert alert["priority"] == "low"
    assert any("left a voicemail" in t["message"] for t in alert["timeline"])
    assert len(story.api.messages) == 2


async def test_a_caller_who_hangs_up_at_the_beep_still_gets_the_team_told(story: Story) -> None:
    # Twilio sends no Record action for an empty recording: only the final status comes.
    story.gateway.client.app[PROVIDERS].voice.record_grace_s = 0.01  # type: ignore[attr-defined]
    caller, _ = await story.dial_in("2")
    for index, number in enumerate((ALICE, BOB)):
        form, leg = await story.call(index, number)
        await story.twilio.status_callback(form["StatusCallback"], leg, "no-answer")
    url = await story.redirected(caller.sid)
    assert "<Record" in await story.twilio.fetch(url, caller)  # the beep... and the caller hangs up
    await story.twilio.status_callback("/twilio/voice/status", caller, "completed")

    await eventually(lambda: _true(len(story.api.messages) == 2))
    for message in story.api.messages:
        assert "Missed hotline call from +1 555-777-0001" in message["Body"]
        assert "No voicemail was left." in message["Body"]
    alert = await story.gateway.alert_where(await story.alert_id(), lambda a: a["status"] == "resolved")
    assert any("without a voicemail" in t["message"] for t in alert["timeline"])


async def test_a_caller_hanging_up_while_the_primary_rings_cancels_that_call(story: Story) -> None:
    gateway = story.gateway
    caller, _ = await story.dial_in("1")
    alice_form, alice = await story.call(0, ALICE)
    story.api.set_call_status(alice.sid, "ringing")
    await story.twilio.status_callback(alice_form["StatusCallback"], alice, "ringing")

    await story.twilio.status_callback("/twilio/voice/status", caller, "completed")
    assert await story.updated(alice.sid) == [{"Status": "canceled"}]
    assert story.api.call_status[alice.sid] == "canceled"
    await story.twilio.status_callback(alice_form["StatusCallback"], alice, "canceled")

    alert = await gateway.alert_where(await story.alert_id(), lambda a: a["status"] == "resolved")
    assert [p["outcome"] for p in alert["pages"]] == ["canceled"]
    assert any("caller hung up after" in t["message"] for t in alert["timeline"])
    await gateway.clock.advance(60)
    assert len(story.api.calls) == 1


async def test_an_engineer_pressing_1_is_answered_while_the_other_calls_are_still_being_hung_up(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    async with FakeTwilioApi() as api:
        text = twilio_config(api.base_url).replace(
            "policies:\n", "policies:\n  everyone:\n    steps:\n      - {notify: team, timeout: 1m}\n", 1
        ).replace("routes:\n", "routes:\n  - {name: all-hands, matchers: ['scope=\"all\"'], team: sre, "
                                 "policy: everyone}\n", 1)
        client = await aiohttp_client(create_app(load_config(write_config(tmp_path, text)), clock=FakeClock()))
        async with TwilioDriver(base_url=str(client.make_url("/")), public_base_url=PUBLIC) as twilio:
            story = Story(gateway=Gateway(client, FakeClock()), api=api, twilio=twilio)
            status, body = await story.gateway.post("/api/v1/alerts",
                                                    {"summary": "all hands", "labels": {"scope": "all"}})
            assert status == 202, body
            await eventually(lambda: _true(len(api.calls) == 2))
            legs = {form["To"]: (form, CallLeg(from_=form["From"], to=form["To"], sid=sid))
                    for form, sid in zip(api.calls, api.call_sids, strict=True)}
            api.update_gate = asyncio.Event()  # the API is slow: hanging up Bob's call hangs
            # (Bounded: were the webhook to wait for the API, this would fail, not hang.)
            transcript = await asyncio.wait_for(story.answer(*legs[ALICE], digits=["1"]), timeout=10)
            # Alice heard her confirmation although hanging up Bob's ringing call is still on its way.
            assert ("say", "Acknowledged. Thank you.") in transcript
            await eventually(lambda: _true(any(sid == legs[BOB][1].sid for sid, _ in api.updates)))
            assert not api.update_gate.is_set()
            api.update_gate.set()
            assert await story.updated(legs[BOB][1].sid) == [{"Status": "canceled"}]
            assert (await story.gateway.alert(body["id"]))["acknowledged_by"] == "alice"


async def test_wrong_credentials_show_on_readyz(aiohttp_client: Callable[..., Any], tmp_path: Path) -> None:
    async with FakeTwilioApi() as api:
        text = twilio_config(api.base_url).replace(f"auth_token: {DEFAULT_AUTH_TOKEN}", "auth_token: a-wrong-token")
        client = await aiohttp_client(create_app(load_config(write_config(tmp_path, text)), clock=FakeClock()))

        async def readiness() -> dict[str, Any] | None:
            async with client.get("/readyz") as resp:
                body: dict[str, Any] = await resp.json()
                return body if resp.status == 503 and "authentication" in body["checks"]["voice:twilio"] else None

        body = await eventually(readiness)
        assert body["checks"]["voice:twilio"].startswith("authentication failed (Twilio error 20003)")
        assert body["checks"]["store"] == "ok"
