"""The in-process event hub the console's browsers listen to (server-sent events).

Services do not know about it: the store they write through is wrapped (:func:`watched`) so that every
committed change to an alert, its pages or its timeline is published as ``("alert", {"id": ...})``; the
sandbox reports its phones through a callback. The run-time maintenance windows read again (after a window is
added or ended, here or on another gateway, and every minute) are ``("maintenance", {})``, a heartbeat's check-in
``("heartbeat", {})``. An event says only *what* changed; a page that hears it
fetches its fresh part from the server, so a missed event costs nothing but a moment (on reconnect a page
fetches again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from gateway.cluster import Peers
from gateway.store import Store

log = logging.getLogger(__name__)

Event = tuple[str, dict[str, Any]]
_QUEUE = 256  # a browser that falls this far behind gets a "resync" and fetches its page again
# Streams held open at once. Each costs a connection: a browser has 6 per host over HTTP/1.1, so a few tabs
# of one session must not hold them all (the page closes its stream while hidden), nor clients the gateway.
MAX_PER_SESSION = 4
MAX_STREAMS = 200


class EventHub:
    """Every open event stream's queue; ``publish`` puts an event on each."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()
        self._owners: dict[str, int] = {}
        self.closed = False

    def open_stream(self, owner: str) -> asyncio.Queue[Event] | None:
        """A queue for one browser's stream, or None when ``owner`` (a session) or everyone holds too many."""
        if self._owners.get(owner, 0) >= MAX_PER_SESSION or sum(self._owners.values()) >= MAX_STREAMS:
            return None
        self._owners[owner] = self._owners.get(owner, 0) + 1
        return self.subscribe()

    def close_stream(self, owner: str, queue: asyncio.Queue[Event]) -> None:
        self.unsubscribe(queue)
        left = self._owners.get(owner, 0) - 1
        if left > 0:
            self._owners[owner] = left
        else:
            self._owners.pop(owner, None)

    def subscribe(self) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._queues.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def publish(self, topic: str, **data: Any) -> None:
        """Never blocks and never raises into the service that changed something."""
        for queue in list(self._queues):
            try:
                queue.put_nowait((topic, data))
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(("resync", {}))

    def close(self) -> None:
        """The gateway is stopping: every stream ends now (an open one would hold the shutdown up)."""
        self.closed = True
        for queue in list(self._queues):
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(("close", {}))


# Store methods that change an alert, and how to find the alert's id in their arguments and result.
_BY_ARGUMENT = ("change_status", "set_priority", "begin_escalation", "reschedule", "start_step", "add_pages",
                "release_hold", "extend_hold")


class _Watched:
    """A store whose alert-changing writes are published after they return (that is, once committed)."""

    def __init__(self, store: Store, hub: EventHub) -> None:
        self._store = store
        self._hub = hub

    def __getattr__(self, name: str) -> Any:
        found = self._wrap(name)
        if callable(found):
            setattr(self, name, found)  # looked up once: the next call finds it without __getattr__
        return found

    def _wrap(self, name: str) -> Any:
        inner = getattr(self._store, name)
        if name in _BY_ARGUMENT:
            async def by_argument(alert_id: int, *args: Any, **kwargs: Any) -> Any:
                result = await inner(alert_id, *args, **kwargs)
                self._hub.publish("alert", id=alert_id)
                return result
            return by_argument
        if name in ("create_alert", "create_held_alert"):
            async def created(*args: Any, **kwargs: Any) -> Any:
                result = await inner(*args, **kwargs)
                self._hub.publish("alert", id=result[0].id)
                return result
            return created
        if name == "add_timeline":
            async def noted(entry: Any) -> None:
                await inner(entry)
                self._hub.publish("alert", id=entry.alert_id)
            return noted
        if name == "mark_page_sent":
            async def sent(page_id: int, *args: Any, **kwargs: Any) -> None:
                await inner(page_id, *args, **kwargs)
                if self._hub.listeners:  # the page's alert costs a read: only when someone is watching
                    found = await self._store.get_page(page_id)
                    if found is not None:
                        self._hub.publish("alert", id=found.alert_id)
            return sent
        if name == "list_maintenance":
            # The run-time windows are read again after a window is added or ended (here, or on another
            # gateway: its push), and every minute: the Maintenance page fetches its part then. (That page
            # reads the service's copy, never this, or each fetch would set off another.)
            async def windows(*args: Any, **kwargs: Any) -> Any:
                result = await inner(*args, **kwargs)
                self._hub.publish("maintenance")
                return result
            return windows
        if name == "heartbeat_seen":
            async def seen(*args: Any, **kwargs: Any) -> None:
                await inner(*args, **kwargs)
                self._hub.publish("heartbeat")
            return seen
        if name == "finish_page":
            async def paged(page_id: int, *args: Any, **kwargs: Any) -> Any:
                result = await inner(page_id, *args, **kwargs)
                if result is not None:  # None: it was finished already
                    self._hub.publish("alert", id=result.alert_id)
                return result
            return paged
        return inner


def watched(store: Store, hub: EventHub) -> Store:
    """``store`` with every alert change published on ``hub``."""
    return cast(Store, _Watched(store, hub))


def phone_listener(hub: EventHub) -> Callable[[str], None]:
    """The sandbox's callback: a simulated phone changed."""
    return lambda number: hub.publish("phone", number=number)


class _Relayed:
    """Peers (gateway/cluster.py) that also tell this gateway's browsers what other gateways changed."""

    def __init__(self, peers: Peers, hub: EventHub) -> None:
        self._peers = peers
        self._hub = hub

    def __getattr__(self, name: str) -> Any:
        return getattr(self._peers, name)

    async def alert_closed_elsewhere(self, alert_id: int) -> None:
        await self._peers.alert_closed_elsewhere(alert_id)
        self._hub.publish("alert", id=alert_id)


def relayed(peers: Peers, hub: EventHub) -> Peers:
    """``peers`` whose 'an alert was acknowledged or resolved on another gateway' also reaches the console.

    Other changes made on another gateway (a new alert, a page's outcome) reach a browser when its event
    stream reconnects or the next change here makes it fetch its page again."""
    return cast(Peers, _Relayed(peers, hub))


#: the console's hub, on the app (absent when the console is not mounted)
HUB = web.AppKey("console_hub", EventHub)
