"""A loopback provider peer in its own process: prints one JSON line per dial it receives.

    python -m bench.peer twilio   ->  "READY <port>", then {"t": <monotonic>, "call_id": ..., "to": ...} lines

The time is ``time.monotonic()`` taken when the request reached the peer; the
benchmark compares it with its own monotonic clock (the same on one machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from aiohttp import web

from tests.peers.twilio_api import FakeTwilioApi


class TimedTwilioApi(FakeTwilioApi):
    """The loopback Twilio API, reporting when each Calls.json POST arrived."""

    async def _create_call(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        response = await super()._create_call(request)
        form = self.calls[-1]
        call_id = form.get("Url", "").rstrip("/").split("/")[-2]
        _emit({"t": arrived, "call_id": call_id, "to": form.get("To", ""), "sid": self.call_sids[-1]})
        return response


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _twilio() -> None:
    api = TimedTwilioApi()
    await api.start()
    print(f"READY {api.base_url.rsplit(':', 1)[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["twilio"])
    parser.parse_args()
    try:
        asyncio.run(_twilio())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
