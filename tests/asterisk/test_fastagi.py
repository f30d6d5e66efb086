"""FastAGI server, session and flow runner against a peer that speaks like Asterisk 22.

Everything runs over real TCP on 127.0.0.1. The captures in
``tests/fixtures/asterisk/*.agi`` are replayed byte for byte.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from asterisk.agi_commands import AgiReply, parse_reply
from asterisk.fastagi import (
    AgiSession,
    ChannelLeftAgi,
    FastAgiServer,
    FlowRunOptions,
    Router,
    route_by_script,
    run_flow,
)
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    EngineerConnected,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NobodyAccepted,
    NoInput,
    Play,
    Prompt,
    Record,
    RecordingFinished,
    Say,
    Step,
)
from tests.peers.agi_peer import AgiPeer, agi_environment
from tests.support import eventually

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk"
SAFETY_S = 5.0  # only guards against a hung test; nothing is timed

# ------------------------------------------------------------------ helpers


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[FastAgiServer]]]:
    servers: list[FastAgiServer] = []

    async def start(router: Router, **kwargs: Any) -> FastAgiServer:
        server = FastAgiServer("127.0.0.1", 0, router, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


async def finish(peer: AgiPeer) -> None:
    await asyncio.wait_for(peer.run(), SAFETY_S)


@dataclass(frozen=True, kw_only=True)
class History:
    events: tuple[Event, ...] = ()
    outcome: FlowOutcome | None = None


Reaction = Callable[[Event], tuple[tuple[Action, ...], FlowOutcome | None]]


@dataclass(frozen=True, kw_only=True)
class ScriptedFlow:
    """A pure test flow: its state is the events it saw; ``react`` says what to do."""

    react: Reaction

    def start(self) -> Step[History]:
        return Step(state=History())

    def on_event(self, state: History, event: Event) -> Step[History]:
        state = replace(state, events=(*state.events, event))
        if state.outcome is not None:
            return Step(state=state)
        actions, outcome = self.react(event)
        return Step(state=replace(state, outcome=outcome), actions=actions, outcome=outcome)


PROMPTS: tuple[Prompt, ...] = (Play(prompt="hello-world"), Play(prompt="press-1"))


def menu(prompts: tuple[Prompt, ...] = PROMPTS, num_digits: int = 1) -> ScriptedFlow:
    """Alert-call-like: 1 acknowledges, other keys decline, silence gives up."""

    def react(event: Event) -> tuple[tuple[Action, ...], FlowOutcome | None]:
        match event:
            case Answered():
                return (Gather(prompts=prompts, num_digits=num_digits, timeout_s=5),), None
            case DigitsReceived(digits="1"):
                return (Say(text="Acknowledged."), Hangup()), FlowOutcome.ACKNOWLEDGED
            case DigitsReceived():
                return (Hangup(),), FlowOutcome.DECLINED
            case NoInput():
                return (Hangup(),), FlowOutcome.NO_ANSWER
            case HungUp():
                return (), FlowOutcome.HUNG_UP
        return (), None

    return ScriptedFlow(react=react)


@dataclass
class Run:
    """What one route saw: run_flow's result, the steps, and anything the route did after."""

    result: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    steps: list[Step[Any]] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_step(self, step: Step[Any]) -> None:
        self.steps.append(step)
        if step.state.events and isinstance(step.state.events[-1], Answered):
            self.answered.set()

    @property
    def events(self) -> tuple[Event, ...]:
        return self.steps[-1].state.events


def flow_route(
    run: Run,
    flow: ScriptedFlow,
    after: Callable[[AgiSession], Awaitable[None]] | None = None,
    **kwargs: Any,
) -> Router:
    async def route(session: AgiSession) -> None:
        kwargs.setdefault("tts", None)
        try:
            run.result.set_result(await run_flow(session, flow, on_step=run.on_step, **kwargs))
        except Exception as exc:
            run.result.set_exception(exc)
            raise
        if after is not None:
            await after(session)

    return route


# ------------------------------------------------------ capture replays


def capture_commands(transcript: str, prefix: str) -> list[str]:
    """The ``>>`` lines (what the FastAGI server sent) of one connection of a transcript."""
    text = (FIXTURES / transcript).read_text()
    marker = f"{prefix}>> "
    return [line[len(marker) :] for line in text.splitlines() if line.startswith(marker)]


