"""AmiClient against the loopback FakeAsterisk over real TCP."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from asterisk.ami import AmiClient, AmiError, AmiNotConnected, AmiTimeout
from asterisk.ami_events import (
    AmiEvent,
    BridgeChange,
    ChannelHangup,
    ChannelState,
    DtmfEnd,
    OriginateResult,
    originate_reason_outcome,
    parse_event,
)
from tests.peers.ami_server import FakeAsterisk

CALLER_ID = '"Gateway" <+15559990000>'


class Recorder:
    """Collects events (or states) and lets a test wait for one."""

    def __init__(self) -> None:
        self.items: list[AmiEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, item: AmiEvent) -> None:
        self.items.append(item)
        self._changed.set()

    async def wait_for(self, predicate: Callable[[AmiEvent], bool], timeout: float = 2.0) -> AmiEvent:
        async def scan() -> AmiEvent:
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), timeout)

    def named(self, name: str) -> list[AmiEvent]:
        return [item for item in self.items if item.name == name]


class States:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, state: str) -> None:
        self.seen.append(state)
        self._changed.set()

    async def wait_for(self, state: str, timeout: float = 2.0, *, after: int = 0) -> None:
        async def scan() -> None:
            while state not in self.seen[after:]:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(scan(), timeout)


def make_client(port: int, **overrides: object) -> AmiClient:
    options: dict[str, object] = {
        "action_timeout_s": 0.3,
        "ping_interval_s": 0.1,
        "reconnect_backoff": (0.01, 0.05),
    }
    options.update(overrides)
    return AmiClient("127.0.0.1", port, "gateway", "gatewaysecret", **options)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(time_scale=0.02) as fake:
        yield fake


@pytest.fixture
async def events() -> Recorder:
    return Recorder()


@pytest.fixture
async def states() -> States:
    return States()


@pytest.fixture
async def client(server: FakeAsterisk, events: Recorder, states: States) -> AsyncIterator[AmiClient]:
    ami = make_client(server.port, on_event=events, on_state_change=states)
    await ami.start()
    await ami.wait_connected(2)
    yield ami
    await ami.stop()


async def originate(ami: AmiClient, number: str, call_id: str, *, timeout_ms: int = 30000) -> Recorder:
    """Subscribe a recorder to the call, then originate it into sim-callers."""
    recorder = Recorder()
    ami.subscribe(call_id, recorder)
    response = await ami.originate(
        channel=f"Local/{number}@sim-phones",
        channel_id=call_id,
        other_channel_id=f"{call_id}-b",
        timeout_ms=timeout_ms,
        caller_id=CALLER_ID,
        context="sim-callers",
        exten="s",
    )
    assert response.message == "Originate successfully queued"
    return recorder


async def originate_result(recorder: Recorder) -> OriginateResult:
    return OriginateResult.from_event(await recorder.wait_for(lambda e: e.name == "OriginateResponse"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


# ------------------------------------------------------------------ connection


async def test_login_success_connects(client: AmiClient, server: FakeAsterisk, states: States) -> None:
    assert client.state == "connected"
    assert client.last_error is None
    assert states.seen == ["connecting", "connected"]
    login = await server.wait_for_action("Login")
    assert login["Username"] == "gateway"
    assert login["Events"] == "on"


async def test_a_login_reply_handled_before_the_client_looks_still_counts() -> None:
    """The race seen against a real PBX (4 of 7 starts), made deterministic.

    A fast PBX answers the Login while the loop is busy; panoramisk handles the
    reply and sets ``authenticated_future`` back to None before the code that
    awaited the connection runs again. Here the client looks only after the
    reply has been handled, every time.
    """
    async with FakeAsterisk(eager_login=True) as server:
        ami = make_client(server.port)
        connection = ami._new_connection()
        try:
            await ami._connect(connection)
            await eventually(lambda: connection.authenticated)  # the reply was handled...
            assert connection.authenticated_future is None  # ...and panoramisk forgot its future
            await ami._logged_in(connection)  # a success all the same, not "no login was sent"
        finally:
            connection.abort("test over")
        assert [a["Action"] for a in server.received_actions] == ["Login"]


async def test_the_first_login_to_a_fast_pbx_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeAsterisk(eager_login=True) as server:
        for attempt in range(3):
            states = States()
            ami = make_client(server.port, on_state_change=states)
            await ami.start()
            try:
                await ami.wait_connected(2)
                assert states.seen == ["connecting", "connected"]
                assert ami.last_error is None
            finally:
                await ami.stop()
            logins = [a for a in server.received_actions if a.get("Action") == "Login"]
            assert len(logins) == attempt + 1  # one Login per client: no retry
    assert "no login was sent" not in caplog.text


async def test_wrong_secret_reports_auth_failed_and_recovers_when_fixed(
    server: FakeAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    server.secret = "operator-changed-it"
    states = States()
    ami = make_client(server.port, on_state_change=states)
    caplog.set_level(logging.DEBUG)
    await ami.start()
    try:
        await states.wait_for("auth_failed")
        assert ami.last_error == "authentication failed for user gateway"
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("authentication failed" in m and f"127.0.0.1:{server.port}" in m and "gateway" in m for m in errors)
        assert not any("gatewaysecret" in m for m in caplog.messages)
        with pytest.raises(AmiNotConnected):
            await ami.send_action({"Action": "Ping"})

        server.secret = "gatewaysecret"
        await ami.wait_connected(2)
        assert ami.last_error is None
        assert (await ami.send_action({"Action": "Ping"})).get("Ping") == "Pong"
    finally:
        await ami.stop()


async def test_asterisk_down_at_start_then_connects_when_it_comes_up() -> None:
    port = free_port()
    states = States()
    ami = make_client(port, on_state_change=states)
    await ami.start()
    try:
        assert ami.state in ("connecting", "disconnected")
        await states.wait_for("disconnected")
        assert ami.last_error == "connection refused"
        with pytest.raises(AmiNotConnected, match="connection refused"):
            await ami.wait_connected(0.05)

        async with FakeAsterisk(port=port):
            await ami.wait_connected(2)
            assert ami.state == "connected"
    finally:
        await ami.stop()


async def test_stop_logs_off_and_is_idempotent(server: FakeAsterisk, states: States) -> None:
    ami = make_client(server.port, on_state_change=states)
    await ami.start()
    await ami.wait_connected(2)

    await ami.stop()
    await ami.stop()

    assert ami.state == "stopped"
    await server.wait_for_action("Logoff")
    await eventually(lambda: server.connections == 0)
    with pytest.raises(AmiNotConnected):
        await ami.send_action({"Action": "Ping"})
    with pytest.raises(RuntimeError):
        await ami.start()


async def test_stop_during_back_off_really_stops(server: FakeAsterisk) -> None:
    server.secret = "wrong"
    states = States()
    ami = make_client(server.port, on_state_change=states, reconnect_backoff=(0.02, 0.02))
    await ami.start()
    await states.wait_for("auth_failed")
    await states.wait_for("auth_failed", after=states.seen.index("auth_failed") + 1)  # a retry happened

    await ami.stop()  # the client is now sleeping in its back-off
    logins = len(server.received_actions)
    await asyncio.sleep(0.1)  # five back-off periods

    assert len(server.received_actions) == logins
    assert states.seen[-1] == "stopped"
    assert server.connections == 0


# --------------------------------------------------------------------- calls


async def test_originate_answer_press_1_routes_dtmf_to_the_call(
    client: AmiClient, events: Recorder, server: FakeAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    call = await originate(client, "+15550000001", "gw-call-0001")

    result = await originate_result(call)
    dtmf = DtmfEnd.from_event(await call.wait_for(lambda e: e.name == "DTMFEnd"))

    assert (result.reason, result.outcome, result.answered, result.uniqueid) == (4, "answered", True, "gw-call-0001")
    assert result.action_id == "gw-call-0001"
    assert (dtmf.digit, dtmf.direction, dtmf.duration_ms, dtmf.uniqueid) == ("1", "Received", 100, "gw-call-0001")
    assert dtmf.channel.endswith(";1")
    assert all(e.channel.endswith(";1") for e in call.items if e.name.startswith("DTMF"))
    assert any(e.name == "DTMFEnd" for e in events.items)  # the global callback sees it too
    sent = await server.wait_for_action("Originate", ChannelId="gw-call-0001")
    assert sent["Channel"] == "Local/+15550000001@sim-phones"
    assert (sent["Async"], sent["OtherChannelId"], sent["ActionID"]) == ("true", "gw-call-0001-b", "gw-call-0001")
    assert (sent["Context"], sent["Exten"], sent["Priority"], sent["CallerID"]) == ("sim-callers", "s", "1", CALLER_ID)
    assert not any("+15550000001" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("number", "reason", "outcome", "far_cause"),
    [
        ("+15550000004", 5, "busy", 17),
        ("+15550000003", 3, "no_answer", 19),
        ("+15550000000", 8, "congestion", 34),
        ("+15550000009", 8, "congestion", 34),
    ],
)
async def test_originate_failures_report_their_reason(
    client: AmiClient, number: str, reason: int, outcome: str, far_cause: int
) -> None:
    call = await originate(client, number, "gw-call-fail", timeout_ms=8000)

    result = await originate_result(call)
    far = await call.wait_for(lambda e: e.name == "Hangup" and e.uniqueid == "gw-call-fail-b")

    assert (result.response, result.reason, result.outcome) == ("Failure", reason, outcome)
    assert result.uniqueid == "gw-call-fail"
    assert result.channel == f"Local/{number}@sim-phones"  # the dial string on failure
    assert ChannelHangup.from_event(far).cause == far_cause


async def test_hangup_by_channel_id_ends_both_legs(client: AmiClient, server: FakeAsterisk) -> None:
    call = await originate(client, "+15550000005", "gw-call-0005")
    await call.wait_for(lambda e: e.name == "OriginateResponse")

    response = await client.hangup("gw-call-0005")

    assert response.message == "Channel Hungup"
    for uniqueid in ("gw-call-0005", "gw-call-0005-b"):
        event = await call.wait_for(lambda e, u=uniqueid: e.name == "Hangup" and e.uniqueid == u)
        hangup = ChannelHangup.from_event(event)
        assert (hangup.cause, hangup.cause_txt) == (16, "Normal Clearing")
    assert server.channels == []
    sent = await server.wait_for_action("Hangup")
    assert (sent["Channel"], sent["Cause"]) == ("gw-call-0005", "16")


async def test_hangup_while_ringing_cancels_the_originate(client: AmiClient) -> None:
    call = await originate(client, "+15550000003", "gw-call-ring")
    await call.wait_for(lambda e: e.name == "Newstate" and ChannelState.from_event(e).state_desc == "Ringing")

    await client.hangup("gw-call-ring")

    result = await originate_result(call)
    assert (result.response, result.outcome) == ("Failure", "failed")


async def test_error_response_raises_ami_error(client: AmiClient) -> None:
    with pytest.raises(AmiError) as hangup_error:
        await client.hangup("Local/+15550000001@sim-phones-deadbeef;1")
    with pytest.raises(AmiError) as unknown_error:
        await client.send_action({"Action": "NoSuchThing"})

    assert hangup_error.value.message == "No such channel"
    assert hangup_error.value.response is not None and hangup_error.value.response.response == "Error"
    assert unknown_error.value.message.startswith("Invalid/unknown command: NoSuchThing.")
    assert client.state == "connected"


async def test_events_are_routed_to_their_own_call(client: AmiClient, events: Recorder) -> None:
    first = await originate(client, "+15550000001", "gw-a")
    second = await originate(client, "+15550000004", "gw-b")

    await first.wait_for(lambda e: e.name == "DTMFEnd")
    await second.wait_for(lambda e: e.name == "Hangup" and e.uniqueid == "gw-b-b")

    def belongs(event: AmiEvent, call_id: str) -> bool:
        ids = {call_id, f"{call_id}-b"}
        return event.uniqueid in ids or event.get("DestUniqueid") in ids or event.action_id in ids

    assert first.items and all(belongs(e, "gw-a") for e in first.items)
    assert second.items and all(belongs(e, "gw-b") for e in second.items)
    assert len(events.items) > len(first.items) + len(second.items)  # DeviceStateChange, FullyBooted...


async def test_unsubscribe_stops_delivery(client: AmiClient) -> None:
    recorder = Recorder()
    unsubscribe = client.subscribe("gw-u", recorder)
    unsubscribe()
    unsubscribe()
    watcher = Recorder()
    client.subscribe("gw-w", watcher)
    await client.originate(
        channel="Local/+15550000004@sim-phones",
        channel_id="gw-u",
        other_channel_id="gw-u-b",
        timeout_ms=1000,
        caller_id=None,
        context="sim-callers",
        exten="s",
    )
    await client.originate(
        channel="Local/+15550000004@sim-phones",
        channel_id="gw-w",
        other_channel_id="gw-w-b",
        timeout_ms=1000,
        caller_id=None,
        context="sim-callers",
        exten="s",
    )
    await watcher.wait_for(lambda e: e.name == "OriginateResponse")
    assert recorder.items == []


async def test_originate_with_application_and_variables(client: AmiClient, server: FakeAsterisk) -> None:
    call = Recorder()
    client.subscribe("gw-eng-0001", call)
    await client.originate(
        channel="Local/+15550000001@sim-phones",
        channel_id="gw-eng-0001",
        other_channel_id="gw-eng-0001-b",
        timeout_ms=30000,
        caller_id=CALLER_ID,
        application="AGI",
        data="agi://127.0.0.1:4573/screen",
        variables={"GW_CALL": "page-7", "GW_FLOW": "screening"},
    )

    response = await call.wait_for(lambda e: e.name == "OriginateResponse")
    dtmf = await call.wait_for(lambda e: e.name == "DTMFEnd")

    assert (response.get("Application"), response.get("Data")) == ("AGI", "agi://127.0.0.1:4573/screen")
    assert response.get("Context") == ""
    assert (dtmf.get("Context"), dtmf.get("Exten"), dtmf.get("Priority")) == ("sim-phones", "+15550000001", "1")
    sent = await server.wait_for_action("Originate", ChannelId="gw-eng-0001")
    assert sent["Variable"] == "GW_CALL=page-7,GW_FLOW=screening"
    assert "Context" not in sent and sent["Application"] == "AGI"
    with pytest.raises(ValueError):
        await client.originate(
            channel="Local/1@x", channel_id="x", other_channel_id="x-b", timeout_ms=1, caller_id=None
        )


async def test_bridge_two_calls_then_hang_one_up(client: AmiClient) -> None:
    calls = {}
    for call_id in ("gw-bridge-a", "gw-bridge-b"):
        recorder = Recorder()
        client.subscribe(call_id, recorder)
        await client.originate(
            channel="Local/s@sim-callers",
            channel_id=call_id,
            other_channel_id=f"{call_id}-b",
            timeout_ms=30000,
            caller_id=CALLER_ID,
            context="sim-callers",
            exten="s",
        )
        calls[call_id] = (recorder, (await originate_result(recorder)).channel)

    response = await client.bridge(calls["gw-bridge-a"][1], calls["gw-bridge-b"][1])
    enter = BridgeChange.from_event(await calls["gw-bridge-b"][0].wait_for(lambda e: e.name == "BridgeEnter"))
    await client.hangup("gw-bridge-a")
    leave = BridgeChange.from_event(await calls["gw-bridge-b"][0].wait_for(lambda e: e.name == "BridgeLeave"))

    assert response.message == "Channels have been bridged"
    assert (enter.entered, enter.num_channels, enter.uniqueid) == (True, 2, "gw-bridge-b")
    assert (leave.entered, leave.bridge_uniqueid) == (False, enter.bridge_uniqueid)
    with pytest.raises(AmiError, match="Channel1 does not exist"):
        await client.bridge("Local/nobody;1", calls["gw-bridge-b"][1])


async def test_list_action_returns_its_items(client: AmiClient) -> None:
    call = await originate(client, "+15550000005", "gw-list-0001")
    await call.wait_for(lambda e: e.name == "OriginateResponse")

    response = await client.send_action({"Action": "CoreShowChannels"})

    items = [e for e in response.events if e.name == "CoreShowChannel"]
    assert [e.uniqueid for e in items] == ["gw-list-0001", "gw-list-0001-b"]
    assert response.events[-1].get("ListItems") == "2"


# ------------------------------------------------------------------ failures


async def test_action_times_out_when_asterisk_stops_answering(client: AmiClient, server: FakeAsterisk) -> None:
    server.unresponsive = True

    with pytest.raises(AmiTimeout, match="no reply to Hangup"):
        await client.hangup("gw-nothing")


async def test_watchdog_drops_a_half_open_connection_and_reconnects(
    client: AmiClient, server: FakeAsterisk, states: States
) -> None:
    server.unresponsive = True
    await states.wait_for("disconnected")
    assert client.last_error is not None and "ping" in client.last_error

    server.unresponsive = False
    await states.wait_for("connected", after=states.seen.index("disconnected"))
    await eventually(lambda: server.connections == 1)
    assert (await client.send_action({"Action": "Ping"})).get("Ping") == "Pong"


async def test_dropped_connection_mid_call_reconnects_and_a_new_originate_works(
    client: AmiClient, server: FakeAsterisk, states: States
) -> None:
    call = await originate(client, "+15550000005", "gw-call-cut")
    await call.wait_for(lambda e: e.name == "OriginateResponse")

    await server.drop_connections()
    await states.wait_for("disconnected")
    await states.wait_for("connected", after=states.seen.index("disconnected"))

    retry = await originate(client, "+15550000004", "gw-call-after")
    assert (await originate_result(retry)).reason == 5
    await client.hangup("gw-call-cut")  # the call lived on in Asterisk; its events still reach us
    await call.wait_for(lambda e: e.name == "Hangup" and e.uniqueid == "gw-call-cut")


async def test_action_in_flight_fails_at_once_when_the_connection_drops(
    client: AmiClient, server: FakeAsterisk
) -> None:
    server.unresponsive = True
    pending = asyncio.create_task(client.send_action({"Action": "Ping"}))
    await server.wait_for_action("Ping")

    await server.drop_connections()

    with pytest.raises(AmiNotConnected):
        await pending


async def test_garbage_from_the_server_is_dropped(
    client: AmiClient, server: FakeAsterisk, states: States, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="asterisk.ami")
    server.send_raw(b"\x00\xff\xfe garbage without any header\r\n\r\n")
    server.send_raw(b"Event: Twice\r\nEvent: Again\r\nUniqueid: x\r\n\r\n")
    server.send_raw(b"Response\r\n\r\n\r\n\r\n")

    assert (await client.send_action({"Action": "Ping"})).get("Ping") == "Pong"
    assert states.seen == ["connecting", "connected"]
    assert server.connections == 1
    assert any("malformed" in m for m in caplog.messages)


async def test_a_raising_callback_does_not_kill_the_connection(
    server: FakeAsterisk, states: States, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: AmiEvent) -> None:
        raise RuntimeError("callback bug")

    async def explode_later(event: AmiEvent) -> None:
        raise RuntimeError("async callback bug")

    ami = make_client(server.port, on_event=explode, on_state_change=states)
    await ami.start()
    try:
        await ami.wait_connected(2)
        ami.subscribe("gw-cb", explode_later)
        call = await originate(ami, "+15550000004", "gw-cb")

        result = await originate_result(call)

        assert result.reason == 5
        assert (await ami.send_action({"Action": "Ping"})).get("Ping") == "Pong"
        assert states.seen == ["connecting", "connected"]
        assert any("callback failed" in m for m in caplog.messages)
    finally:
        await ami.stop()


# -------------------------------------------------------------------- events


def test_originate_reason_outcomes() -> None:
    assert [originate_reason_outcome(r) for r in (4, 3, 5, 8, 1, 0, 42)] == [
        "answered",
        "no_answer",
        "busy",
        "congestion",
        "failed",
        "failed",
        "failed",
    ]


def test_typed_events_parse_the_captured_headers() -> None:
    hangup = AmiEvent.from_headers(
        [
            ("Event", "Hangup"),
            ("Channel", "Local/x;1"),
            ("Uniqueid", "u"),
            ("Cause", "19"),
            ("Cause-txt", "User alerting, no answer"),
        ]
    )
    newstate = AmiEvent.from_headers({"Event": "Newstate", "ChannelState": "6", "ChannelStateDesc": "Up"})
    other = AmiEvent.from_headers({"Event": "VarSet", "uniqueid": "u", "Linkedid": "l"})

    expected = ChannelHangup(cause=19, cause_txt="User alerting, no answer", uniqueid="u", channel="Local/x;1")
    assert parse_event(hangup) == expected
    assert isinstance(parse_event(newstate), ChannelState) and ChannelState.from_event(newstate).up
    assert parse_event(other) is None
    assert (other.uniqueid, other.linkedid, other.get("UNIQUEID")) == ("u", "l", "u")
    with pytest.raises(ValueError):
        DtmfEnd.from_event(hangup)


