"""FastAGI: our own small asyncio server, one session per connection, and a flow runner.

Asterisk connects, sends the ``agi_*`` environment block (ended by an empty
line), then answers each command line with one reply line. It also writes an
unsolicited ``HANGUP`` line when the channel hangs up, after the reply of the
command that was running; a session skips it while waiting for a reply and
remembers it in :attr:`AgiSession.hung_up`. AGI ``HANGUP`` only soft-hangs the
channel: it ends when this side closes the socket (:meth:`AgiSession.close`).

:func:`run_flow` drives a pure flow from ``ivr_flows`` on one channel: it
renders the flow's actions as AGI commands and feeds the results back as
events. What it cannot tell apart is reported, not guessed: a channel pulled
into a bridge looks to its AGI exactly like a hang-up, so leaving AGI while on
hold returns :class:`ChannelLeftAgi` and the provider, which also sees AMI,
decides whether the caller is gone or bridged.

panoramisk's FastAGI server is not used: its header reader spins forever when
a peer connects and closes (a health probe would freeze the event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from asterisk import agi_commands as agi
from asterisk.agi_commands import ALL_KEYS, AgiProtocolError, AgiReply
from asterisk.tts import TtsRenderer
from core.phone import mask
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    Event,
    Flow,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NoInput,
    Play,
    Prompt,
    Record,
    RecordingFinished,
    Say,
    Step,
)

__all__ = [
    "AgiCommandError",
    "AgiConnectionClosed",
    "AgiError",
    "AgiProtocolError",
    "AgiReply",
    "AgiSession",
    "ChannelLeftAgi",
    "FastAgiServer",
    "FlowRunOptions",
    "Router",
    "StepSource",
    "route_by_script",
    "run_flow",
    "run_steps",
]

_log = logging.getLogger(__name__)

_ENV_LINE = re.compile(r"^(agi_[a-z0-9_]+):[ ]?(.*)$")
_SPOKEN_NUMBER = re.compile(r"(?<!\d)(?<!\d[.,])\d{1,4}(?!\d)(?![.,]\d)")
_SAMPLES_PER_SECOND = 8000  # endpos of the "wav" format is in 8 kHz samples


class AgiError(Exception):
    """Base of our FastAGI errors."""


class AgiConnectionClosed(AgiError):
    """Asterisk closed the connection (or we did) while a reply was expected."""


class AgiCommandError(AgiError):
    """Asterisk rejected a command we built (510 unknown, 520 usage): a bug on our side."""

    def __init__(self, command: str, reply: AgiReply) -> None:
        first_line = reply.raw.splitlines()[0] if reply.raw else str(reply.code)
        super().__init__(f"{command!r} rejected: {first_line}")
        self.command = command
        self.reply = reply


# ------------------------------------------------------------------- session


class AgiSession:
    """One FastAGI connection: the ``agi_*`` environment and a command/reply channel."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, env: dict[str, str]
    ) -> None:
        self.env = env
        self.hung_up = False
        self._reader = reader
        self._writer = writer
        self._lock = asyncio.Lock()
        self._eof = False
        self._closed = False

    @classmethod
    async def accept(
        cls,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        header_timeout_s: float = 5.0,
    ) -> AgiSession | None:
        """Read the environment block; None (logged) for a probe, garbage or a stalled peer."""
        peer = _peer_name(writer)
        try:
            block = await asyncio.wait_for(reader.readuntil(b"\n\n"), header_timeout_s)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                _log.warning("fastagi: %s closed in the middle of the header; dropped", peer)
            else:
                _log.debug("fastagi: %s connected and closed without a header", peer)
            return None
        except asyncio.LimitOverrunError:
            _log.warning("fastagi: %s sent an oversized header; dropped", peer)
            return None
        except TimeoutError:
            _log.warning(
                "fastagi: no header from %s within %.1f s; dropped", peer, header_timeout_s
            )
            return None
        except (ConnectionError, OSError) as exc:
            _log.debug("fastagi: %s failed before its header: %s", peer, exc)
            return None
        env = parse_environment(block)
        if env is None:
            _log.warning("fastagi: %s sent something that is not an AGI header; dropped", peer)
            return None
        return cls(reader, writer, env)

    @property
    def script(self) -> str:
        """The path of ``agi://host:port/<script>`` (``hotline/ops`` for ``agi://gw/hotline/ops``)."""
        return self.env.get("agi_network_script", "").strip().strip("/")

    @property
    def route(self) -> str:
        """The first segment of :attr:`script`, used for routing (``hotline`` of ``hotline/ops``)."""
        return self.script.partition("/")[0]

    @property
    def script_rest(self) -> str:
        """What follows the route in :attr:`script` (``ops`` of ``hotline/ops``), for the route to read."""
        return self.script.partition("/")[2].strip("/")

    def argument(self, index: int) -> str:
        """The AGI application's ``index``-th argument (``agi_arg_1`` of ``AGI(agi://gw/hotline,ops)``)."""
        return self.env.get(f"agi_arg_{index}", "").strip()

    @property
    def channel(self) -> str:
        return self.env.get("agi_channel", "")

    @property
    def uniqueid(self) -> str:
        return self.env.get("agi_uniqueid", "")

    @property
    def label(self) -> str:
        """What to log for this session: no channel names or numbers, they hold phone numbers."""
        return f"{self.script or '?'}/{self.uniqueid or '?'}"

    @property
    def closed(self) -> bool:
        return self._closed

    async def command(self, line: str) -> AgiReply:
        """Send one command and return its reply, skipping unsolicited ``HANGUP`` lines.

        Raises :class:`AgiConnectionClosed` when the connection ends first, and
        :class:`~asterisk.agi_commands.AgiProtocolError` for a line that is no reply.
        """
        if "\n" in line or "\r" in line:
            raise ValueError("an AGI command is one line")
        async with self._lock:
            if self._closed or self._eof:
                raise AgiConnectionClosed(f"session {self.label} is closed")
            try:
                self._writer.write(line.encode() + b"\n")
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                self._eof = True
                raise AgiConnectionClosed(str(exc)) from exc
            reply = await self._read_reply()
        _log.debug("fastagi %s: %s -> %s", self.label, line.split(" ", 2)[:2], reply.raw)
        return reply

    async def wait_hangup(self) -> None:
        """Return once Asterisk reports a hang-up or closes; for waits between commands."""
        async with self._lock:
            while not self.hung_up and not self._eof:
                line = await self._read_line()
                if line is None:
                    return
                if line == "HANGUP":
                    self._note_hangup()
                else:
                    _log.warning(
                        "fastagi %s: unexpected line between commands: %r", self.label, line[:80]
                    )

    async def close(self, *, drain_timeout_s: float = 1.0) -> None:
        """Half-close, let Asterisk send its last ``HANGUP`` and close, then close.

        Closing is what really ends the channel (AGI ``HANGUP`` only soft-hangs it).
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer.can_write_eof():
                self._writer.write_eof()
            if not self._lock.locked():
                async with self._lock:
                    await asyncio.wait_for(self._drain_until_eof(), drain_timeout_s)
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()

    async def _drain_until_eof(self) -> None:
        while (line := await self._read_line()) is not None:
            if line == "HANGUP":
                self._note_hangup()

    async def _read_reply(self) -> AgiReply:
        while True:
            line = await self._read_line()
            if line is None:
                raise AgiConnectionClosed(f"session {self.label}: connection closed by Asterisk")
            if line == "HANGUP":
                self._note_hangup()
                continue
            if not agi.is_continuation_start(line):
                return agi.parse_reply(line)
            lines = [line]
            while not agi.ends_continuation(lines[-1], line[:3]):
                more = await self._read_line()
                if more is None:
                    raise AgiConnectionClosed(f"session {self.label}: closed inside a reply")
                lines.append(more)
            return agi.parse_reply("\n".join(lines))

    async def _read_line(self) -> str | None:
        if self._eof:
            return None
        try:
            data = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            self._eof = True
            return None
        except (ConnectionError, OSError):
            self._eof = True
            return None
        return data.decode("utf-8", errors="replace").rstrip("\r\n")

    def _note_hangup(self) -> None:
        if not self.hung_up:
            _log.debug("fastagi %s: Asterisk reported HANGUP", self.label)
        self.hung_up = True


def parse_environment(block: bytes) -> dict[str, str] | None:
    """``agi_key: value`` lines up to the empty line; None if any line is something else."""
    text = block.decode("utf-8", errors="replace")
    env: dict[str, str] = {}
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        if not line:
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            return None
        env[match.group(1)] = match.group(2)
    return env or None


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "peer"


# -------------------------------------------------------------------- server

Router = Callable[[AgiSession], Awaitable[None]]


def route_by_script(routes: Mapping[str, Router]) -> Router:
    """A router that picks the route named by the first segment of ``agi_network_script``.

    ``agi://gw:4573/hotline/ops`` reaches the ``hotline`` route (which reads
    ``ops`` from :attr:`AgiSession.script_rest`); unknown routes are dropped.
    """

    async def route(session: AgiSession) -> None:
        handler = routes.get(session.route)
        if handler is None:
            _log.warning("fastagi %s: no route for this script; closing", session.label)
            return
        await handler(session)

    return route


class FastAgiServer:
    """Accepts FastAGI connections and hands each session to ``router``.

    The session is closed when the router returns or raises; a failing route is
    logged and the server goes on serving.
    """

    def __init__(
        self,
        host: str,
        port: int,
        router: Router,
        *,
        header_timeout_s: float = 5.0,
    ) -> None:
        self._host = host
        self._port = port
        self._router = router
        self._header_timeout_s = header_timeout_s
        # Source addresses allowed to open sessions (None: any). A session can acknowledge an alert or
        # take a hotline caller, so only the Asterisk host should reach us.
        self.allowed_peers: set[str] | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        _log.info("fastagi: listening on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        """Stop listening and end every open session."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            peer = writer.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) else ""
            if self.allowed_peers is not None and address not in self.allowed_peers:
                _log.warning("fastagi: connection from %s refused: not an allowed Asterisk host", address or "?")
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()
                return
            session = await AgiSession.accept(
                reader, writer, header_timeout_s=self._header_timeout_s
            )
            if session is None:
                writer.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()
                return
            _log.info(
                "fastagi %s: session from caller %s",
                session.label,
                mask(session.env.get("agi_callerid", "")),
            )
            try:
                await self._router(session)
            except Exception:
                _log.exception("fastagi %s: route failed; closing the session", session.label)
            finally:
                await session.close()
        finally:
            if task is not None:
                self._connections.discard(task)


