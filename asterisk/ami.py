"""Our AMI client: panoramisk's wire protocol under our own connection handling.

The rest of the gateway talks to Asterisk's manager interface only through
:class:`AmiClient`. panoramisk 1.4 parses the wire format; everything around it
is ours, because of what panoramisk 1.4 does on its own:

- A failed login raises nothing: we read the Login reply, report
  ``auth_failed`` and keep retrying (an operator may fix it).
- It resets ``authenticated_future`` to None as soon as the Login reply has
  been handled, which can happen before the code that awaited the connection
  runs again (a fast PBX answers while the loop is busy). The Login's future
  is kept the moment panoramisk sends it (:attr:`_Connection.login_reply`).
- Its reconnect loop cannot be stopped and re-sends queued actions after a
  reconnect (a timed-out Originate would dial twice). We use one panoramisk
  ``Manager`` per TCP connection with its reconnect and ping switched off, and
  reconnect ourselves with exponential back-off that :meth:`AmiClient.stop`
  really stops.
- Its ping never checks the reply: our watchdog pings and drops a connection
  whose ping goes unanswered (half-open TCP), then reconnects.
- An action sent while disconnected never resolves: every action runs under a
  timeout and fails at once when the connection drops.
- A callback that raises kills its connection, and malformed frames can too:
  frames are parsed defensively, and our callbacks run in a task of their own,
  in arrival order, with their errors logged.
- ``Async`` Originates are sent with ``as_list=False``: the call returns the
  immediate ``Response`` and ``OriginateResponse`` arrives as an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from panoramisk import actions as pk_actions
from panoramisk.ami_protocol import AMIProtocol
from panoramisk.manager import Manager
from panoramisk.message import Message

from asterisk.ami_events import AmiEvent, AmiResponse
from core.phone import mask_numbers_in

logger = logging.getLogger(__name__)

State = Literal["connecting", "connected", "auth_failed", "disconnected", "stopped"]
EventCallback = Callable[[AmiEvent], Awaitable[None] | None]
StateCallback = Callable[[str], None]
ActionValue = str | Sequence[str]

_MAX_BUFFER = 1 << 20  # bytes without a frame end before we give up on the stream


class AmiError(Exception):
    """An action failed. ``message`` is Asterisk's text; ``response`` the reply if any."""

    def __init__(self, message: str, response: AmiResponse | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.response = response


class AmiTimeout(AmiError):
    """No reply within the action timeout."""


class AmiNotConnected(AmiError):
    """Not connected to Asterisk, or the connection dropped before the reply."""


class _Protocol(AMIProtocol):  # type: ignore[misc]  # panoramisk ships no type information
    """panoramisk's protocol with a framing that survives garbage.

    Frames are split on the empty line in bytes and decoded one by one; a frame
    that is neither a response nor an event, or that panoramisk chokes on, is
    logged and dropped instead of killing the connection.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        *frames, self._buffer = (self._buffer + data).split(b"\r\n\r\n")
        for frame in frames:
            self._frame_received(frame)
        if len(self._buffer) > _MAX_BUFFER:
            logger.warning("AMI: dropped %d bytes without a frame end", len(self._buffer))
            self._buffer = b""

    def close(self) -> None:
        # Drop pending actions instead of letting panoramisk queue them for a resend
        # after a reconnect (and log them, phone numbers included): AmiClient has
        # already failed their callers through the connection's ``lost`` future.
        responses = getattr(self, "responses", None)
        if responses:
            responses.clear()
        super().close()

    def _frame_received(self, frame: bytes) -> None:
        text = frame.decode(getattr(self, "encoding", "utf-8"), "replace").strip()
        if text.startswith("Asterisk Call Manager/"):
            banner, _, text = text.partition("\r\n")
            self.version = banner.partition("/")[2].strip()
        if not text:
            return
        try:
            message = Message.from_line(text)
            if message is None:
                logger.warning("AMI: dropped a malformed frame (%d bytes)", len(frame))
                return
            self.handle_message(message)
        except Exception:
            logger.warning("AMI: dropped a frame that could not be handled", exc_info=True)


class _Connection(Manager):  # type: ignore[misc]  # panoramisk ships no type information
    """One AMI TCP connection: a panoramisk Manager whose own reconnect and ping are off."""

    pinger: asyncio.Handle | None  # set by panoramisk

    def __init__(self, **config: Any) -> None:
        super().__init__(protocol_factory=_Protocol, **config)
        loop: asyncio.AbstractEventLoop = config["loop"]
        self.made: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()
        self.connect_task: asyncio.Task[Any] | None = None
        self.login_reply: asyncio.Future[Message] | None = None  # the Login's reply, held from the send on

    def connection_made(self, f: asyncio.Future[Any]) -> None:
        if f.cancelled():
            return
        error = f.exception()
        if error is not None:
            if not self.made.done():
                self.made.set_exception(error)
            return
        super().connection_made(f)
        # panoramisk has just sent the Login and will set authenticated_future back to None once
        # the reply is handled, possibly before whoever awaits ``made`` runs again: keep it now,
        # in the same callback, before any reply can be read.
        self.login_reply = self.authenticated_future
        if not self.made.done():
            self.made.set_result(None)

    def connection_lost(self, exc: object) -> None:
        # Replaces panoramisk's: no reconnect from here, AmiClient decides.
        self._connected = False
        if self.pinger is not None:
            self.pinger.cancel()
            self.pinger = None
        reason = "Asterisk shut down" if isinstance(exc, Message) else "connection lost"
        if isinstance(exc, Exception):
            reason = f"connection lost: {exc}"
        self.mark_lost(reason)

    def ping(self) -> None:
        """Disabled: AmiClient's watchdog pings and checks the reply."""

    def mark_lost(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)

    def abort(self, reason: str) -> None:
        """Close at once (no Logoff, no flush) and fail whatever waits for a reply."""
        if self.connect_task is not None:
            self.connect_task.cancel()
        protocol = self.protocol
        self.close()
        transport = getattr(protocol, "transport", None)
        if transport is not None:
            transport.abort()
        self.awaiting_actions.clear()
        self.mark_lost(reason)


class _AuthFailed(Exception):
    pass


class AmiClient:
    """A supervised AMI connection: login check, watchdog, back-off, routed events.

    ``start()`` returns at once; connecting, logging in and reconnecting go on in
    the background, so an Asterisk that is down never blocks the gateway.
    Events reach ``on_event`` and the callbacks registered with
    :meth:`subscribe`, one at a time and in arrival order; keep them short.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        action_timeout_s: float = 5.0,
        ping_interval_s: float = 10.0,
        reconnect_backoff: tuple[float, float] = (0.5, 30.0),
        on_event: EventCallback | None = None,
        on_state_change: StateCallback | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._secret = secret
        self._action_timeout_s = action_timeout_s
        self._ping_interval_s = ping_interval_s
        self._backoff_initial, self._backoff_max = reconnect_backoff
        self._on_event = on_event
        self._on_state_change = on_state_change
        self._state: State = "disconnected"
        self.last_error: str | None = None
        self._connection: _Connection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[AmiEvent] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._subscribers: dict[str, list[tuple[object, EventCallback]]] = {}
        self._stopped = False

    # ------------------------------------------------------------ lifecycle

    @property
    def state(self) -> State:
        return self._state

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._stopped:
            raise RuntimeError("AmiClient was stopped; create a new one")
        if self._runner is not None:
            return
        self._dispatcher = asyncio.create_task(self._dispatch_events(), name="ami-events")
        self._runner = asyncio.create_task(self._run(), name="ami-connection")

    async def stop(self) -> None:
        """Stop for good: no more reconnects; log off if connected, then close. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        current = asyncio.current_task()
        runner, self._runner = self._runner, None
        if runner is not None and runner is not current:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._state == "connected":
                with contextlib.suppress(AmiError):
                    await self._request(connection, {"Action": "Logoff"}, min(self._action_timeout_s, 1.0))
            connection.abort("client stopped")
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None and dispatcher is not current:
            dispatcher.cancel()
            await asyncio.gather(dispatcher, return_exceptions=True)
        self._set_state("stopped")
        logger.info("AMI client for %s stopped", self.address)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until logged in; raises :class:`AmiNotConnected` after ``timeout`` seconds."""
        if self._stopped:
            raise AmiNotConnected(f"AMI client for {self.address} is stopped")
        try:
            async with asyncio.timeout(timeout):  # not wait_for: on Python 3.11 it can swallow a cancel
                await self._connected.wait()
        except TimeoutError:
            detail = f": {self.last_error}" if self.last_error else ""
            raise AmiNotConnected(f"not connected to AMI at {self.address} ({self._state}{detail})") from None

    # -------------------------------------------------------------- actions

    async def send_action(self, action: Mapping[str, ActionValue]) -> AmiResponse:
        """Send one action and return its reply.

        Raises :class:`AmiError` on ``Response: Error``, :class:`AmiTimeout`
        after ``action_timeout_s`` and :class:`AmiNotConnected` when there is no
        connection or it drops before the reply. List actions (e.g.
        CoreShowChannels) return their items in ``AmiResponse.events``.
        """
        connection = self._connection
        if connection is None or self._state != "connected":
            raise AmiNotConnected(f"not connected to AMI at {self.address} ({self._state})")
        return await self._request(connection, action, self._action_timeout_s)

    async def originate(
        self,
        *,
        channel: str,
        channel_id: str,
        other_channel_id: str,
        timeout_ms: int,
        caller_id: str | None,
        context: str | None = None,
        exten: str | None = None,
        priority: int = 1,
        application: str | None = None,
        data: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> AmiResponse:
        """Queue an ``Async`` Originate; its result comes later as an ``OriginateResponse`` event.

        The legs carry ``channel_id`` (``;1``, the leg we control, where DTMF shows)
        and ``other_channel_id`` (``;2``) as their Uniqueid. The ActionID is
        ``channel_id``. Give either ``context`` and ``exten``, or ``application``.
        """
        if application is None and (context is None or exten is None):
            raise ValueError("originate needs context and exten, or application")
        if application is not None and (context is not None or exten is not None):
            raise ValueError("originate takes context/exten or application, not both")
        action: dict[str, ActionValue] = {
            "Action": "Originate",
            "ActionID": channel_id,
            "Channel": channel,
            "Timeout": str(timeout_ms),
            "Async": "true",
            "ChannelId": channel_id,
            "OtherChannelId": other_channel_id,
        }
        if application is not None:
            action["Application"] = application
            if data is not None:
                action["Data"] = data
        else:
            action.update({"Context": str(context), "Exten": str(exten), "Priority": str(priority)})
        if caller_id is not None:
            action["CallerID"] = caller_id
        if variables:
            action["Variable"] = [f"{key}={value}" for key, value in variables.items()]
        logger.info("AMI originate %s as %s", mask_numbers_in(channel), channel_id)
        return await self.send_action(action)

    async def hangup(self, channel_or_id: str, cause: int = 16) -> AmiResponse:
        """Hang up a channel by name or by Uniqueid (a ChannelId works, even while ringing)."""
        return await self.send_action({"Action": "Hangup", "Channel": channel_or_id, "Cause": str(cause)})

    async def bridge(self, channel1: str, channel2: str) -> AmiResponse:
        """Bridge two channels (by name) with the AMI ``Bridge`` action, without a tone."""
        return await self.send_action({"Action": "Bridge", "Channel1": channel1, "Channel2": channel2, "Tone": "no"})

    # --------------------------------------------------------------- events

    def subscribe(
        self, uniqueid: str, callback: EventCallback, *, other_uniqueid: str | None = None
    ) -> Callable[[], None]:
        """Deliver the events of one call to ``callback``; returns the unsubscribe function.

        An event belongs to the call when its ``Uniqueid`` (or ``DestUniqueid``,
        or the ``ActionID`` of an ``OriginateResponse``) is ``uniqueid`` (the
        ChannelId) or ``other_uniqueid`` (the OtherChannelId, ``<uniqueid>-b``
        by default). Subscribe before originating.
        """
        token = object()
        keys = (uniqueid, other_uniqueid if other_uniqueid is not None else f"{uniqueid}-b")
        for key in keys:
            self._subscribers.setdefault(key, []).append((token, callback))

        def unsubscribe() -> None:
            for key in keys:
                remaining = [entry for entry in self._subscribers.get(key, []) if entry[0] is not token]
                if remaining:
                    self._subscribers[key] = remaining
                else:
                    self._subscribers.pop(key, None)

        return unsubscribe

    def _raw_event(self, manager: Manager, message: Message) -> None:
        """panoramisk's callback: must never raise (it would kill the connection)."""
        try:
            if isinstance(manager, _Connection) and manager.lost.done():
                return  # a connection we already gave up on
            self._events.put_nowait(AmiEvent.from_headers(_headers(message)))
        except Exception:
            logger.exception("AMI: could not queue an event")

    async def _dispatch_events(self) -> None:
        while not self._stopped:
            event = await self._events.get()
            for callback in self._targets(event):
                try:
                    result = callback(event)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    logger.exception("AMI event callback failed on %s %s", event.name, event.uniqueid)

    def _targets(self, event: AmiEvent) -> list[EventCallback]:
        keys = [event.uniqueid, event.get("DestUniqueid")]
        if event.name == "OriginateResponse":
            keys.append(event.action_id)
        targets: list[EventCallback] = [self._on_event] if self._on_event is not None else []
        seen: set[int] = set()
        for key in keys:
            for token, callback in self._subscribers.get(key, []) if key else []:
                if id(token) not in seen:
                    seen.add(id(token))
                    targets.append(callback)
        return targets

    # ----------------------------------------------------------- connection

    def _set_state(self, state: State) -> None:
        if state == self._state:
            return
        self._state = state
        if state == "connected":
            self._connected.set()
        else:
            self._connected.clear()
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:
                logger.exception("AMI state callback failed")

    def _failed(self, state: State, error: str, level: int, message: str, *args: object) -> None:
        """Record a failed attempt; log it loudly once, then quietly while it repeats."""
        logger.log(level if error != self.last_error else logging.DEBUG, message, *args)
        self.last_error = error
        self._set_state(state)

    def _backoff(self, attempt: int) -> float:
        return float(min(self._backoff_max, self._backoff_initial * (2 ** min(attempt, 30))))

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._set_state("connecting")
            try:
                connection = await self._open()
            except _AuthFailed:
                self._failed(
                    "auth_failed",
                    f"authentication failed for user {self._username}",
                    logging.ERROR,
                    "AMI login to %s as user %r failed: authentication failed (check the AMI secret); retrying",
                    self.address,
                    self._username,
                )
            except (OSError, AmiError, TimeoutError) as exc:
                error = _describe(exc)
                self._failed("disconnected", error, logging.WARNING, "AMI %s unavailable: %s", self.address, error)
            except Exception as exc:
                logger.exception("AMI connection to %s failed unexpectedly", self.address)
                self.last_error = _describe(exc)
                self._set_state("disconnected")
            else:
                attempt = 0
                self._connection = connection
                self.last_error = None
                logger.info("AMI connected to %s as user %r", self.address, self._username)
                self._set_state("connected")
                try:
                    reason = await self._supervise(connection)
                except Exception:
                    logger.exception("AMI watchdog for %s failed", self.address)
                    reason = "watchdog failed"
                    connection.abort(reason)
                self._connection = None
                self.last_error = reason
                logger.warning("AMI connection to %s lost (%s); reconnecting", self.address, reason)
                self._set_state("disconnected")
            delay = self._backoff(attempt)
            attempt += 1
            await asyncio.sleep(delay)

    async def _open(self) -> _Connection:
        """Connect and log in; the connection is closed again on any failure."""
        connection = self._new_connection()
        try:
            await self._connect(connection)
            await self._logged_in(connection)
        except BaseException:
            connection.abort("login did not complete")
            raise
        return connection

    def _new_connection(self) -> _Connection:
        connection = _Connection(
            host=self._host,
            port=self._port,
            username=self._username,
            secret=self._secret,
            events="on",
            loop=asyncio.get_running_loop(),
            ping_delay=3600,
            reconnect_timeout=3600,
        )
        connection.register_event("*", self._raw_event)
        return connection

    async def _connect(self, connection: _Connection) -> None:
        """Open the TCP connection; panoramisk sends the Login as soon as it is up."""
        connection.connect_task = connection.connect()
        await asyncio.wait_for(connection.made, self._action_timeout_s)

    async def _logged_in(self, connection: _Connection) -> None:
        """Wait for the reply to the Login sent on connect; raises unless it is a success.

        The reply may well have been handled already (then its future is done).
        """
        login = connection.login_reply
        if login is None:
            raise AmiNotConnected("no login was sent")
        reply = await self._wait_reply(connection, login, "Login", self._action_timeout_s)
        first = reply[0] if isinstance(reply, list) and reply else reply
        if not (isinstance(first, Message) and first.success):
            raise _AuthFailed()

    async def _supervise(self, connection: _Connection) -> str:
        """Watch a live connection; returns why it ended. Drops it when a ping goes unanswered."""
        while True:
            done, _ = await asyncio.wait({connection.lost}, timeout=self._ping_interval_s)
            if done:
                return connection.lost.result()
            try:
                await self._request(connection, {"Action": "Ping"}, self._action_timeout_s)
            except AmiTimeout:
                reason = f"no reply to ping within {self._action_timeout_s:g} s (half-open connection)"
                connection.abort(reason)
                return reason
            except AmiNotConnected:
                return connection.lost.result() if connection.lost.done() else "connection lost"
            except AmiError:
                pass  # an error reply still proves the connection is alive

    async def _request(self, connection: _Connection, action: Mapping[str, ActionValue], timeout: float) -> AmiResponse:
        name = str(next((v for k, v in action.items() if k.lower() == "action"), ""))
        request = pk_actions.Action(dict(action), as_list=False if name.lower() == "originate" else None)
        try:
            future = connection.send_action(request, as_list=request.as_list)
        except Exception as exc:
            raise AmiNotConnected(f"could not send {name}: {exc}") from exc
        try:
            reply = await self._wait_reply(connection, future, name, timeout)
        finally:
            if not future.done():
                future.cancel()
                responses = getattr(connection.protocol, "responses", {})
                responses.pop(request.action_id, None)
        messages = reply if isinstance(reply, list) else [reply]
        first = messages[0]
        response = AmiResponse(
            headers=dict(_headers(first)),
            events=tuple(AmiEvent.from_headers(_headers(m)) for m in messages[1:]),
        )
        if not first.success:
            raise AmiError(response.message or f"{name} failed ({response.response})", response)
        return response

    async def _wait_reply(self, connection: _Connection, future: asyncio.Future[Any], name: str, timeout: float) -> Any:
        done, _ = await asyncio.wait({future, connection.lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if future in done:
            return future.result()
        if connection.lost.done():
            raise AmiNotConnected(f"{name}: {connection.lost.result()}")
        raise AmiTimeout(f"no reply to {name} within {timeout:g} s")


def _headers(message: Message) -> list[tuple[str, str]]:
    """A panoramisk message as header pairs (first value of a repeated header)."""
    return [(k, v[0] if isinstance(v, list) else str(v)) for k, v in message.items() if k != "content"]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError) or "[errno 111]" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "connection timed out"
    if isinstance(exc, AmiError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
