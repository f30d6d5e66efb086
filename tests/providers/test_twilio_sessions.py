"""The Twilio provider keeps every live call's session in a store: a new provider on the same store
(a restarted gateway) serves the webhooks of calls the old one placed or answered, reporting each once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from core.enums import Priority
from ivr_flows import HotlineCallerFlow, ScreeningFlow
from ivr_flows.model import EngineerConnected, FlowOutcome, NobodyAccepted
from providers.base import CallerFinished, CallerWaiting, CallOutcome, ProviderError
from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, FakeTwilioApi
from tests.peers.twilio_driver import CallLeg
from tests.providers.test_twilio_provider import (
    CALLER,
    Rig,
    _updates_of,
    alert_flow,
    make_rig,
    results,
    verbs,
    voice,
)
from tests.support import eventually


class JsonStore:
    """The gateway store's session table, reduced: JSON text per call id; each access yields, as a
    store on its own thread does."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}

    async def save_call_session(self, call_id: str, data: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        self.rows[call_id] = json.dumps(data)

    async def load_call_session(self, call_id: str) -> dict[str, Any] | None:
        await asyncio.sleep(0)
        text = self.rows.get(call_id)
        return None if text is None else dict(json.loads(text))

    async def delete_call_session(self, call_id: str) -> None:
        await asyncio.sleep(0)
        self.rows.pop(call_id, None)


@asynccontextmanager
async def gateway(api: FakeTwilioApi, store: JsonStore) -> AsyncIterator[Rig]:
    """One life of the gateway's Twilio provider: a process that starts on ``store`` and stops."""
    async with make_rig(api, session_store=store) as rig:
        yield rig


def gather(leg: CallLeg, digits: str) -> dict[str, str]:
    return {**leg.params("in-progress", DEFAULT_ACCOUNT_SID), "Digits": digits}


async def test_a_key_pressed_after_a_restart_acknowledges_the_call_placed_before_it() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            leg = await before.place(alert_flow())
            _, twiml = await before.twilio.pick_up(api.calls[0], leg)
            assert verbs(twiml) == ["Gather"]
        assert json.loads(store.rows["page-1"])["extra"]["expecting"] == "gather"

        async with gateway(api, store) as after:
            status, twiml = await after.twilio.post(voice("page-1", "gather"), gather(leg, "1"))
            assert status == 200
            assert "Acknowledged. Thank you." in twiml and verbs(twiml) == ["Say", "Hangup"]
            assert results(after.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]
            await after.twilio.status_callback(voice("page-1", "status"), leg, "completed")
            assert results(after.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]
            assert store.rows == {}  # the call is over: nothing is kept


async def test_a_result_reported_before_a_restart_is_not_reported_again_by_the_final_status() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            leg = await before.place(ScreeningFlow(caller="+1 555-777-0001"), call_id="page-7")
            _, twiml = await before.twilio.answer(voice("page-7", "answer"), leg)
            accepted = await before.twilio.follow(twiml, leg=leg, digits=["1"])
            assert accepted[-1][0] == "dial"  # the engineer waits in the room, the line stays up
            assert results(before.events) == [("page-7", CallOutcome.ACCEPTED)]
        assert json.loads(store.rows["page-7"])["reported"] is True  # kept: the engineer is still on the line

        async with gateway(api, store) as after:
            for _ in range(2):  # the final status, and Twilio's replay of it
                status, twiml = await after.twilio.status_callback(voice("page-7", "status"), leg, "completed")
                assert status == 200
            assert after.events.reported == []
            assert store.rows == {}


async def test_a_final_status_after_a_restart_reports_the_result_once_and_a_replay_nothing() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            leg = await before.place(alert_flow())
            await before.twilio.status_callback(voice("page-1", "status"), leg, "ringing")

        async with gateway(api, store) as after:
            await after.twilio.status_callback(voice("page-1", "status"), leg, "no-answer")
            assert results(after.events) == [("page-1", CallOutcome.NO_ANSWER)]
            assert store.rows == {}

        async with gateway(api, store) as again:  # and another restart: the replay finds nothing
            _, twiml = await again.twilio.status_callback(voice("page-1", "status"), leg, "no-answer")
            assert verbs(twiml) == ["Hangup"] and again.events.reported == []


async def test_webhooks_racing_for_a_stored_call_share_one_session_and_report_once() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            leg = await before.place(alert_flow())
            await before.twilio.pick_up(api.calls[0], leg)

        async with gateway(api, store) as after:
            answers = await asyncio.gather(*(after.twilio.post(voice("page-1", "gather"), gather(leg, "1"))
                                             for _ in range(2)))
            assert [status for status, _ in answers] == [200, 200]
            assert results(after.events) == [("page-1", CallOutcome.ACKNOWLEDGED)]


async def test_the_gateway_cancels_a_call_placed_before_its_restart() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            leg = await before.place(alert_flow())
            api.set_call_status(leg.sid, "ringing")

        async with gateway(api, store) as after:
            await after.provider.cancel_call("page-1")  # the alert was acknowledged on the web meanwhile
            assert await _updates_of(api, leg.sid) == [{"Status": "canceled"}]
            await after.twilio.status_callback(voice("page-1", "status"), leg, "canceled")
            assert results(after.events) == [("page-1", CallOutcome.CANCELED)]
            assert store.rows == {}


async def _caller_on_hold(rig: Rig) -> tuple[CallLeg, str]:
    rig.events.hotline = HotlineCallerFlow(greeting="Ops hotline.")
    caller, twiml = await rig.dial_in()
    held = await rig.twilio.follow(twiml, leg=caller, max_redirects=0)
    assert held[-1] == ("parked", voice(f"tw-{caller.sid}", "hold"))
    return caller, f"tw-{caller.sid}"


async def test_a_caller_on_hold_is_bridged_after_a_restart_with_the_engineer_called_before_it() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            caller, call_id = await _caller_on_hold(before)
            assert before.events.reported[-1] == CallerWaiting(call_id=call_id, priority=Priority.LOW)
            engineer = await before.place(ScreeningFlow(caller="+1 555-777-0001"), call_id="page-7")

        async with gateway(api, store) as after:
            # The caller keeps looping on hold, and the engineer answers and accepts.
            assert verbs(await after.twilio.fetch(voice(call_id, "hold"), caller)) == ["Play", "Redirect"]
            _, twiml = await after.twilio.answer(voice("page-7", "answer"), engineer)
            accepted = await after.twilio.follow(twiml, leg=engineer, digits=["1"])
            assert accepted[-1] == ("dial", "conference:bridge-page-7")
            await after.provider.notify(call_id, EngineerConnected(engineer_name="Alice", call_id="page-7"))
            redirect = await eventually(lambda: _updates_of(api, caller.sid))
            bridged = await after.twilio.follow(await after.twilio.fetch(redirect[0]["Url"], caller), leg=caller)
            assert bridged == [("say", "Connecting you to Alice."), ("dial", "conference:bridge-page-7")]

            await after.twilio.status_callback("/twilio/voice/status", caller, "completed")
            assert await eventually(lambda: _updates_of(api, engineer.sid)) == [{"Status": "completed"}]
            assert [e for e in after.events.reported if isinstance(e, CallerFinished)] == [
                CallerFinished(call_id=call_id, outcome=FlowOutcome.CONNECTED)]
            await after.twilio.status_callback(voice("page-7", "status"), engineer, "completed")
            assert results(after.events) == [("page-7", CallOutcome.ACCEPTED)]
            assert store.rows == {}


async def test_what_was_queued_for_a_caller_on_hold_is_delivered_after_a_restart() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            caller, call_id = await _caller_on_hold(before)
            api.fail_next(400, 21220, message="Call is not in-progress. Cannot redirect.")
            await before.provider.notify(call_id, NobodyAccepted())  # the redirect is refused
            await eventually(lambda: _async(len(api.requests) == 1))

        async with gateway(api, store) as after:
            looped = await after.twilio.fetch(voice(call_id, "hold"), caller)
            transcript = await after.twilio.follow(looped, leg=caller, url=voice(call_id, "hold"))
            assert [kind for kind, _ in transcript] == ["say", "record", "say", "hangup"]
            assert after.events.reported == [CallerFinished(call_id=call_id, outcome=FlowOutcome.VOICEMAIL,
                                                            recording_url=transcript[1][1])]
            await after.twilio.status_callback("/twilio/voice/status", caller, "completed")
            assert len(after.events.reported) == 1
            assert store.rows == {}


async def test_a_replayed_inbound_call_webhook_does_not_start_a_stored_caller_over() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api:
        async with gateway(api, store) as before:
            caller, call_id = await _caller_on_hold(before)
            kept = store.rows[call_id]

        async with gateway(api, store) as after:
            after.events.hotline = HotlineCallerFlow(greeting="Ops hotline.")
            status, twiml = await after.twilio.incoming_call("/twilio/voice/inbound", caller)
            assert status == 200 and verbs(twiml) == ["Hangup"]
            assert after.events.reported == [] and store.rows[call_id] == kept
            assert verbs(await after.twilio.fetch(voice(call_id, "hold"), caller)) == ["Play", "Redirect"]


async def test_the_sessions_of_calls_that_never_existed_are_not_kept() -> None:
    store = JsonStore()
    async with FakeTwilioApi() as api, gateway(api, store) as rig:
        api.fail_next(400, 21211, message="Invalid 'To' Phone Number")
        with pytest.raises(ProviderError):
            await rig.place(alert_flow(), to=CALLER)
        assert store.rows == {} and rig.events.reported == []


async def _async(value: bool) -> bool:
    return value