def capture_environment(raw: bytes) -> dict[str, str]:
    """The fields :func:`agi_environment` substitutes, taken from a capture's header."""
    header = raw.split(b"\n\n", 1)[0].decode()
    env = dict(line.split(": ", 1) for line in header.splitlines())
    host = env["agi_request"].removeprefix("agi://").rsplit("/", 1)[0]
    return {
        "script": env["agi_network_script"],
        "request_host": host,
        "channel": env["agi_channel"],
        "uniqueid": env["agi_uniqueid"],
        "callerid": env["agi_callerid"],
        "calleridname": env["agi_calleridname"],
        "context": env["agi_context"],
        "extension": env["agi_extension"],
        "priority": env["agi_priority"],
    }


def without_threadid(data: bytes) -> bytes:
    """``agi_threadid`` changes from run to run (README of the captures)."""
    return re.sub(rb"agi_threadid: \d+\n", b"agi_threadid: N\n", bytes(data))


REPLAYS = {
    # capture: (transcript, line prefix, scripted phone)
    "fastagi-session.agi": ("fastagi-session.txt", "", {"press": {2: "1"}}),
    "fastagi-hangup.agi": ("fastagi-hangup.txt", "", {"hang_up_at": 2}),
    "fastagi-bargein.agi": ("fastagi-bargein.txt", "", {"press": {1: "1"}}),
    "hotline-bridge-agi-caller.agi": ("hotline-bridge.txt", "[agi-caller] ", {"pull_at": 2}),
    "hotline-bridge-agi-engineer.agi": (
        "hotline-bridge.txt",
        "[agi-engineer] ",
        {"press": {0: "1"}},
    ),
    "hotline-ami-bridge-agi-caller.agi": (
        "hotline-ami-bridge.txt",
        "[agi-caller] ",
        {"pull_at": 2},
    ),
    "hotline-ami-bridge-agi-engineer.agi": (
        "hotline-ami-bridge.txt",
        "[agi-engineer] ",
        {"press": {0: "1"}, "pull_at": 1},
    ),
}


@pytest.mark.parametrize("capture", sorted(REPLAYS))
async def test_replayed_session_matches_the_capture_byte_for_byte(
    serve: Callable[..., Awaitable[FastAgiServer]], capture: str
) -> None:
    transcript, prefix, phone = REPLAYS[capture]
    raw = (FIXTURES / capture).read_bytes()
    commands = capture_commands(transcript, prefix)
    assert commands, "the transcript has commands"
    replies: list[AgiReply] = []
    seen: dict[str, Any] = {}

    async def route(session: AgiSession) -> None:
        seen["env"] = dict(session.env)
        for line in commands:
            replies.append(await session.command(line))

    server = await serve(route)
    peer = AgiPeer(server.port, **phone, **capture_environment(raw))
    await finish(peer)

    assert without_threadid(peer.sent) == without_threadid(raw)
    assert peer.commands == commands
    # The session saw every reply of the capture, with the unsolicited HANGUP lines skipped.
    body = raw.split(b"\n\n", 1)[1].decode().splitlines()
    assert [r.raw for r in replies] == [line for line in body if line != "HANGUP"]
    assert len(seen["env"]) == 22
    assert seen["env"]["agi_accountcode"] == ""
    assert peer.closed_by_server


async def test_capture_environment_is_the_peer_default() -> None:
    raw = (FIXTURES / "fastagi-session.agi").read_bytes()
    peer = AgiPeer(0)
    header = raw.split(b"\n\n", 1)[0] + b"\n\n"
    assert without_threadid(peer.environment) == without_threadid(header)


# ---------------------------------------------------------- reply parsing


