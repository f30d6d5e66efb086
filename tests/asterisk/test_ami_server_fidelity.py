"""The loopback AMI server sends what Asterisk 22 sent, byte for byte.

Each test replays the client side of a capture (``tests/fixtures/asterisk``)
over real TCP and compares every byte received with the ``.ami`` file, after
masking the values the README lists as changing from run to run.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.peers.ami_server import FakeAsterisk, encode_message, header, load_capture, split_stream

_VARIABLE = [
    (re.compile(rb"(Uptime|LastReload): \d+"), rb"\1: N"),
    (re.compile(rb"(EventTV|SessionTV): [0-9T:.+-]+"), rb"\1: TV"),
    (re.compile(rb"SessionID: 0x[0-9a-f]+"), rb"SessionID: ID"),
    (re.compile(rb"(LocalAddress|RemoteAddress): IPV4/TCP/127\.0\.0\.1/\d+"), rb"\1: ADDR"),
    (re.compile(rb"Timestamp: \d+\.\d+"), rb"Timestamp: T"),
    (re.compile(rb"-[0-9a-f]{8}(?=;[12])"), rb"-COUNTER"),
    (re.compile(rb"Duration: \d\d:\d\d:\d\d"), rb"Duration: D"),
    (re.compile(rb"BridgeUniqueid: [0-9a-f-]+"), rb"BridgeUniqueid: B"),
]


def normalize(data: bytes) -> bytes:
    for pattern, replacement in _VARIABLE:
        data = pattern.sub(replacement, data)
    return data


class RawAmi:
    """A bare AMI client: sends captured actions, reads whole messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""
        self.count = 0

    @classmethod
    async def connect(cls, port: int) -> RawAmi:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        client.received += await asyncio.wait_for(reader.readline(), 2)
        return client

    def send(self, headers: tuple[tuple[str, str], ...]) -> None:
        self.writer.write(encode_message(headers))

    async def read_message(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 2)
        self.received += data
        self.count += 1
        return data

    async def read_until(self, *parts: str) -> None:
        """Read messages up to the first one that contains all ``parts``."""
        while True:
            message = (await self.read_message()).decode()
            if all(part in message for part in parts):
                return

    async def read_to_eof(self) -> None:
        self.received += await asyncio.wait_for(self.reader.read(), 2)
        self.writer.close()


async def replay(name: str, server: FakeAsterisk, before: dict[str, object] | None = None) -> RawAmi:
    """Send the capture's actions, each after as many messages as Asterisk had sent then."""
    capture = load_capture(name)
    client = await RawAmi.connect(server.port)
    for action in capture.sent:
        while client.count < action.after:
            await client.read_message()
        hook = (before or {}).get(action.get("Action") or "")
        if hook is not None:
            await hook()  # type: ignore[operator]
        client.send(action.headers)
    await client.read_to_eof()
    return client


@pytest.fixture
async def server() -> FakeAsterisk:
    async with FakeAsterisk(time_scale=0.01) as fake:
        yield fake


def test_captures_load_and_agree_with_their_transcripts() -> None:
    for name in ("ami-login-success", "originate-answer-dtmf1", "bridge-two-channels"):
        capture = load_capture(name)
        banner, messages = split_stream(capture.raw)
        assert banner == "Asterisk Call Manager/11.0.0"
        assert b"".join(encode_message(m) for m in messages) == capture.raw[len(banner) + 2 :]
        assert [m.at for m in capture.received] == sorted(m.at for m in capture.received)


@pytest.mark.parametrize(
    "name",
    [
        "ami-login-success",
        "ami-login-failure",
        "originate-answer-dtmf1",
        "originate-dtmf2",
        "originate-no-answer",
        "originate-busy",
        "originate-congestion",
    ],
)
async def test_replayed_connection_matches_capture_bytes(server: FakeAsterisk, name: str) -> None:
    client = await replay(name, server)

    assert normalize(client.received) == normalize(load_capture(name).raw)


async def test_login_failure_bytes_are_exact(server: FakeAsterisk) -> None:
    client = await replay("ami-login-failure", server)

    assert client.received == load_capture("ami-login-failure").raw


async def test_busy_events_follow_the_captured_order(server: FakeAsterisk) -> None:
    client = await replay("originate-busy", server)

    def order(raw: bytes) -> list[tuple[str, str]]:
        _, messages = split_stream(raw)
        return [(header(m, "Event") or header(m, "Response") or "", header(m, "Uniqueid") or "") for m in messages]

    got = order(client.received)
    assert got == order(load_capture("originate-busy").raw)
    assert ("OriginateResponse", "gw-call-0004") in got
    assert got.index(("Hangup", "gw-call-0004")) < got.index(("Hangup", "gw-call-0004-b"))


