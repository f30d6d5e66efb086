"""A gateway on Twilio restarts while calls are in progress: the new process carries them on.

The first app is stopped and a second one started on the same config (the same SQLite file), as
``test_restart`` does; the loopback Twilio API lives on across, like Twilio's cloud, and the driver
posts to the new app's address what Twilio keeps posting to the public URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from multidict import MultiDict

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from tests.gateway.test_twilio_story import PUBLIC, Story, room_of, twilio_config
from tests.peers.twilio_api import FakeTwilioApi
from tests.peers.twilio_driver import CallLeg, TwilioDriver
from tests.support import ALICE, BOB, Gateway, write_config


class Lives:
    """The gateway's successive processes on one config (one SQLite file), and the Twilio they share."""

    def __init__(self, aiohttp_client: Callable[..., Any], config_path: Path, api: FakeTwilioApi) -> None:
        self.aiohttp_client = aiohttp_client
        self.config_path = config_path
        self.api = api
        self.clock = FakeClock()

    @asynccontextmanager
    async def life(self) -> AsyncIterator[Story]:
        """One process: started on the config, stopped on leaving (the next one starts 2 s later)."""
        clock, self.clock = self.clock, FakeClock(start=self.clock.now() + 2)
        client = await self.aiohttp_client(create_app(load_config(self.config_path), clock=clock))
        try:
            async with TwilioDriver(base_url=str(client.make_url("/")), public_base_url=PUBLIC) as twilio:
                yield Story(gateway=Gateway(client, clock), api=self.api, twilio=twilio)
        finally:
            await client.close()


@pytest.fixture
async def lives(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Lives]:
    async with FakeTwilioApi() as api:
        yield Lives(aiohttp_client, write_config(tmp_path, twilio_config(api.base_url)), api)


async def _alice_called(story: Story) -> tuple[int, MultiDict[str], CallLeg]:
    """An alert comes in and Alice's phone is called: the alert's id, the call's form and its leg."""
    status, answer = await story.gateway.post("/api/v1/alerts", {"summary": "disk full", "team": "sre"})
    assert status == 202, answer
    form, alice = await story.call(0, ALICE)
    return int(answer["id"]), form, alice


async def test_the_engineers_press_of_1_after_a_restart_acknowledges_the_alert(lives: Lives) -> None:
    async with lives.life() as before:
        alert_id, form, alice = await _alice_called(before)
        status, twiml = await before.twilio.pick_up(form, alice)  # Alice answers and hears the alert...
        assert status == 200 and "<Gather" in twiml
    # ... while the gateway restarts.

    async with lives.life() as after:
        transcript = await after.twilio.follow(twiml, leg=alice, digits=["1"], url=form["Url"])
        assert transcript[-2:] == [("say", "Acknowledged. Thank you."), ("hangup", "")]
        alert = await after.gateway.alert_where(alert_id, lambda a: a["status"] == "acknowledged")
        assert alert["acknowledged_by"] == "alice"

        # Twilio's final status, and its replay, report nothing a second time.
        for _ in range(2):
            status, _ = await after.twilio.status_callback(form["StatusCallback"], alice, "completed")
            assert status == 200
        alert = await after.gateway.alert(alert_id)
        assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "acknowledged")]
        assert sum("acknowledged" in t["message"] for t in alert["timeline"] if t["kind"] == "page") == 1
        await after.gateway.clock.advance(120)
        assert len(lives.api.calls) == 1  # nobody else is called


async def test_a_final_status_after_a_restart_moves_the_escalation_on_once(lives: Lives) -> None:
    async with lives.life() as before:
        alert_id, form, alice = await _alice_called(before)
        await before.twilio.status_callback(form["StatusCallback"], alice, "ringing")

    async with lives.life() as after:
        for _ in range(2):  # Alice's phone rang out, and Twilio sends that twice
            status, _ = await after.twilio.status_callback(form["StatusCallback"], alice, "no-answer")
            assert status == 200
        alert = await after.gateway.alert_where(alert_id, lambda a: a["pages"][0]["outcome"] is not None)
        assert alert["pages"][0]["outcome"] == "no_answer"
        await after.call(1, BOB)  # Bob is called at once, and once
        alert = await after.gateway.alert(alert_id)
        assert [(p["engineer"], p["outcome"]) for p in alert["pages"]] == [("alice", "no_answer"), ("bob", None)]
        assert len(lives.api.calls) == 2


async def test_a_caller_on_hold_is_bridged_with_the_engineer_who_accepts_after_a_restart(lives: Lives) -> None:
    async with lives.life() as before:
        caller, _ = await before.dial_in("1")
        alice_form, alice = await before.call(0, ALICE)
        status, twiml = await before.twilio.pick_up(alice_form, alice)  # Alice hears who is calling...
        assert status == 200 and "Press 1 to accept" in twiml

    async with lives.life() as after:
        hold = f"{PUBLIC}/twilio/voice/tw-{caller.sid}/hold"
        looped = await after.twilio.follow(await after.twilio.fetch(hold, caller), leg=caller, url=hold,
                                           max_redirects=1)
        assert looped[-1] == ("parked", hold)  # the caller still holds, served by the new process

        accepted = await after.twilio.follow(twiml, leg=alice, digits=["1"], url=alice_form["Url"])
        assert accepted[-2:] == [("say", "Connecting you now."), ("dial", room_of(alice_form))]
        url = await after.redirected(caller.sid)
        bridged = await after.twilio.follow(await after.twilio.fetch(url, caller), leg=caller, url=url)
        assert bridged == [("say", "Connecting you to Alice."), ("dial", room_of(alice_form))]
        alert_id = await after.alert_id()
        alert = await after.gateway.alert(alert_id)
        assert alert["status"] == "acknowledged" and alert["acknowledged_by"] == "alice"

        # The caller hangs up: the record is closed and Alice's leg is hung up.
        await after.twilio.status_callback("/twilio/voice/status", caller, "completed")
        await after.gateway.alert_where(alert_id, lambda a: a["status"] == "resolved")
        assert await after.updated(alice.sid) == [{"Status": "completed"}]