# --------------------------------------------------------------- flow runner


@dataclass(frozen=True, kw_only=True)
class ChannelLeftAgi:
    """The channel left AGI while on hold: the caller hung up, or a bridge took it.

    AGI cannot tell the two apart (both are ``200 result=-1`` and ``HANGUP``);
    AMI can (BridgeEnter vs Hangup with the ``agi_uniqueid``). ``state`` is the
    flow's state at that moment, so the provider can feed the right event itself.
    """

    state: Any
    hold: Hold


@dataclass(frozen=True, kw_only=True)
class FlowRunOptions:
    """How actions are rendered.

    Without TTS a :class:`Say` plays ``fallback_prompt`` (a stock sound) and then
    says every standalone number of up to four digits with ``SAY DIGITS``
    (menu keys, counts), so a caller still hears that a key is expected.
    ``hold_chunk_s`` is how long one ``MusicOnHold`` runs before events the
    gateway queued (e.g. :class:`~ivr_flows.model.NobodyAccepted`) are looked at.
    ``record_dir`` is a directory on the Asterisk host.
    """

    fallback_prompt: str = "beep"
    gather_filler: str = "silence/1"
    hold_chunk_s: int = 10
    record_dir: str = "/var/spool/asterisk/gateway"
    record_format: str = "wav"
    record_silence_s: int = 3


