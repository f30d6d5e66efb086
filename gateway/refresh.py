"""Reading shared state again on a cycle: the safety net beside the pushes between gateways (LISTEN/NOTIFY),
for a push that was lost. The push stays the fast path; this only bounds how long a lost one matters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def read_again_every(every_s: float, read: Callable[[], Awaitable[object]], *, what: str,
                           sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Run ``read`` every ``every_s`` seconds until cancelled; a failed read (the store away) is logged and
    tried again at the next round."""
    while True:
        await sleep(every_s)
        try:
            await read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s: could not read them again (%s); trying again in %.0f s", what,
                        str(exc) or type(exc).__name__, every_s)