@pytest.mark.parametrize(
    ("line", "code", "result", "extra"),
    [
        ("200 result=49 endpos=9760", 200, "49", "endpos=9760"),
        ("200 result=0 endpos=11360", 200, "0", "endpos=11360"),
        ("200 result= (timeout)", 200, "", "(timeout)"),
        ("200 result=1 (SUCCESS)", 200, "1", "(SUCCESS)"),
        ("200 result=-1", 200, "-1", ""),
        ("200 result=-1 (hangup) endpos=24000", 200, "-1", "(hangup) endpos=24000"),
        (
            "511 Command Not Permitted on a dead channel or intercept routine",
            511,
            "",
            "Command Not Permitted on a dead channel or intercept routine",
        ),
        ("510 Invalid or unknown command", 510, "", "Invalid or unknown command"),
    ],
)
def test_parse_reply(line: str, code: int, result: str, extra: str) -> None:
    reply = parse_reply(line)
    assert (reply.code, reply.result, reply.extra) == (code, result, extra)


def test_reply_helpers() -> None:
    assert parse_reply("200 result=49 endpos=9760").digit == "1"
    assert parse_reply("200 result=49 endpos=9760").endpos == 9760
    assert parse_reply("200 result=35").digit == "#"
    assert parse_reply("200 result=0 endpos=11360").digit is None
    assert parse_reply("200 result=-1").digit is None
    assert parse_reply("200 result=-1").failed
    assert parse_reply("200 result=1 (SUCCESS)").value == "SUCCESS"
    dead = parse_reply("511 Command Not Permitted on a dead channel or intercept routine")
    assert dead.dead_channel