class _Ended:
    """The call was hung up by the flow and the socket closed."""


_ENDED = _Ended()

_Rendered = Event | ChannelLeftAgi | _Ended | None
_Heard = str | HungUp | None  # a key, the caller gone, or nothing


class StepSource(Protocol):
    """Where :func:`run_steps` takes a flow's steps from: its first, then the one after each event.

    A pure flow is one (see :func:`run_flow`); so is a provider's call session,
    which reports what each step settles before handing it over to be rendered.
    """

    async def start(self) -> Step[Any]: ...

    async def on_event(self, event: Event) -> Step[Any]: ...


@dataclass(eq=False)
class _PureFlow:
    """A flow held here: its state, and ``on_step`` shown each step."""

    flow: Flow[Any]
    on_step: Callable[[Step[Any]], Awaitable[None]] | None
    state: Any = None

    async def start(self) -> Step[Any]:
        return await self._seen(self.flow.start())

    async def on_event(self, event: Event) -> Step[Any]:
        return await self._seen(self.flow.on_event(self.state, event))

    async def _seen(self, step: Step[Any]) -> Step[Any]:
        self.state = step.state
        if self.on_step is not None:
            await self.on_step(step)
        return step


async def run_flow(
    session: AgiSession,
    flow: Flow[Any],
    *,
    tts: TtsRenderer | None,
    on_step: Callable[[Step[Any]], Awaitable[None]] | None = None,
    bridge_target: Callable[[str], Awaitable[str | None]] | None = None,
    events: asyncio.Queue[Event] | None = None,
    options: FlowRunOptions | None = None,
) -> FlowOutcome | ChannelLeftAgi | None:
    """Run ``flow`` on the channel of ``session``: :func:`run_steps` over the flow itself.

    ``on_step`` sees every step (the start and each event's), before its actions
    are rendered.
    """
    return await run_steps(session, _PureFlow(flow, on_step), tts=tts, bridge_target=bridge_target,
                           events=events, options=options)


