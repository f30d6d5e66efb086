"""Makes "stop paging" and "send this page" mutually exclusive.

A send checks that its page is still wanted, then hands it to a provider; the check and the hand-over
are separated by awaits. Without a gate an acknowledgement can commit and answer 200 in between, and
the call reaches the provider after the person was told paging had stopped. With it, stopping a page
either withdraws it before the provider sees it, or waits until the send in progress has finished (so
it reached the provider before the acknowledgement answered, and is then cancelled there).
"""

from __future__ import annotations

import asyncio


class SendGate:
    def __init__(self) -> None:
        self._sending: dict[str, tuple[asyncio.Future[None], asyncio.Task[object] | None]] = {}
        self._withdrawn: set[str] = set()

    def begin(self, key: str) -> None:
        """A send of ``key`` starts in this task (call before the send's first await)."""
        self._sending[key] = (asyncio.get_running_loop().create_future(), asyncio.current_task())

    def withdrawn(self, key: str) -> bool:
        """Whether the send in progress must stop now (check right before handing it to a provider)."""
        return key in self._withdrawn

    def end(self, key: str) -> None:
        """The send of ``key`` is over: handed to the provider, dropped or failed."""
        self._withdrawn.discard(key)
        done, _ = self._sending.pop(key, (None, None))
        if done is not None and not done.done():
            done.set_result(None)

    def sending(self, key: str) -> bool:
        return key in self._sending

    async def withdraw(self, key: str, *, wait_s: float = 1.0) -> None:
        """Stop the send of ``key`` if it has not reached the provider yet; else wait until it has.

        The wait is bounded: a provider that does not answer within ``wait_s`` had the request on the
        wire before this returns anyway, and the sender hangs the call up itself once it returns
        (``withdrawn`` stays true for it). So an engineer's press of 1 is answered at once even while
        a dial to someone else hangs.
        """
        if key not in self._sending:
            return
        done, sender = self._sending[key]
        self._withdrawn.add(key)
        if sender is asyncio.current_task():  # a provider reporting from inside the send must not wait on it
            return
        try:
            async with asyncio.timeout(wait_s):  # not wait_for: on Python 3.11 it can swallow a cancel
                await asyncio.shield(done)
        except TimeoutError:
            pass
