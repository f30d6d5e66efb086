"""TwiML rendering: structure of every action, and real flows followed by a Twilio-like driver."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ivr_flows import AlertCallFlow, HotlineCallerFlow
from ivr_flows.model import (
    Answered,
    Bridge,
    DigitsReceived,
    EngineerConnected,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    NobodyAccepted,
    NoInput,
    Play,
    Record,
    RecordingFinished,
    Say,
)
from providers.twilio.twiml import (
    DEFAULT_HOLD_MUSIC_URL,
    conference_name,
    render,
    render_hangup,
    render_message,
)
from tests.peers.twilio_driver import CallLeg, DriverError, TwilioDriver

GATHER_URL = "https://oncall.example.com/twilio/gather?call=page-1"
RECORD_URL = "https://oncall.example.com/twilio/recorded?call=h-1"
HOLD_URL = "https://oncall.example.com/twilio/hold?call=h-1"


def parse(twiml: str) -> ET.Element:
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    return root


def tags(element: ET.Element) -> list[str]:
    return [child.tag for child in element]


def rendered(*actions: Any, **kwargs: Any) -> ET.Element:
    return parse(render(actions, gather_action_url=GATHER_URL, **kwargs))


# ----------------------------------------------------------------- every action


def test_say_carries_its_language_or_the_default() -> None:
    root = rendered(Say(text="Bonjour", language="fr-FR"), Say(text="Hi", language=""))

    assert tags(root) == ["Say", "Say"]
    assert (root[0].text, root[0].get("language")) == ("Bonjour", "fr-FR")
    assert (root[1].text, root[1].get("language")) == ("Hi", "en-US")


def test_text_is_escaped() -> None:
    root = rendered(Say(text="disk < 5% & <falling>"))

    assert root[0].text == "disk < 5% & <falling>"


def test_play() -> None:
    root = rendered(Play(prompt="https://cdn.example.com/alert.mp3"))

    assert tags(root) == ["Play"]
    assert root[0].text == "https://cdn.example.com/alert.mp3"


def test_gather_holds_all_its_prompts_and_posts_even_on_silence() -> None:
    gather = Gather(
        prompts=(
            Say(text="Disk full on db-1."),
            Play(prompt="https://x/beep.mp3"),
            Say(text="Press 1."),
        ),
        num_digits=1,
        timeout_s=7,
    )

    root = rendered(gather)

    assert tags(root) == ["Gather"]
    element = root[0]
    assert tags(element) == ["Say", "Play", "Say"]
    assert [child.text for child in element] == [
        "Disk full on db-1.",
        "https://x/beep.mp3",
        "Press 1.",
    ]
    assert element.get("numDigits") == "1"
    assert element.get("timeout") == "7"
    assert element.get("action") == GATHER_URL
    assert element.get("method") == "POST"
    assert element.get("actionOnEmptyResult") == "true"
    assert element.get("input") == "dtmf"


def test_hold_plays_music_then_loops_through_the_hold_url() -> None:
    root = rendered(Hold(priority="high"), hold_url=HOLD_URL)

    assert tags(root) == ["Play", "Redirect"]
    assert root[0].text == DEFAULT_HOLD_MUSIC_URL
    assert root[0].get("loop") == "1"
    assert (root[1].text, root[1].get("method")) == (HOLD_URL, "POST")


def test_hold_plays_its_own_music() -> None:
    root = rendered(Hold(music="https://cdn.example.com/jazz.mp3"), hold_url=HOLD_URL)

    assert root[0].text == "https://cdn.example.com/jazz.mp3"


def test_hold_without_a_hold_url_is_refused() -> None:
    with pytest.raises(ValueError, match="hold_url"):
        render([Hold()], gather_action_url=GATHER_URL)


def test_bridge_joins_the_room_named_after_the_engineer_call() -> None:
    caller_side = rendered(Say(text="Connecting you to Ada."), Bridge(call_id="page-42"))
    engineer_side = rendered(Bridge(call_id="page-42"))

    assert tags(caller_side) == ["Say", "Dial"]
    [conference] = list(caller_side[1])
    assert conference.tag == "Conference"
    assert conference.text == conference_name("page-42") == "bridge-page-42"
    assert conference.get("startConferenceOnEnter") == "true"
    assert conference.get("endConferenceOnExit") == "true"
    assert conference.get("beep") == "false"
    assert engineer_side[0][0].text == conference.text


def test_conference_names_are_safe() -> None:
    assert conference_name("a b/c<d>") == "bridge-a_b_c_d_"


def test_record_posts_the_recording_to_its_action() -> None:
    root = rendered(
        Record(max_seconds=90, beep=False),
        record_action_url=RECORD_URL,
        recording_status_url="https://oncall.example.com/twilio/recording-status",
    )

    assert tags(root) == ["Record"]
    record = root[0]
    assert record.get("maxLength") == "90"
    assert record.get("playBeep") == "false"
    assert record.get("action") == RECORD_URL
    assert record.get("method") == "POST"
    status_url = record.get("recordingStatusCallback")
    assert status_url == "https://oncall.example.com/twilio/recording-status"


def test_record_without_status_url_has_no_status_callback() -> None:
    record = rendered(Record(), record_action_url=RECORD_URL)[0]

    assert record.get("playBeep") == "true"
    assert record.get("recordingStatusCallback") is None


def test_record_without_an_action_url_is_refused() -> None:
    with pytest.raises(ValueError, match="record_action_url"):
        render([Record()], gather_action_url=GATHER_URL)


def test_hangup() -> None:
    root = rendered(Say(text="Goodbye."), Hangup())

    assert tags(root) == ["Say", "Hangup"]


def test_no_actions_is_an_empty_response() -> None:
    assert tags(rendered()) == []


def test_something_else_is_not_an_action() -> None:
    with pytest.raises(TypeError):
        render([Answered()], gather_action_url=GATHER_URL)  # type: ignore[list-item]


def test_render_hangup_with_and_without_a_message() -> None:
    polite = parse(render_hangup("This call has ended."))
    bare = parse(render_hangup())

    assert tags(polite) == ["Say", "Hangup"]
    assert polite[0].text == "This call has ended."
    assert tags(bare) == ["Hangup"]


def test_render_message_with_text_and_without() -> None:
    reply = parse(render_message("Acknowledged: disk full"))

    assert tags(reply) == ["Message"]
    assert reply[0].text == "Acknowledged: disk full"
    assert tags(parse(render_message(""))) == []


# ------------------------------------------- real flows, followed like Twilio would


class FlowServer:
    """A tiny webhook app: one call, one flow, TwiML rendered from each step."""

    def __init__(self, flow: Any) -> None:
        self.flow = flow
        step = flow.start()
        self.state = step.state
        self.outcomes: list[FlowOutcome] = []
        self.app = web.Application()
        self.app.router.add_post("/voice", self.voice)
        self.app.router.add_post("/gather", self.gather)
        self.app.router.add_post("/hold", self.hold)
        self.app.router.add_post("/recorded", self.recorded)
        self.app.router.add_post("/bridge", self.bridge)
        self.app.router.add_post("/nobody", self.nobody)

    def apply(self, event: Event) -> web.Response:
        step = self.flow.on_event(self.state, event)
        self.state = step.state
        if step.outcome is not None:
            self.outcomes.append(step.outcome)
        twiml = render(
            step.actions,
            gather_action_url="/gather",
            hold_url="/hold",
            record_action_url="/recorded",
        )
        return web.Response(text=twiml, content_type="text/xml")

    async def voice(self, request: web.Request) -> web.Response:
        form = await request.post()
        return self.apply(Answered(machine=form.get("AnsweredBy") == "machine_start"))

    async def gather(self, request: web.Request) -> web.Response:
        digits = str((await request.post()).get("Digits", ""))
        return self.apply(DigitsReceived(digits=digits) if digits else NoInput())

    async def hold(self, request: web.Request) -> web.Response:
        twiml = render([Hold()], gather_action_url="/gather", hold_url="/hold")
        return web.Response(text=twiml, content_type="text/xml")

    async def recorded(self, request: web.Request) -> web.Response:
        form = await request.post()
        return self.apply(
            RecordingFinished(
                url=str(form["RecordingUrl"]), duration_s=int(str(form["RecordingDuration"]))
            )
        )

    async def bridge(self, request: web.Request) -> web.Response:
        return self.apply(EngineerConnected(engineer_name="Ada", call_id="page-9"))

    async def nobody(self, request: web.Request) -> web.Response:
        return self.apply(NobodyAccepted())


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    servers: list[TestServer] = []
    drivers: list[TwilioDriver] = []

    async def start(flow: Any) -> tuple[FlowServer, TwilioDriver]:
        app = FlowServer(flow)
        server = TestServer(app.app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        driver = TwilioDriver(
            base_url=str(server.make_url("/")), public_base_url="https://oncall.example.com"
        )
        await driver.open()
        drivers.append(driver)
        return app, driver

    yield start
    for driver in drivers:
        await driver.close()
    for server in servers:
        await server.close()


LEG = CallLeg(from_="+15557770002", to="+15550000001")


async def test_alert_call_silence_then_1_acknowledges(serve: Any) -> None:
    app, twilio = await serve(AlertCallFlow(message="Disk full on db-1."))
    status, twiml = await twilio.answer("/voice", LEG, answered_by="human")
    assert status == 200

    transcript = await twilio.follow(twiml, leg=LEG, digits=[None, "1"], url="/voice")

    assert ("say", "Disk full on db-1.") in transcript
    gathers = [value for kind, value in transcript if kind == "gather"]
    assert gathers == ["", "1"]
    assert transcript[-1] == ("hangup", "")
    assert app.outcomes == [FlowOutcome.ACKNOWLEDGED]
    assert [url for url, _ in twilio.sent][-1] == "https://oncall.example.com/gather"


async def test_a_gather_with_no_digits_left_is_a_driver_error(serve: Any) -> None:
    _, twilio = await serve(AlertCallFlow(message="Disk full."))
    _, twiml = await twilio.answer("/voice", LEG)

    with pytest.raises(DriverError, match="no digits left"):
        await twilio.follow(twiml, leg=LEG, digits=[], url="/voice")


async def test_hotline_caller_holds_then_is_bridged_after_a_rest_redirect(serve: Any) -> None:
    app, twilio = await serve(HotlineCallerFlow(greeting="You reached the on-call hotline."))
    caller = CallLeg(from_="+15551230000", to="+15550009999", direction="inbound")
    _, twiml = await twilio.incoming_call("/voice", caller)

    held = await twilio.follow(twiml, leg=caller, url="/voice", max_redirects=2)

    assert held[0] == ("say", "You reached the on-call hotline.")
    assert held.count(("play", DEFAULT_HOLD_MUSIC_URL)) == 3
    assert held[-1] == ("parked", "https://oncall.example.com/hold")
    # The gateway would now call rest.redirect_call(sid, url=".../bridge").
    bridged = await twilio.follow(await twilio.fetch("/bridge", caller), leg=caller, url="/bridge")
    assert bridged == [("say", "Connecting you to Ada."), ("dial", "conference:bridge-page-9")]
    assert app.outcomes == [FlowOutcome.CONNECTED]


async def test_voicemail_recording_is_posted_to_the_record_action(serve: Any) -> None:
    app, twilio = await serve(HotlineCallerFlow(greeting="Hotline."))
    caller = CallLeg(from_="+15551230000", to="+15550009999", direction="inbound")
    _, twiml = await twilio.incoming_call("/voice", caller)
    await twilio.follow(twiml, leg=caller, url="/voice", max_redirects=0)

    twiml = await twilio.fetch("/nobody", caller)
    transcript = await twilio.follow(twiml, leg=caller, url="/nobody")

    assert [kind for kind, _ in transcript] == ["say", "record", "say", "hangup"]
    assert app.outcomes == [FlowOutcome.VOICEMAIL]
    assert app.state.recording_url == transcript[1][1]
    assert twilio.sent[-1][0] == "https://oncall.example.com/recorded"
    assert twilio.sent[-1][1]["RecordingDuration"] == "7"
