"""A loopback provider peer in its own process: prints one JSON line per dial it receives.

    python -m bench.peer twilio   ->  "READY <port>", then {"t": <monotonic>, "call_id": ..., "to": ...} lines
    python -m bench.peer ami      ->  "READY <port>", then the same for each AMI Originate
    python -m bench.peer twilio --end-after-ms 100 [--end-as no-answer|completed] [--end-after-ms-to NUMBER=MS]

``--end-after-ms`` makes the Twilio peer end each call it creates that long
after its create, as Twilio would: the status callbacks the create subscribed
to, then the final one (``no-answer``: it rang out; ``completed``: answered at
once, its TwiML fetched, then hung up), so the gateway frees the line.
``--end-after-ms-to`` gives calls to one number their own time (repeatable).

The time is ``time.monotonic()`` taken when the request reached the peer; the
benchmark compares it with its own monotonic clock (the same on one machine).
The Twilio peer also reports each call update (``"kind": "update"``: a REST
redirect or hang-up), and reads commands on stdin, one JSON object a line:
``{"incoming": <CallSid>, "from": ..., "to": ...}`` makes a call that reaches
one of the account's numbers known to the API (so the gateway can redirect it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bench.loadgen import LoadGenerator, encode
from tests.peers.ami_server import FakeAsterisk
from tests.peers.twilio_api import EndAs, FakeTwilioApi

AMI_SECRET = "bench-secret"


class TimedTwilioApi(FakeTwilioApi):
    """The loopback Twilio API, reporting when each Calls.json POST arrived.

    Its requests to the gateway (status callbacks) go over the load generator's kept-alive raw HTTP
    connections, cheaper than aiohttp's client: the peer shares the machine's cores with the gateways.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._senders: dict[tuple[str, int], LoadGenerator] = {}

    async def _send(self, method: str, url: str, headers: dict[str, str], body: bytes) -> int:
        parts = urlsplit(url)
        where = (parts.hostname or "127.0.0.1", parts.port or 80)
        sender = self._senders.get(where)
        if sender is None:
            sender = self._senders[where] = LoadGenerator(where[0], where[1], max_connections=64)
        try:
            status, _ = await sender.one(encode(method, f"{parts.path}?{parts.query}" if parts.query else parts.path,
                                                body, headers))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            return 0
        return status

    async def _create_call(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        response = await super()._create_call(request)
        form = self.calls[-1]
        call_id = form.get("Url", "").rstrip("/").split("/")[-2]
        _emit({"t": arrived, "call_id": call_id, "to": form.get("To", ""), "sid": self.call_sids[-1],
               "form": {k: v for k, v in form.items() if k != "StatusCallbackEvent"}})
        return response

    async def _update_call(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        response = await super()._update_call(request)
        sid, form = self.updates[-1]
        _emit({"kind": "update", "t": arrived, "sid": sid, "form": dict(form)})
        return response


async def _commands(api: FakeTwilioApi) -> None:
    """Apply the bench's commands from stdin (see the module's docstring)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async for line in reader:
        command = json.loads(line)
        if "incoming" in command:
            api.incoming(command["incoming"], from_=command["from"], to=command["to"])
        elif "hang_to" in command:  # Twilio accepts every create to this number and never answers
            api.hang_creates_to(command["hang_to"])


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _ami() -> None:
    pbx = FakeAsterisk(username="gateway", secret=AMI_SECRET, time_scale=0.05)
    await pbx.start()
    print(f"READY {pbx.port}", flush=True)
    seen = 0
    while True:  # report Originates as they arrive (polled: the fake keeps them in arrival order)
        await asyncio.sleep(0.001)
        actions = pbx.received_actions
        while seen < len(actions):
            action = actions[seen]
            seen += 1
            if action.get("Action", "").lower() == "originate":
                _emit({"t": time.monotonic(), "call_id": action.get("ChannelId", "").removeprefix("gw-"),
                       "to": action.get("Channel", "")})


async def _twilio(end_after_ms: float | None, end_as: EndAs, end_after_ms_to: dict[str, float]) -> None:
    api = TimedTwilioApi(end_calls_after_s=None if end_after_ms is None else end_after_ms / 1000,
                         end_calls_as=end_as, end_after_s_to={n: ms / 1000 for n, ms in end_after_ms_to.items()})
    await api.start()
    print(f"READY {api.base_url.rsplit(':', 1)[1]}", flush=True)
    await _commands(api)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["twilio", "ami"])
    parser.add_argument("--end-after-ms", type=float, help="Twilio: end each call this long after its create")
    parser.add_argument("--end-as", choices=["no-answer", "completed"], default="no-answer",
                        help="Twilio: how calls end (default: no-answer)")
    parser.add_argument("--end-after-ms-to", action="append", default=[], metavar="NUMBER=MS",
                        help="Twilio: calls to NUMBER end after MS instead")
    args = parser.parse_args()
    end_after_to = {number: float(ms) for number, _, ms in (item.partition("=") for item in args.end_after_ms_to)}
    try:
        asyncio.run(_twilio(args.end_after_ms, args.end_as, end_after_to) if args.kind == "twilio" else _ami())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