async def test_multi_line_usage_reply_is_one_reply(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    replies: list[AgiReply] = []

    async def route(session: AgiSession) -> None:
        replies.append(await session.command("STREAM FILE"))
        replies.append(await session.command("ANSWER"))

    server = await serve(route)
    await finish(AgiPeer(server.port))

    usage, answer = replies
    assert usage.code == 520
    assert "Usage: STREAM FILE" in usage.extra
    assert usage.extra.endswith("520 End of proper usage.")
    assert (answer.code, answer.result) == (200, "0")


# ------------------------------------------------------------- the server


async def test_probe_and_garbage_harm_nothing(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    served: list[str] = []

    async def route(session: AgiSession) -> None:
        served.append(session.uniqueid)
        await session.command("ANSWER")

    server = await serve(route)

    # A health probe: connect and close at once.
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await writer.wait_closed()

    # Garbage ended by an empty line: dropped, and the server closes on it.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"hello\nthis is not agi\n\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), SAFETY_S) == b""
    writer.close()

    peer = AgiPeer(server.port, uniqueid="gw-agi-0042")
    await finish(peer)
    assert served == ["gw-agi-0042"]
    assert peer.commands == ["ANSWER"]


async def test_stalled_header_times_out_and_blocks_nobody(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    served: list[str] = []

    async def route(session: AgiSession) -> None:
        served.append(session.uniqueid)

    server = await serve(route, header_timeout_s=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\nagi_network_script: hotline\n")
    await writer.drain()

    # While that peer stalls, a normal session is served.
    await finish(AgiPeer(server.port, uniqueid="gw-agi-0007"))
    assert served == ["gw-agi-0007"]

    # The stalled one is dropped once the header timeout runs out.
    assert await asyncio.wait_for(reader.read(), SAFETY_S) == b""
    writer.close()
    assert served == ["gw-agi-0007"]


async def test_a_failing_route_is_closed_and_the_server_keeps_serving(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    calls: list[str] = []

    async def route(session: AgiSession) -> None:
        calls.append(session.uniqueid)
        if len(calls) == 1:
            raise RuntimeError("bug in a route")
        await session.command("ANSWER")

    server = await serve(route)
    first = AgiPeer(server.port, uniqueid="gw-agi-0001")
    await finish(first)
    assert first.closed_by_server
    assert first.commands == []

    second = AgiPeer(server.port, uniqueid="gw-agi-0002")
    await finish(second)
    assert calls == ["gw-agi-0001", "gw-agi-0002"]
    assert second.commands == ["ANSWER"]


async def test_route_by_script(serve: Callable[..., Awaitable[FastAgiServer]]) -> None:
    seen: list[tuple[str, str]] = []

    def named(name: str) -> Router:
        async def route(session: AgiSession) -> None:
            seen.append((name, session.uniqueid))

        return route

    server = await serve(route_by_script({"hotline": named("hotline"), "screen": named("screen")}))
    await finish(AgiPeer(server.port, script="screen", uniqueid="gw-eng-0001"))
    await finish(AgiPeer(server.port, script="hotline", uniqueid="gw-hot-0001"))
    # AGI(agi://gw:4573/hotline/ops): Asterisk sends agi_network_script: hotline/ops.
    await finish(AgiPeer(server.port, script="hotline/ops", uniqueid="gw-hot-0002"))
    unknown = AgiPeer(server.port, script="nosuch", uniqueid="gw-x-0001")
    await finish(unknown)

    assert seen == [("screen", "gw-eng-0001"), ("hotline", "gw-hot-0001"), ("hotline", "gw-hot-0002")]
    assert unknown.closed_by_server


async def test_the_request_path_and_arguments_reach_the_route(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    seen: list[tuple[str, str, str, str]] = []

    async def hotline(session: AgiSession) -> None:
        seen.append((session.script, session.route, session.script_rest, session.argument(1)))

    server = await serve(route_by_script({"hotline": hotline}))
    by_path = AgiPeer(server.port, script="hotline/ops")  # AGI(agi://gw:4573/hotline/ops)
    by_argument = AgiPeer(server.port, script="hotline", args=("ops", "x"))  # AGI(agi://gw:4573/hotline,ops,x)
    await finish(by_path)
    await finish(by_argument)

    assert seen == [("hotline/ops", "hotline", "ops", ""), ("hotline", "hotline", "", "ops")]
    env = by_path.environment.decode()
    assert "agi_network_script: hotline/ops\n" in env and "agi_request: agi://127.0.0.1:4573/hotline/ops\n" in env
    # res_agi sends the arguments after agi_threadid, before the empty line.
    assert by_argument.environment.decode().endswith("\nagi_arg_1: ops\nagi_arg_2: x\n\n")


async def test_stop_ends_open_sessions(serve: Callable[..., Awaitable[FastAgiServer]]) -> None:
    entered = asyncio.Event()

    async def route(session: AgiSession) -> None:
        entered.set()
        await asyncio.Event().wait()

    server = await serve(route)
    peer = AgiPeer(server.port)
    talking = asyncio.create_task(peer.run())
    await asyncio.wait_for(entered.wait(), SAFETY_S)
    await asyncio.wait_for(server.stop(), SAFETY_S)
    await asyncio.wait_for(talking, SAFETY_S)
    assert peer.closed_by_server


# -------------------------------------------------------------- run_flow


async def test_key_during_the_first_prompt_acknowledges(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, menu()))
    peer = AgiPeer(server.port, press={1: "1"})
    await finish(peer)

    assert await run.result == FlowOutcome.ACKNOWLEDGED
    assert run.events == (Answered(), DigitsReceived(digits="1"))
    assert peer.commands == [
        "ANSWER",
        'STREAM FILE hello-world "0123456789*#"',
        'STREAM FILE beep "0123456789*#"',  # Say without TTS
        "HANGUP",
    ]
    assert peer.closed_by_server


async def test_key_during_the_second_prompt_counts(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, menu()))
    peer = AgiPeer(server.port, press={2: "2"})
    await finish(peer)

    assert await run.result == FlowOutcome.DECLINED
    assert run.events == (Answered(), DigitsReceived(digits="2"))
    assert peer.commands[2] == 'STREAM FILE press-1 "0123456789*#"'
    assert "WAIT FOR DIGIT 5000" not in peer.commands


async def test_key_after_the_prompts_is_read_with_wait_for_digit(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, menu()))
    peer = AgiPeer(server.port, press={3: "1"})
    await finish(peer)

    assert await run.result == FlowOutcome.ACKNOWLEDGED
    assert peer.commands[3] == "WAIT FOR DIGIT 5000"
    assert run.events[-1] == DigitsReceived(digits="1")


async def test_silence_is_no_input(serve: Callable[..., Awaitable[FastAgiServer]]) -> None:
    run = Run()
    server = await serve(flow_route(run, menu()))
    peer = AgiPeer(server.port)
    await finish(peer)

    assert await run.result == FlowOutcome.NO_ANSWER
    assert run.events == (Answered(), NoInput())
    assert peer.commands == [
        "ANSWER",
        'STREAM FILE hello-world "0123456789*#"',
        'STREAM FILE press-1 "0123456789*#"',
        "WAIT FOR DIGIT 5000",
        "HANGUP",
    ]


@pytest.mark.parametrize("hang_up_at", [2, 3], ids=["during-prompt", "during-wait"])
async def test_hang_up_mid_gather_is_hung_up(
    serve: Callable[..., Awaitable[FastAgiServer]], hang_up_at: int
) -> None:
    run = Run()
    later: list[AgiReply] = []
    hung_up: list[bool] = []

    async def after(session: AgiSession) -> None:
        later.append(await session.command('SAY DIGITS 42 ""'))
        later.append(await session.command("SET VARIABLE GW_RESULT hung_up"))
        later.append(await session.command("HANGUP"))
        hung_up.append(session.hung_up)

    server = await serve(flow_route(run, menu(), after))
    peer = AgiPeer(server.port, hang_up_at=hang_up_at)
    await finish(peer)

    assert await run.result == FlowOutcome.HUNG_UP
    assert run.events == (Answered(), HungUp(cause="hung up"))
    assert peer.commands[hang_up_at + 1] == "CHANNEL STATUS"  # -1 on a prompt: hang-up or file?
    assert [(r.code, r.result) for r in later] == [(511, ""), (200, "1"), (511, "")]
    assert hung_up == [True]
    assert peer.closed_by_server
    assert not peer.channel_alive


async def test_a_prompt_that_fails_on_a_live_channel_is_skipped(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, menu()))
    peer = AgiPeer(server.port, missing_files=frozenset({"hello-world"}), press={4: "1"})
    await finish(peer)

    assert await run.result == FlowOutcome.ACKNOWLEDGED
    assert peer.commands[1:5] == [
        'STREAM FILE hello-world "0123456789*#"',
        "CHANNEL STATUS",
        'STREAM FILE press-1 "0123456789*#"',
        "WAIT FOR DIGIT 5000",
    ]
    assert HungUp(cause="hung up") not in run.events


async def test_several_digits_use_get_data_after_the_first_key(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, menu(num_digits=3)))
    peer = AgiPeer(server.port, press={1: "12#"})
    await finish(peer)

    assert run.events == (Answered(), DigitsReceived(digits="12"))
    assert await run.result == FlowOutcome.DECLINED
    assert peer.commands[2] == "GET DATA silence/1 5000 2"


async def test_several_digits_after_the_prompts(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, menu(num_digits=3)))
    peer = AgiPeer(server.port, press={3: "123"})
    await finish(peer)

    assert peer.commands[3] == "GET DATA silence/1 5000 3"
    assert run.events == (Answered(), DigitsReceived(digits="123"))


