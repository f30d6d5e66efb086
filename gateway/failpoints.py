"""Named points where the crash test kills the gateway, to prove that nothing is lost there.

``GATEWAY_CRASH_AT=<point>[:<n>]`` makes the process ``kill -9`` itself the n-th time (default: the first)
it reaches that point. Unset (always, outside the crash test), each point is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "alert-committed",  # an alert and its first step are durable; the client has not had its 2xx yet
    "step-committed",  # a later step's pages are written as due; none has been sent
    "page-placed",  # the provider took a call; the page is not yet marked sent
)

_spec = os.environ.get("GATEWAY_CRASH_AT", "")
_point, _, _nth = _spec.partition(":")
_remaining = int(_nth or "1") if _point else 0


def reached(point: str) -> None:
    """Kill this process at once (no cleanup, as ``kill -9``) if the crash test chose ``point``."""
    global _remaining
    if point != _point or _remaining <= 0:
        return
    _remaining -= 1
    if _remaining == 0:
        os.kill(os.getpid(), signal.SIGKILL)