async def test_ping_errors_events_off_and_channel_list_match_capture(server: FakeAsterisk) -> None:
    other: list[RawAmi] = []

    async def start_call_elsewhere() -> None:
        # As in the capture: a call from another connection; events are off on this one.
        caller = await RawAmi.connect(server.port)
        other.append(caller)
        caller.send((("Action", "Login"), ("Username", "gateway"), ("Secret", "gatewaysecret")))
        caller.send(
            (
                ("Action", "Originate"),
                ("ActionID", "orig-list"),
                ("Channel", "Local/+15550000005@sim-phones"),
                ("Context", "sim-callers"),
                ("Exten", "s"),
                ("Priority", "1"),
                ("Timeout", "30000"),
                ("CallerID", '"Gateway" <+15559990000>'),
                ("Async", "true"),
                ("ChannelId", "gw-list-0001"),
                ("OtherChannelId", "gw-list-0001-b"),
            )
        )
        await caller.read_until("AppData: 20\r\n")  # the phone's Wait(20): both legs are up

    client = await replay("ami-ping-and-errors", server, before={"CoreShowChannels": start_call_elsewhere})

    assert normalize(client.received) == normalize(load_capture("ami-ping-and-errors").raw)
    other[0].writer.close()


async def test_bridge_and_hangup_of_a_bridged_channel_match_capture(server: FakeAsterisk) -> None:
    capture = load_capture("bridge-two-channels")
    login, originate_a, originate_b, bridge, hangup, logoff = capture.sent
    client = await RawAmi.connect(server.port)
    client.send(login.headers)
    await client.read_until("Event: SuccessfulAuth")
    for originate in (originate_a, originate_b):
        client.send(originate.headers)
        other_id = header(originate.headers, "OtherChannelId")
        await client.read_until(f"Uniqueid: {other_id}", "Application: Wait")  # both legs in Wait(60)
    names = [channel for channel in server.channels if channel.endswith(";1")]
    client.send(tuple((k, {"Channel1": names[0], "Channel2": names[1]}.get(k, v)) for k, v in bridge.headers))
    await client.read_until("Variable: BRIDGEPEER")
    await client.read_until("Variable: BRIDGEPEER")
    client.send(tuple((k, names[0] if k == "Channel" else v) for k, v in hangup.headers))
    await client.read_until("Event: BridgeDestroy")
    for _ in range(4):
        await client.read_until("Event: DeviceStateChange")
    client.send(logoff.headers)
    await client.read_to_eof()

    reply = b"Response: Success\r\nActionID: bridge-0001\r\n"
    got = client.received[client.received.index(reply) :]
    assert normalize(got) == normalize(capture.raw[capture.raw.index(reply) :])
    assert server.channels == []


@pytest.mark.parametrize(
    ("dial", "digits"),
    [
        ("Local/+15550000001@sim-phones", "1"),
        ("Local/+15550000002@sim-phones", "2"),
        ("Local/+15550000005@sim-phones", ""),
        ("Local/+15550000006@sim-phones", ""),
        ("Local/+15550000007@sim-phones", "9"),
        ("Local/+15550000008@sim-phones", "1"),
        ("Local/press_2_12#@sim-callers", "12#"),
    ],
)
async def test_phones_press_their_keys_on_the_first_leg_only(server: FakeAsterisk, dial: str, digits: str) -> None:
    client = await RawAmi.connect(server.port)
    client.send((("Action", "Login"), ("Username", "gateway"), ("Secret", "gatewaysecret")))
    client.send(
        (
            ("Action", "Originate"),
            ("Channel", dial),
            ("Context", "sim-callers"),
            ("Exten", "s"),
            ("Priority", "1"),
            ("Async", "true"),
            ("ChannelId", "gw-keys"),
            ("OtherChannelId", "gw-keys-b"),
        )
    )
    await client.read_until("Event: Hangup", "Uniqueid: gw-keys-b")  # the phone hangs up by itself

    _, messages = split_stream(client.received)
    dtmf = [m for m in messages if (header(m, "Event") or "").startswith("DTMF")]
    answered = [m for m in messages if header(m, "Event") == "OriginateResponse"]
    hangups = [m for m in messages if header(m, "Event") == "Hangup"]
    assert [header(m, "Reason") for m in answered] == ["4"]
    assert "".join(header(m, "Digit") or "" for m in dtmf if header(m, "Event") == "DTMFEnd") == digits
    assert all((header(m, "Channel") or "").endswith(";1") for m in dtmf)
    assert all(header(m, "Uniqueid") == "gw-keys" for m in dtmf)
    assert sorted(header(m, "Cause") for m in hangups) == ["16", "16"]
    assert server.channels == []
    client.writer.close()