async def test_say_without_tts_plays_a_stock_prompt_and_the_numbers(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    flow = menu(prompts=(Say(text="Disk full on db-7. Press 1 to acknowledge, 2 to pass it on."),))
    server = await serve(flow_route(run, flow))
    peer = AgiPeer(server.port, press={2: "1"})  # during "SAY DIGITS 7"
    await finish(peer)

    assert peer.commands[1:3] == [
        'STREAM FILE beep "0123456789*#"',
        'SAY DIGITS 7 "0123456789*#"',
    ]
    assert run.events[-1] == DigitsReceived(digits="1")


async def test_say_with_tts_streams_the_rendered_file(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    class FakeTts:
        def __init__(self) -> None:
            self.asked: list[tuple[str, str]] = []

        async def path_for(self, text: str, language: str) -> str | None:
            self.asked.append((text, language))
            return "/var/cache/gateway-tts/abc123"

    tts = FakeTts()
    run = Run()
    flow = menu(prompts=(Say(text="Press 1.", language="de-DE"),))
    server = await serve(flow_route(run, flow, tts=tts))
    peer = AgiPeer(server.port, press={1: "1"})
    await finish(peer)

    assert peer.commands[1] == 'STREAM FILE /var/cache/gateway-tts/abc123 "0123456789*#"'
    assert ("Press 1.", "de-DE") in tts.asked
    assert await run.result == FlowOutcome.ACKNOWLEDGED


async def test_bridge_action_runs_the_bridge_application(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    engineer = "Local/+15550000001@sim-phones-000000e9;1"

    def react(event: Event) -> tuple[tuple[Action, ...], FlowOutcome | None]:
        if isinstance(event, Answered):
            return (Play(prompt="connecting"), Bridge(call_id="page-1")), FlowOutcome.CONNECTED
        return (), None

    asked: list[str] = []

    async def bridge_target(call_id: str) -> str | None:
        asked.append(call_id)
        return engineer

    run = Run()
    server = await serve(flow_route(run, ScriptedFlow(react=react), bridge_target=bridge_target))
    peer = AgiPeer(server.port)
    await finish(peer)

    assert await run.result == FlowOutcome.CONNECTED
    assert asked == ["page-1"]
    assert peer.commands == [
        "ANSWER",
        'STREAM FILE connecting ""',
        f'EXEC Bridge "{engineer},x"',
        "GET VARIABLE BRIDGERESULT",
    ]
    assert peer.bridged_with == engineer


def holding(event: Event) -> tuple[tuple[Action, ...], FlowOutcome | None]:
    """Hotline-like: hold; nobody accepts -> voicemail; connected -> bridge."""
    match event:
        case Answered():
            return (Say(text="Please hold."), Hold(priority="high")), None
        case EngineerConnected(call_id=call_id):
            return (Bridge(call_id=call_id),), FlowOutcome.CONNECTED
        case NobodyAccepted():
            return (Say(text="Leave a message."), Record(max_seconds=60)), None
        case RecordingFinished():
            return (Say(text="Thank you."), Hangup()), FlowOutcome.VOICEMAIL
        case HungUp():
            return (), FlowOutcome.ABANDONED
    return (), None


@pytest.mark.parametrize("how", ["pull", "hang_up"])
async def test_leaving_agi_on_hold_is_reported_not_hung_up(
    serve: Callable[..., Awaitable[FastAgiServer]], how: str
) -> None:
    run = Run()
    options = FlowRunOptions(hold_chunk_s=30)
    server = await serve(flow_route(run, ScriptedFlow(react=holding), options=options))
    peer = AgiPeer(server.port)
    talking = asyncio.create_task(peer.run())
    await asyncio.wait_for(peer.wait_blocking(), SAFETY_S)
    if how == "pull":
        await peer.pull_into_bridge()
    else:
        await peer.hang_up()
    await asyncio.wait_for(talking, SAFETY_S)

    result = await run.result
    assert isinstance(result, ChannelLeftAgi)
    assert result.hold == Hold(priority="high")
    assert result.state == History(events=(Answered(),))
    assert all(not isinstance(e, HungUp) for step in run.steps for e in step.state.events)
    assert peer.commands[-1] == 'EXEC MusicOnHold "default,30"'
    assert peer.channel_alive == (how == "pull")


async def test_hold_loops_and_takes_gateway_events_between_chunks(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    events: asyncio.Queue[Event] = asyncio.Queue()
    run = Run()
    server = await serve(flow_route(run, ScriptedFlow(react=holding), events=events))
    # 0 ANSWER, 1 Say, 2 hold, 3 hold again, 4 Say, 5 RECORD FILE:
    # the caller hangs up after speaking.
    peer = AgiPeer(server.port, hang_up_at=5)
    talking = asyncio.create_task(peer.run())
    await asyncio.wait_for(peer.end_hold_chunk(), SAFETY_S)
    await asyncio.wait_for(peer.wait_blocking(2), SAFETY_S)  # the hold goes on
    await events.put(NobodyAccepted())
    await peer.end_hold_chunk()  # the flow hears it at the end of the chunk
    await asyncio.wait_for(talking, SAFETY_S)

    assert await run.result == FlowOutcome.VOICEMAIL
    assert peer.commands[2:4] == ['EXEC MusicOnHold "default,10"'] * 2
    record = peer.commands[5]
    match = re.fullmatch(
        r"RECORD FILE (/var/spool/asterisk/gateway/gw-agi-0001-[0-9a-f]{8})"
        r' wav "#" 60000 0 BEEP s=3',
        record,
    )
    assert match is not None, record
    finished = run.events[2]
    assert finished == RecordingFinished(url=f"{match.group(1)}.wav", duration_s=3)
    assert run.events == (Answered(), NobodyAccepted(), finished, HungUp(cause="hung up"))


async def test_recording_ended_with_hash(serve: Callable[..., Awaitable[FastAgiServer]]) -> None:
    def react(event: Event) -> tuple[tuple[Action, ...], FlowOutcome | None]:
        match event:
            case Answered():
                return (Record(max_seconds=30, beep=False),), None
            case RecordingFinished():
                return (Hangup(),), FlowOutcome.VOICEMAIL
        return (), None

    run = Run()
    options = FlowRunOptions(record_dir="voicemail", record_silence_s=0)
    server = await serve(flow_route(run, ScriptedFlow(react=react), options=options))
    peer = AgiPeer(server.port, press={1: "#"})
    await finish(peer)

    assert await run.result == FlowOutcome.VOICEMAIL
    pattern = r'RECORD FILE voicemail/gw-agi-0001-[0-9a-f]{8} wav "#" 30000 0'
    assert re.fullmatch(pattern, peer.commands[1])
    assert isinstance(run.events[-1], RecordingFinished)


async def test_waiting_flow_takes_gateway_events(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    def react(event: Event) -> tuple[tuple[Action, ...], FlowOutcome | None]:
        match event:
            case EngineerConnected(call_id=call_id):
                return (Bridge(call_id=call_id),), FlowOutcome.CONNECTED
        return (), None  # after Answered: nothing to render, wait for the gateway

    async def bridge_target(call_id: str) -> str | None:
        return {"page-9": "Local/+15550000001@sim-phones-000000aa;1"}.get(call_id)

    events: asyncio.Queue[Event] = asyncio.Queue()
    run = Run()
    route = flow_route(run, ScriptedFlow(react=react), events=events, bridge_target=bridge_target)
    server = await serve(route)
    peer = AgiPeer(server.port)
    talking = asyncio.create_task(peer.run())
    await asyncio.wait_for(run.answered.wait(), SAFETY_S)
    await events.put(EngineerConnected(engineer_name="Ada", call_id="page-9"))
    await asyncio.wait_for(talking, SAFETY_S)

    assert await run.result == FlowOutcome.CONNECTED
    assert 'EXEC Bridge "Local/+15550000001@sim-phones-000000aa;1,x"' in peer.commands


async def test_waiting_flow_hears_a_hang_up(serve: Callable[..., Awaitable[FastAgiServer]]) -> None:
    def react(event: Event) -> tuple[tuple[Action, ...], FlowOutcome | None]:
        if isinstance(event, HungUp):
            return (), FlowOutcome.ABANDONED
        return (), None

    events: asyncio.Queue[Event] = asyncio.Queue()
    run = Run()
    server = await serve(flow_route(run, ScriptedFlow(react=react), events=events))
    peer = AgiPeer(server.port)
    talking = asyncio.create_task(peer.run())
    await asyncio.wait_for(run.answered.wait(), SAFETY_S)
    await peer.hang_up()
    await asyncio.wait_for(talking, SAFETY_S)

    assert await run.result == FlowOutcome.ABANDONED
    assert run.events == (Answered(), HungUp(cause="hung up"))
    assert peer.commands == ["ANSWER"]


async def test_without_events_a_waiting_flow_ends_without_outcome(
    serve: Callable[..., Awaitable[FastAgiServer]],
) -> None:
    run = Run()
    server = await serve(flow_route(run, ScriptedFlow(react=lambda event: ((), None))))
    peer = AgiPeer(server.port)
    await finish(peer)

    assert await run.result is None
    assert peer.commands == ["ANSWER"]
    assert peer.closed_by_server


async def test_sessions_only_from_allowed_hosts(serve: Callable[..., Awaitable[FastAgiServer]]) -> None:
    routed: list[str] = []

    async def router(session: AgiSession) -> None:
        routed.append(session.uniqueid)

    server = await serve(router)
    server.allowed_peers = {"192.0.2.10"}  # the Asterisk host; we connect from 127.0.0.1
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(agi_environment(script="call", uniqueid="gw-page-11"))
    try:
        answer = await asyncio.wait_for(reader.read(), SAFETY_S)
    except ConnectionResetError:  # closed while our headers were unread
        answer = b""
    assert answer == b""  # closed without a word
    writer.close()
    assert routed == []

    server.allowed_peers = {"127.0.0.1"}
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(agi_environment(script="call", uniqueid="gw-page-12"))

    async def taken() -> bool:
        return routed == ["gw-page-12"]

    await eventually(taken)
    writer.close()
