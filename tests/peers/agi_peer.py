"""A FastAGI peer that plays Asterisk 22's side of a connection, byte for byte.

It connects to a FastAGI server, sends the 22-line ``agi_*`` environment block
of the captures (``tests/fixtures/asterisk/*.agi``, LF endings), then answers
each command the way Asterisk did, as a scripted phone:

- ``press={i: "1"}``: the keys are pressed while command ``i`` (0-based index
  in :attr:`AgiPeer.commands`) runs. ``STREAM FILE`` with the key among its
  escape digits answers ``200 result=49 endpos=9760`` (ASCII code), without
  it plays on (``200 result=0 endpos=11360``); ``WAIT FOR DIGIT`` answers the
  ASCII code, ``GET DATA`` the keys as text. Keys nobody read stay buffered.
- ``hang_up_at=i``: the caller hangs up during command ``i``: it returns
  ``200 result=-1`` (``(hangup)`` forms for RECORD FILE), then the unsolicited
  ``HANGUP`` line. Later commands that need a live channel get ``511``;
  ``SET VARIABLE`` still gets ``200 result=1``, ``EXEC`` ``200 result=0``.
- ``pull_at=i`` or :meth:`AgiPeer.pull_into_bridge`: a bridge takes the channel
  away: the same ``-1`` and ``HANGUP`` while the channel lives on.
- ``missing_files``: ``STREAM FILE`` of these answers ``200 result=-1
  endpos=0`` on a live channel, as Asterisk does for a sound it cannot open.
- ``EXEC MusicOnHold`` blocks until :meth:`end_hold_chunk`,
  :meth:`pull_into_bridge` or :meth:`hang_up` (no real waiting in tests);
  with ``hold_scale`` a chunk also ends by itself after its duration times
  ``hold_scale`` (real seconds).
- ``press_on=("listen", keys)``: the keys are pressed while the first command
  that listens for keys runs (a prompt with escape digits, ``WAIT FOR DIGIT``,
  ``GET DATA``); ``("wait", keys)`` only once the prompts are over (``WAIT FOR
  DIGIT``/``GET DATA``): a late key.
- ``on_bridge``: ``EXEC Bridge`` waits for this coroutine, which gets the
  application data and returns the reply line (the bridge lasts until then);
  without it the bridge ends at once with ``200 result=0``.
- ``on_lost``: called when the channel hangs up on this side (not when pulled).
- ``HANGUP`` answers ``200 result=1`` then the unsolicited ``HANGUP``; when the
  server half-closes, one last ``HANGUP`` and the peer closes.

Every command line received is kept in :attr:`commands`, every byte sent in
:attr:`sent`. Deviations from real Asterisk, for tests only: timed commands
answer at once; ``endpos`` values are the captures' constants; ``EXEC
MusicOnHold``/``EXEC Bridge`` on a dead channel answer ``200 result=-1``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

PLAYED_ENDPOS = 11360  # hello-world played to its end (1.42 s at 8 kHz)
INTERRUPTED_ENDPOS = 9760  # demo-congrats cut by a key after 1.2 s
RECORD_ENDPOS = 24000  # 3 s of voicemail
DEAD = "511 Command Not Permitted on a dead channel or intercept routine"
USAGE_LINES = (
    "520-Invalid command syntax.  Proper usage follows:",
    " Usage: STREAM FILE <filename> <escape_digits> [sample offset]",
    "520 End of proper usage.",
)

# Commands that are allowed on a dead channel (the "dead" flag of res_agi).
_DEAD_OK = ("SET VARIABLE", "GET VARIABLE", "GET FULL VARIABLE", "EXEC", "NOOP", "VERBOSE")


def agi_environment(
    *,
    script: str = "hotline",
    request_host: str = "127.0.0.1:4573",
    channel: str = "Local/press_3_1@sim-callers-00000017;1",
    uniqueid: str = "gw-agi-0001",
    callerid: str = "+15557770001",
    calleridname: str = "Caller",
    context: str = "hotline-in",
    extension: str = "s",
    priority: str = "3",
    threadid: str = "140273128769216",
    dnid: str = "unknown",
    args: Sequence[str] = (),
) -> bytes:
    """The environment block of ``fastagi-session.agi`` with the variable fields substituted.

    ``script`` is the path after ``host:port/`` (``hotline/ops`` for
    ``AGI(agi://gw/hotline/ops)``); ``args`` are the AGI application's other
    arguments (``AGI(agi://gw/hotline,ops)``), sent as ``agi_arg_1``... after
    ``agi_threadid``, as res_agi does.
    """
    lines = [
        "agi_network: yes",
        f"agi_network_script: {script}",
        f"agi_request: agi://{request_host}/{script}",
        f"agi_channel: {channel}",
        "agi_language: en",
        "agi_type: Local",
        f"agi_uniqueid: {uniqueid}",
        "agi_version: 22.10.1",
        f"agi_callerid: {callerid}",
        f"agi_calleridname: {calleridname}",
        "agi_callingpres: 0",
        "agi_callingani2: 0",
        "agi_callington: 0",
        "agi_callingtns: 0",
        f"agi_dnid: {dnid}",
        "agi_rdnis: unknown",
        f"agi_context: {context}",
        f"agi_extension: {extension}",
        f"agi_priority: {priority}",
        "agi_enhanced: 0.0",
        "agi_accountcode: ",
        f"agi_threadid: {threadid}",
        *(f"agi_arg_{index}: {value}" for index, value in enumerate(args, start=1)),
    ]
    return ("\n".join(lines) + "\n\n").encode()


def split_args(line: str) -> list[str]:
    """Split a command line like res_agi: on spaces, double quotes group (and vanish)."""
    args: list[str] = []
    current: list[str] = []
    quoted = False
    started = False
    for ch in line:
        if ch == '"':
            quoted = not quoted
            started = True
        elif ch == " " and not quoted:
            if started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if started:
        args.append("".join(current))
    return args


class AgiPeer:
    """Asterisk's side of one FastAGI connection, scripted."""

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        press: Mapping[int, str] | None = None,
        hang_up_at: int | None = None,
        pull_at: int | None = None,
        missing_files: frozenset[str] = frozenset(),
        press_on: tuple[str, str] | None = None,
        hold_scale: float | None = None,
        on_bridge: Callable[[str], Awaitable[str]] | None = None,
        on_lost: Callable[[], None] | None = None,
        args: Sequence[str] = (),
        **environment: str,
    ) -> None:
        self.host = host
        self.port = port
        self.environment = agi_environment(args=args, **environment)
        self.press = dict(press or {})
        self.hang_up_at = hang_up_at
        self.pull_at = pull_at
        self.missing_files = missing_files
        self.press_on = press_on
        self.hold_scale = hold_scale
        self.on_bridge = on_bridge
        self.on_lost = on_lost
        self.commands: list[str] = []
        self.sent = bytearray()
        self.variables: dict[str, str] = {}
        self.bridged_with: str | None = None
        self.channel_alive = True  # False once the caller hung up (not when pulled away)
        self.agi_dead = False  # True once AGI lost the channel (hang-up or bridge)
        self.closed_by_server = False
        self._keys: list[str] = []
        self._writer: asyncio.StreamWriter | None = None
        self._blocks: list[asyncio.Future[str]] = []
        self._block_started = asyncio.Event()  # replaced by a fresh one at every start
        self._done = asyncio.Event()

    # ------------------------------------------------------------ control

    async def run(self) -> None:
        """Connect, send the environment, answer commands until the server closes."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        try:
            await self._send_raw(self.environment)
            while True:
                try:
                    data = await reader.readuntil(b"\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_server = True
                    with contextlib.suppress(ConnectionError, OSError):
                        await self._send("HANGUP")
                    break
                line = data.decode().rstrip("\n")
                self.commands.append(line)
                await self._answer(len(self.commands) - 1, line)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._done.set()

    @property
    def connected(self) -> bool:
        """The FastAGI connection is open (from the connect until it is closed)."""
        return self._writer is not None and not self._done.is_set()

    async def wait_done(self) -> None:
        await self._done.wait()

    async def wait_blocking(self, count: int = 1) -> None:
        """Wait until the ``count``-th blocking command (MusicOnHold) has started."""
        while len(self._blocks) < count:
            await self._block_started.wait()

    async def pull_into_bridge(self) -> None:
        """A bridge takes the channel: the running blocking command returns -1, then HANGUP."""
        await self._interrupt("pull")

    async def hang_up(self) -> None:
        """The caller hangs up now: a running blocking command returns -1; else a bare HANGUP."""
        if self._running_block() is not None:
            await self._interrupt("hangup")
            return
        assert self._writer is not None, "hang_up() before the peer connected"
        self.channel_alive = False
        if not self.agi_dead:
            self.agi_dead = True
            with contextlib.suppress(ConnectionError, OSError):
                await self._send("HANGUP")

    async def end_hold_chunk(self) -> None:
        """The running MusicOnHold reached its duration: ``200 result=0``."""
        await self._interrupt("end")

    def _running_block(self) -> asyncio.Future[str] | None:
        if self._blocks and not self._blocks[-1].done():
            return self._blocks[-1]
        return None

    async def _interrupt(self, how: str) -> None:
        """Resolve the running blocking command, waiting for one to start if needed."""
        while (block := self._running_block()) is None:
            await self._block_started.wait()
        block.set_result(how)

    # ------------------------------------------------------------ replies

    async def _answer(self, index: int, line: str) -> None:
        args = split_args(line)
        verb = " ".join(args[:2]).upper()
        self._keys.extend(self.press.get(index, ""))
        if self.press_on is not None and self._listens(self.press_on[0], verb, args):
            self._keys.extend(self.press_on[1])
            self.press_on = None
        if self.agi_dead:
            await self._answer_dead(verb, args)
            return
        if index == self.pull_at:
            await self._lose_channel(self._interrupted_reply(verb), pulled=True)
            return
        if index == self.hang_up_at:
            if self._runs_media(verb, args):
                await self._lose_channel(self._interrupted_reply(verb), pulled=False)
            else:
                await self._lose_channel(None, pulled=False)
                await self._answer_dead(verb, args)
            return
        await self._answer_live(verb, args)

    async def _answer_live(self, verb: str, args: list[str]) -> None:
        head = args[0].upper() if args else ""
        if head == "ANSWER":
            await self._send("200 result=0")
        elif verb == "STREAM FILE":
            if len(args) < 4:
                await self._send(*USAGE_LINES)
                return
            if args[2] in self.missing_files:
                await self._send("200 result=-1 endpos=0")
                return
            key = self._take_escape_key(args[3])
            if key is None:
                await self._send(f"200 result=0 endpos={PLAYED_ENDPOS}")
            else:
                await self._send(f"200 result={ord(key)} endpos={INTERRUPTED_ENDPOS}")
        elif verb in ("SAY DIGITS", "SAY ALPHA", "SAY NUMBER"):
            key = self._take_escape_key(args[3] if len(args) > 3 else "")
            await self._send(f"200 result={ord(key) if key else 0}")
        elif verb == "WAIT FOR":
            key = self._keys.pop(0) if self._keys else None
            await self._send(f"200 result={ord(key) if key else 0}")
        elif verb == "GET DATA":
            max_digits = int(args[4]) if len(args) > 4 else 1024
            digits, complete = self._take_data(max_digits)
            if complete:
                await self._send(f"200 result={digits}")
            else:
                await self._send(f"200 result={digits} (timeout)")
        elif verb == "RECORD FILE":
            key = self._take_escape_key(args[4] if len(args) > 4 else "")
            if key is None:
                await self._send(f"200 result=0 (timeout) endpos={RECORD_ENDPOS}")
            else:
                await self._send(f"200 result={ord(key)} (dtmf) endpos={RECORD_ENDPOS}")
        elif verb == "SET VARIABLE":
            self.variables[args[2]] = args[3] if len(args) > 3 else ""
            await self._send("200 result=1")
        elif verb == "GET VARIABLE":
            await self._send(self._variable_reply(args[2]))
        elif verb == "CHANNEL STATUS":
            await self._send("200 result=6")
        elif head == "EXEC":
            await self._exec(args)
        elif head == "HANGUP":
            self.channel_alive = False
            self.agi_dead = True
            await self._send("200 result=1")
            await self._send("HANGUP")
        else:
            await self._send("510 Invalid or unknown command")

    async def _exec(self, args: list[str]) -> None:
        application = args[1] if len(args) > 1 else ""
        data = args[2] if len(args) > 2 else ""
        if application == "MusicOnHold":
            how = await self._block(self._hold_seconds(data))
            if how == "end":
                await self._send("200 result=0")
            else:
                await self._lose_channel("200 result=-1", pulled=how == "pull")
        elif application == "Bridge":
            self.bridged_with = data.split(",")[0]
            self.variables["BRIDGERESULT"] = "SUCCESS"
            reply = await self.on_bridge(data) if self.on_bridge is not None else "200 result=0"
            if reply.startswith("200 result=-1"):
                await self._lose_channel(reply, pulled=False)
            else:
                await self._send(reply)
        else:
            await self._send("200 result=0")

    async def _answer_dead(self, verb: str, args: list[str]) -> None:
        head = args[0].upper() if args else ""
        if not any(verb.startswith(ok) or head == ok for ok in _DEAD_OK):
            await self._send(DEAD)
        elif verb == "SET VARIABLE":
            self.variables[args[2]] = args[3] if len(args) > 3 else ""
            await self._send("200 result=1")
        elif verb == "GET VARIABLE":
            await self._send(self._variable_reply(args[2]))
        elif head == "EXEC" and len(args) > 1 and args[1] in ("MusicOnHold", "Bridge"):
            await self._send("200 result=-1")
        else:
            await self._send("200 result=0")

    async def _lose_channel(self, reply: str | None, *, pulled: bool) -> None:
        """Reply (if any) to the running command, then the unsolicited HANGUP."""
        if not pulled:
            self.channel_alive = False
            if self.on_lost is not None:
                self.on_lost()
        self.agi_dead = True
        if reply is not None:
            await self._send(reply)
        await self._send("HANGUP")

    async def _block(self, seconds: float | None = None) -> str:
        loop = asyncio.get_running_loop()
        block: asyncio.Future[str] = loop.create_future()
        if seconds is not None:
            loop.call_later(seconds, lambda: block.done() or block.set_result("end"))
        self._blocks.append(block)
        started, self._block_started = self._block_started, asyncio.Event()
        started.set()
        return await block

    # ------------------------------------------------------------ helpers

    def _hold_seconds(self, data: str) -> float | None:
        """How long one ``MusicOnHold "<class>,<seconds>"`` chunk lasts here, if it ends by itself."""
        duration = data.split(",")[1] if "," in data else ""
        if self.hold_scale is None or not duration.isdigit():
            return None
        return int(duration) * self.hold_scale

    @staticmethod
    def _listens(when: str, verb: str, args: list[str]) -> bool:
        """Does this command take keys: any listening command ("listen"), or only after the prompts ("wait")?"""
        if verb in ("WAIT FOR", "GET DATA"):
            return True
        return when == "listen" and verb == "STREAM FILE" and len(args) > 3 and args[3] != ""

    @staticmethod
    def _runs_media(verb: str, args: list[str]) -> bool:
        return verb in (
            "STREAM FILE",
            "WAIT FOR",
            "GET DATA",
            "SAY DIGITS",
            "SAY ALPHA",
            "SAY NUMBER",
            "RECORD FILE",
        ) or (bool(args) and args[0].upper() == "EXEC")

    @staticmethod
    def _interrupted_reply(verb: str) -> str:
        if verb == "STREAM FILE":
            return f"200 result=-1 endpos={INTERRUPTED_ENDPOS}"
        if verb == "RECORD FILE":
            return f"200 result=-1 (hangup) endpos={RECORD_ENDPOS}"
        return "200 result=-1"

    def _variable_reply(self, name: str) -> str:
        if name in self.variables:
            return f"200 result=1 ({self.variables[name]})"
        return "200 result=0"

    def _take_escape_key(self, escape: str) -> str | None:
        """The first buffered key that stops playback; other keys are swallowed."""
        while self._keys:
            key = self._keys.pop(0)
            if key in escape:
                return key
        return None

    def _take_data(self, max_digits: int) -> tuple[str, bool]:
        """GET DATA: up to ``max_digits`` keys, ``#`` ends early; complete unless it timed out."""
        digits = ""
        while self._keys and len(digits) < max_digits:
            key = self._keys.pop(0)
            if key == "#":
                return digits, True
            digits += key
        return digits, len(digits) == max_digits

    async def _send(self, *lines: str) -> None:
        await self._send_raw("".join(f"{line}\n" for line in lines).encode())

    async def _send_raw(self, data: bytes) -> None:
        assert self._writer is not None
        self.sent += data
        self._writer.write(data)
        await self._writer.drain()