async def run_steps(
    session: AgiSession,
    steps: StepSource,
    *,
    tts: TtsRenderer | None,
    bridge_target: Callable[[str], Awaitable[str | None]] | None = None,
    events: asyncio.Queue[Event] | None = None,
    options: FlowRunOptions | None = None,
) -> FlowOutcome | ChannelLeftAgi | None:
    """Run a flow's steps on the channel of ``session`` until it has an outcome or the call ends.

    ``steps`` gives the first step, then the step after each event heard here
    (answered, keys, a recording, a hang-up) or taken from ``events``.
    ``bridge_target`` maps a :class:`Bridge`'s call id to the channel name to
    bridge with. ``events`` carries events from the gateway (engineer connected,
    nobody accepted); they are taken between hold chunks and whenever the flow
    waits with nothing to render.

    Returns the flow's outcome (None if it ended without one), or
    :class:`ChannelLeftAgi` when the channel left AGI while on hold. The socket
    is closed only for a :class:`Hangup` action; otherwise the caller (or
    :class:`FastAgiServer`, when the route returns) closes it.
    """
    runner = _FlowRunner(
        session,
        tts=tts,
        bridge_target=bridge_target,
        events=events,
        options=options or FlowRunOptions(),
    )
    return await runner.run(steps)


class _FlowRunner:
    def __init__(
        self,
        session: AgiSession,
        *,
        tts: TtsRenderer | None,
        bridge_target: Callable[[str], Awaitable[str | None]] | None,
        events: asyncio.Queue[Event] | None,
        options: FlowRunOptions,
    ) -> None:
        self._session = session
        self._tts = tts
        self._bridge_target = bridge_target
        self._events = events
        self._options = options

    async def run(self, steps: StepSource) -> FlowOutcome | ChannelLeftAgi | None:
        answer = await self._command(agi.answer())
        step = await steps.start()
        state, outcome = step.state, step.outcome
        rendered = await self._render(step.actions, state)
        if rendered is None:
            gone = answer.dead_channel or answer.failed
            rendered = HungUp(cause="gone before answer") if gone else Answered()
        while True:
            if isinstance(rendered, ChannelLeftAgi):
                _log.info("fastagi %s: channel left AGI while on hold", self._session.label)
                return rendered
            if isinstance(rendered, _Ended):
                return outcome
            if rendered is None:
                if outcome is not None:
                    return outcome
                rendered = await self._next_event()
                if rendered is None:
                    _log.warning(
                        "fastagi %s: flow waits for an event nobody will send; ending",
                        self._session.label,
                    )
                    return None
            step = await steps.on_event(rendered)
            state, outcome = step.state, outcome or step.outcome
            if isinstance(rendered, HungUp):
                return outcome
            rendered = await self._render(step.actions, state)

    async def _next_event(self) -> Event | None:
        """Wait for a gateway event, or the caller hanging up meanwhile."""
        if self._events is None:
            return None
        if self._session.hung_up:
            return HungUp(cause="hung up")
        get = asyncio.ensure_future(self._events.get())
        gone = asyncio.ensure_future(self._session.wait_hangup())
        try:
            await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (get, gone):
                if not task.done():
                    task.cancel()
            await asyncio.gather(get, gone, return_exceptions=True)
        if get.done() and not get.cancelled():
            return get.result()
        return HungUp(cause="hung up")

    # ---------------------------------------------------------- actions

    async def _render(self, actions: Sequence[Action], state: Any) -> _Rendered:
        """Render in order; the first action with a result ends the step (the rest is dropped)."""
        for index, action in enumerate(actions):
            result = await self._render_one(action, state)
            if result is not None:
                if index + 1 < len(actions):
                    _log.debug(
                        "fastagi %s: %d action(s) not rendered after %s",
                        self._session.label,
                        len(actions) - index - 1,
                        type(action).__name__,
                    )
                return result
        return None

    async def _render_one(self, action: Action, state: Any) -> _Rendered:
        match action:
            case Say() | Play():
                # A key may cut a spoken text short; a recorded prompt plays whole.
                escape = ALL_KEYS if isinstance(action, Say) else ""
                heard = await self._play(await self._prompt_commands(action, escape))
                return heard if isinstance(heard, HungUp) else None
            case Gather():
                return await self._gather(action)
            case Hold():
                return await self._hold(action, state)
            case Bridge():
                return await self._bridge(action)
            case Record():
                return await self._record(action)
            case Hangup():
                await self._command(agi.hangup())
                await self._session.close()
                return _ENDED
        raise TypeError(f"unknown action {action!r}")

    async def _gather(self, gather: Gather) -> Event:
        """Prompts with barge-in, then wait: WAIT FOR DIGIT for one key, GET DATA for more."""
        commands: list[str] = []
        for prompt in gather.prompts:
            commands += await self._prompt_commands(prompt, ALL_KEYS)
        heard = await self._play(commands)
        if isinstance(heard, HungUp):
            return heard
        timeout_ms = gather.timeout_s * 1000
        if gather.num_digits == 1:
            if heard is None:
                reply = await self._command(agi.wait_for_digit(timeout_ms))
                heard = await self._key(reply, "WAIT FOR DIGIT")
                if isinstance(heard, HungUp):
                    return heard
            return DigitsReceived(digits=heard) if heard else NoInput()
        if heard == "#":
            return DigitsReceived(digits="")
        first = heard or ""
        more = await self._get_data(timeout_ms, gather.num_digits - len(first))
        if isinstance(more, HungUp):
            return more
        digits = first + more
        return DigitsReceived(digits=digits) if digits else NoInput()

    async def _get_data(self, timeout_ms: int, max_digits: int) -> str | HungUp:
        """More keys via ``GET DATA``: keys as text, ``#`` ends early, ``(timeout)`` none."""
        line = agi.get_data(self._options.gather_filler, timeout_ms, max_digits)
        reply = await self._command(line)
        if reply.dead_channel:
            return HungUp(cause="hung up")
        if reply.failed:
            if await self._channel_gone():
                return HungUp(cause="hung up")
            _log.warning("fastagi %s: GET DATA failed: %s", self._session.label, reply.raw)
            return ""
        self._require_ok("GET DATA", reply)
        return "".join(ch for ch in reply.result if ch in ALL_KEYS)

    async def _hold(self, hold: Hold, state: Any) -> _Rendered:
        """Loop ``MusicOnHold`` in chunks; a -1 here may be a bridge, so never say HungUp."""
        line = agi.exec_app("MusicOnHold", hold.music, str(self._options.hold_chunk_s))
        while True:
            if self._session.hung_up:
                return ChannelLeftAgi(state=state, hold=hold)
            if self._events is not None and not self._events.empty():
                return self._events.get_nowait()
            reply = await self._command(line)
            if reply.failed or reply.dead_channel:
                return ChannelLeftAgi(state=state, hold=hold)
            self._require_ok("EXEC MusicOnHold", reply)

    async def _bridge(self, bridge: Bridge) -> _Rendered:
        target = await self._bridge_target(bridge.call_id) if self._bridge_target else None
        if not target:
            _log.error(
                "fastagi %s: no channel known for call %s; cannot bridge",
                self._session.label,
                bridge.call_id,
            )
            return None
        # "x": the pulled-in party is hung up when the bridge ends, instead of
        # going on in its dialplan; this channel's AGI continues afterwards.
        reply = await self._command(agi.exec_app("Bridge", target, "x"))
        if reply.failed or reply.dead_channel:
            return HungUp(cause="hung up")
        self._require_ok("EXEC Bridge", reply)
        result = await self._command(agi.get_variable("BRIDGERESULT"))
        bridge_result = result.value if result.ok and result.result == "1" else None
        if bridge_result != "SUCCESS":
            _log.warning(
                "fastagi %s: bridge with call %s: BRIDGERESULT=%s",
                self._session.label,
                bridge.call_id,
                bridge_result,
            )
        return None

    async def _record(self, record: Record) -> _Rendered:
        options = self._options
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self._session.uniqueid or "call")
        path = f"{options.record_dir.rstrip('/')}/{name}-{uuid.uuid4().hex[:8]}"
        reply = await self._command(
            agi.record_file(
                path,
                fmt=options.record_format,
                escape_digits="#",
                timeout_ms=record.max_seconds * 1000,
                beep=record.beep,
                silence_s=options.record_silence_s,
            )
        )
        if reply.dead_channel:
            return HungUp(cause="hung up")
        self._require_ok("RECORD FILE", reply)
        samples = max(reply.endpos or 0, 0)
        if reply.failed:
            if reply.value != "hangup":
                _log.error("fastagi %s: recording failed: %s", self._session.label, reply.raw)
                return None
            if samples == 0:
                return HungUp(cause="hung up")
            # Hanging up after speaking is the usual end of a voicemail.
        return RecordingFinished(
            url=f"{path}.{options.record_format}",
            duration_s=round(samples / _SAMPLES_PER_SECOND),
        )

    # ---------------------------------------------------------- prompts

    async def _prompt_commands(self, prompt: Prompt, escape: str) -> list[str]:
        if isinstance(prompt, Play):
            return [agi.stream_file(prompt.prompt, escape)]
        path = await self._tts.path_for(prompt.text, prompt.language) if self._tts else None
        if path is not None:
            return [agi.stream_file(path, escape)]
        numbers = _SPOKEN_NUMBER.findall(prompt.text)
        return [
            agi.stream_file(self._options.fallback_prompt, escape),
            *(agi.say_digits(number, escape) for number in numbers),
        ]

    async def _play(self, commands: Sequence[str]) -> _Heard:
        """Run prompt commands until a key interrupts one or the caller is gone."""
        for line in commands:
            verb = " ".join(line.split(" ", 2)[:2])
            heard = await self._key(await self._command(line), verb)
            if heard is not None:
                return heard
        return None

    async def _key(self, reply: AgiReply, what: str) -> _Heard:
        """Read an ASCII-code result; a -1 on a live channel is a prompt that failed to play."""
        if reply.dead_channel:
            return HungUp(cause="hung up")
        if reply.failed:
            if await self._channel_gone():
                return HungUp(cause="hung up")
            _log.warning(
                "fastagi %s: %s failed on a live channel (missing sound?)",
                self._session.label,
                what,
            )
            return None
        self._require_ok(what, reply)
        return reply.digit

    async def _channel_gone(self) -> bool:
        """After a -1: a hang-up, or a file that could not be played? ``CHANNEL STATUS`` says."""
        if self._session.hung_up:
            return True
        reply = await self._command(agi.channel_status())
        return reply.dead_channel or reply.failed or self._session.hung_up

    async def _command(self, line: str) -> AgiReply:
        """A command whose lost connection counts as a dead channel."""
        try:
            return await self._session.command(line)
        except AgiConnectionClosed:
            return AgiReply(code=agi.DEAD_CHANNEL, extra="connection closed")

    @staticmethod
    def _require_ok(what: str, reply: AgiReply) -> None:
        if not reply.ok:
            raise AgiCommandError(what, reply)

