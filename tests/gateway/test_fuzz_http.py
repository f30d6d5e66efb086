"""Property-based requests against every endpoint: never a 5xx, and a rejected request changes nothing.

Requests are written byte for byte on a socket (so headers can hold non-UTF-8 bytes and bodies anything)
to the real app on a loopback port: every JSON endpoint with and without valid tokens, and the Twilio
webhooks with and without valid signatures; arbitrary headers, random bytes, random JSON, deep nesting,
lone surrogates, bodies shaped like the real payloads with a field replaced. After each rejected request
(4xx) the whole store (every row of every table) and every sandbox phone must be exactly as before.
After an accepted POST the state is brought back to a quiet point (every open alert resolved, every call
hung up, then one alert triggered and ringing again) by waiting on conditions, never on time.

Deterministic (hypothesis derandomized, no example database) and bounded (a few thousand requests).
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import sqlite3
import threading
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.web.keys import SANDBOX, STORE
from gateway.web.openapi import OPERATIONS
from tests.gateway.test_openapi import LiveGateway
from tests.peers.twilio_api import DEFAULT_AUTH_TOKEN, FakeTwilioApi
from tests.peers.twilio_driver import twilio_signature
from tests.support import ALICE, BASE_CONFIG, CAROL, FIXTURES, TOKEN

JSON_EXAMPLES = 1500
TWILIO_EXAMPLES = 600
PUBLIC = "https://gateway.example.com"
ROUTING_KEY = "dba-routing-key-0000000000000000"

# ----------------------------------------------------------------------------- the wire


@dataclass(frozen=True)
class Sent:
    method: str
    target: str  # path and query, as on the request line (ASCII)
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def send(port: int, request: Sent) -> tuple[int, bytes]:
    """Write ``request`` as raw HTTP/1.1 and read the answer to the end: (status, body)."""
    head = f"{request.method} {request.target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n".encode()
    head += b"".join(name + b": " + value + b"\r\n" for name, value in request.headers)
    head += b"Content-Length: " + str(len(request.body)).encode() + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head + request.body)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    while answer.startswith(b"HTTP/1.1 100 "):  # the interim answer to Expect: 100-continue
        answer = answer.partition(b"\r\n\r\n")[2]
    assert answer.startswith(b"HTTP/1."), ("no HTTP answer", request, answer[:200])
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


def _quote(text: str, safe: str = "+-._~") -> str:
    """Percent-encoded UTF-8 (lone surrogates too: they become bytes no UTF-8 decoder takes)."""
    return urllib.parse.quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe=safe)


def _query_string(query: dict[str, str]) -> str:
    return "&".join(f"{_quote(k, '-._~')}={_quote(v, '-._~')}" for k, v in query.items())


# ----------------------------------------------------------------------------- strategies

_ODD_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_ODD_NUMBERS = ["1", "2", "3", "0", "999", "²", "١", "１", "9223372036854775807", "9223372036854775808",
                "1" * 40, "-1", "+1", " 1", "1.0", "1e3", "0x1", "\ud800", "😀"]
_NUMBERS = [ALICE, CAROL, "5550000001", "+1 555 000 0001", "12", "abc", "+999999999999999999", "+", "\udcff"]


def _path_values(name: str) -> st.SearchStrategy[str]:
    known = _ODD_NUMBERS if name == "alert_id" else _NUMBERS
    return st.one_of(st.sampled_from(known), _ODD_TEXT)


@st.composite
def _path(draw: st.DrawFn, template: str) -> str:
    parts = []
    for segment in template.split("/"):
        if segment.startswith("{"):
            segment = _quote(draw(_path_values(segment.strip("{}"))))
        parts.append(segment)
    return "/".join(parts)


_QUERY_VALUES: dict[str, list[str]] = {
    "status": ["triggered", "acknowledged", "resolved", "nope", ""],
    "limit": ["1", "1000", "1001", "0", "-1", "²", "١", "1e3", ""],
    "before_id": ["1", "2", "9223372036854775807", "9223372036854775808", "9" * 30, "١", "0"],
    "team": ["sre", "dba", "nope", "", "\ud800"],
    "at": ["2026-11-25T09:00:00Z", "2026-11-25T09:00:00", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00",
           "0001-01-01T00:00:00+14:00", "2026-13-01T00:00:00Z", "2026-11-25T09:00:00+23:59", "now"],
    "token": [TOKEN, "wrong", "", "\udcff"],
    "redirected": ["1"],
}


@functools.cache
def _queries_for(method: str, template: str) -> st.SearchStrategy[dict[str, str]]:
    return _query(method, template)


@st.composite
def _query(draw: st.DrawFn, method: str, template: str) -> dict[str, str]:
    """Mostly the operation's own parameters (with values at and past their edges), sometimes any."""
    declared = [p["name"] for p in OPERATIONS.get((method, template), {}).get("parameters", []) if p["in"] == "query"]
    names = [*declared, "token"] if template.endswith("/splunk") else declared or ["x"]
    own = st.sampled_from(names)
    keys = st.one_of(own, own, own, st.sampled_from(sorted(_QUERY_VALUES)), _ODD_TEXT)
    query: dict[str, str] = {}
    for key in draw(st.lists(keys, max_size=3)):
        known = st.sampled_from(_QUERY_VALUES.get(key, ["1"]))
        query[key] = draw(st.one_of(known, known, known, _ODD_TEXT))
    return query


_HEADER_BYTES = st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_TOKEN_CHARS = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-_"), min_size=1, max_size=12)
_GOOD_AUTH = b"Bearer " + TOKEN.encode()
_AUTH = st.one_of(
    st.just(None),
    st.just(_GOOD_AUTH), st.just(_GOOD_AUTH), st.just(_GOOD_AUTH),
    st.sampled_from([b"Bearer wrong", b"bearer " + TOKEN.encode(), b"Bearer \xff", b"Basic dGVzdA==",
                     TOKEN.encode(), b"Bearer " + TOKEN.encode() + b"\xed\xa0\x80", b"Bearer", b"Bearer  ",
                     b"Bearer " + ROUTING_KEY.encode()]),
    _HEADER_BYTES.map(lambda b: b"Bearer " + b),
)
_CONTENT_TYPES = [b"application/json", b"application/json; charset=utf-16", b"text/plain",
                  b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=zz", b"\xff\xfe"]
_EXTRA_HEADERS: st.SearchStrategy[list[tuple[bytes, bytes]]] = st.just([]) | st.just([]) | st.lists(st.one_of(
    st.tuples(st.sampled_from([b"Content-Type"]), st.sampled_from(_CONTENT_TYPES)),
    st.tuples(st.sampled_from([b"Content-Encoding"]), st.sampled_from([b"gzip", b"deflate", b"br", b"zstd", b"x"])),
    st.tuples(st.sampled_from([b"Transfer-Encoding", b"Expect", b"Accept", b"X-Forwarded-For", b"Cookie"]),
              st.sampled_from([b"chunked", b"100-continue", b"*/*", b"\xff", b"a=b"])),
    st.tuples(_TOKEN_CHARS.map(lambda t: b"X-" + t.encode()), _HEADER_BYTES),
), max_size=3)


@functools.cache
def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                        st.floats(allow_nan=False, allow_infinity=False), _ODD_TEXT,
                        st.sampled_from(["\ud800", "a\udfffb", "x" * 1100, "", " ", "high", "low", "trigger",
                                         "firing", "resolved", "sre", "nope", ALICE, "1"]))
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(_ODD_TEXT, st.sampled_from(_FIELDS)), inner,
                                                     max_size=4)), max_leaves=12)


_FIELDS = ["summary", "details", "labels", "priority", "dedup_key", "team", "action", "to", "message", "by",
           "digits", "text", "routing_key", "event_action", "payload", "alerts", "status", "version", "sid",
           "result", "fingerprint", "annotations", "severity", "source", "orgId", "truncatedAlerts"]


def _payload(name: str) -> Any:
    return json.loads((FIXTURES / "payloads" / name).read_text())


_ACTION = [{}, {"by": "fuzz"}, {"priority": "high"}]
_SHAPED: dict[str, list[Any]] = {
    "/api/v1/alerts": [{"summary": "disk full", "team": "sre"}, {"summary": "x", "dedup_key": "k1"},
                       {"action": "resolve", "dedup_key": "k1"}, {"action": "acknowledge", "dedup_key": "k1"},
                       {"summary": "y", "labels": {"team": "dba"}, "priority": "high", "details": {"a": [1]}}],
    "/api/v1/integrations/alertmanager": [_payload("alertmanager-v4-firing-2-alerts.json"),
                                          _payload("alertmanager-v4-resolved-2-alerts.json")],
    "/api/v1/integrations/grafana": [_payload("grafana-webhook-firing.json"),
                                     _payload("grafana-webhook-resolved.json")],
    "/api/v1/integrations/splunk": [_payload("splunk-webhook-alert-action.json")],
    "/api/v1/integrations/newrelic": [_payload("newrelic-workflow-activated.json"),
                                      _payload("newrelic-workflow-closed.json")],
    "/v2/enqueue": [{**_payload("pagerduty-v2-trigger.json"), "routing_key": ROUTING_KEY},
                    _payload("pagerduty-v2-trigger.json"), _payload("pagerduty-v2-resolve.json")],
    "/api/v1/calls": [{"to": ALICE, "message": "hello"}, {"team": "sre", "message": "call me"}],
    "/api/v1/sms": [{"to": CAROL, "message": "hello"}, {"team": "dba", "message": "text me"}],
    "/acknowledge": _ACTION, "/resolve": _ACTION, "/escalate": _ACTION,
    "/press": [{"digits": "1"}, {"digits": "2"}], "/reply": [{"text": "ack"}, {"text": "esc"}],
    "/dial": [{"to": "+15557770000"}],
}
_ANY_SHAPE = [body for bodies in _SHAPED.values() for body in bodies]


def _shapes_for(path: str) -> list[Any]:
    for suffix, bodies in _SHAPED.items():
        if path.endswith(suffix):
            return bodies
    return _ANY_SHAPE


@st.composite
def _mutated(draw: st.DrawFn, shapes: list[Any]) -> Any:
    """A real payload with one value (at any depth) replaced by arbitrary JSON, or kept as is."""
    body = json.loads(json.dumps(draw(st.sampled_from(shapes))))
    if draw(st.booleans()):
        return body
    node = body
    for _ in range(draw(st.integers(0, 3))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(
            node, list) else []
        containers = [(k, v) for k, v in children if isinstance(v, (dict, list)) and v]
        if not containers:
            break
        _, node = draw(st.sampled_from(containers))
    if isinstance(node, dict) and node:
        node[draw(st.sampled_from(sorted(node)))] = draw(_json_values())
    elif isinstance(node, list) and node:
        node[draw(st.integers(0, len(node) - 1))] = draw(_json_values())
    return body


def _encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@functools.cache
def _bodies_for(template: str) -> st.SearchStrategy[bytes]:
    """Strategies are built once per endpoint: building them is most of the cost of a draw."""
    return _bodies(_shapes_for(template))


def _bodies(shapes: list[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=64),
        st.builds(_encode, _json_values(), st.booleans()),
        st.builds(_encode, _mutated(shapes), st.booleans()),
        st.builds(_encode, _mutated(shapes), st.just(True)),
        st.builds(_encode, _mutated(shapes), st.just(True)),
        _HOSTILE,
    )


_HOSTILE = st.sampled_from([b"[" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65, b'{"summary": "x", "details": ' * 70,
                     b"9" * 5000, b"NaN", b'{"summary": 1e999}', b'\xef\xbb\xbf{"summary": "x"}',
                     b'{"summary": "\\ud800"}', b"\x00" * 10, b"{" * 10])
_BODIES = _bodies(_ANY_SHAPE)


@st.composite
def json_api_request(draw: st.DrawFn) -> Sent:
    method, template = draw(st.sampled_from([*sorted(OPERATIONS), ("PUT", "/api/v1/alerts"),
                                             ("DELETE", "/api/v1/alerts/{alert_id}"), ("POST", "/nope/{alert_id}")]))
    path = draw(_path(template))
    query = draw(_queries_for(method, template))
    target = path + ("?" + _query_string(query) if query else "")
    headers = []
    auth = draw(_AUTH)
    if auth is not None:
        headers.append((b"Authorization", auth))
    headers += draw(_EXTRA_HEADERS)
    body = draw(_bodies_for(template)) if method != "GET" or draw(st.integers(0, 9)) == 0 else b""
    return Sent(method, target, tuple(headers), body)


# ----------------------------------------------------------------------------- state


def table_rows(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store (a separate reader: WAL shows what was committed)."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}


async def _wait(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not settled within {timeout} s: {what}")
        await asyncio.sleep(0.002)


@dataclass
class Fuzz:
    live: LiveGateway
    db_path: Path
    baseline: Any = None
    statuses: dict[int, int] = field(default_factory=dict)
    requests: int = 0
    changes: int = 0  # accepted requests that changed the state (each followed by a return to quiet)

    def snapshot(self) -> Any:
        return table_rows(self.db_path), self.live.run(self._outside_the_store)

    async def _outside_the_store(self) -> Any:
        sandbox = self.live.app.get(SANDBOX)
        if sandbox is None:
            return None
        return sorted((n, len(p.calls), p.current.state if p.current else None, len(p.messages))
                      for n, p in sandbox.phones.items())

    def request(self, sent: Sent) -> int:
        status, body = send(self.live.port, sent)
        self.requests += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, (sent, status, body[:300])
        return status

    def check(self, sent: Sent, status: int) -> None:
        """Rejected: nothing changed. Accepted and changed something: back to a quiet point.

        (The store is written before any answer and before any work that follows it, so an accepted
        request that shows no change now started none.)
        """
        now = self.snapshot()
        if status >= 400:
            assert now == self.baseline, ("a rejected request changed the state", sent, status)
        elif now != self.baseline:
            if sent.method == "GET":  # a GET of a sandbox phone introduces it; nothing else
                self.baseline = now
            else:
                self.changes += 1
                self.quiet()

    def quiet(self) -> None:
        """Resolve every open alert, hang up every call, wait until nothing moves, then ring one alert."""
        self._close_everything()
        self.live.run(self._settled)
        status, body = send(self.live.port, Sent("POST", "/api/v1/alerts", ((b"Authorization", b"Bearer " +
                                                                              TOKEN.encode()),),
                                                   json.dumps({"summary": "seed", "team": "sre"}).encode()))
        assert status == 202, body
        self.live.run(self._settled)
        self.baseline = self.snapshot()

    def _close_everything(self) -> None:
        """Through the API, as an operator would: resolve what is open, hang up what rings or talks."""
        auth = ((b"Authorization", _GOOD_AUTH),)
        for status in ("triggered", "acknowledged"):
            _, listing = send(self.live.port, Sent("GET", f"/api/v1/alerts?status={status}&limit=1000", auth, b""))
            for alert in json.loads(listing)["alerts"]:
                answer, body = send(self.live.port, Sent("POST", f"/api/v1/alerts/{alert['id']}/resolve", auth, b""))
                assert answer == 200, body
        if self.live.app.get(SANDBOX) is None:
            return
        _, listing = send(self.live.port, Sent("GET", "/api/v1/sandbox/phones", auth, b""))
        for phone in json.loads(listing)["phones"]:
            call = phone["call"]
            if call is not None and call["state"] != "ended":
                action = "reject" if call["state"] == "ringing" else "hangup"
                send(self.live.port, Sent("POST", f"/api/v1/sandbox/phones/{_quote(phone['number'])}/{action}",
                                          auth, b""))

    async def _settled(self) -> None:
        store = self.live.app[STORE]
        sandbox = self.live.app.get(SANDBOX)

        async def quiet() -> bool:
            ringing = 0  # calls of open alerts that the gateway placed and that ring now
            for alert in await store.list_alerts(limit=50):  # older ones were settled before
                for page in await store.pages_for(alert.id):
                    if page.status == "due":
                        return False
                    if page.channel == "call" and page.status == "sent":
                        if not alert.is_open:
                            return False  # its cancel is still on the way
                        ringing += 1
            if sandbox is None:
                return True
            live_calls = [p.current for p in sandbox.phones.values() if p.current is not None]
            return all(c.state == "ringing" for c in live_calls) and len(live_calls) == ringing

        await _wait(quiet, "pages still due, or calls of closed alerts still up")


@pytest.fixture(scope="module")
def json_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzz]:
    folder = tmp_path_factory.mktemp("fuzz")
    with LiveGateway(folder) as live:
        fuzz = Fuzz(live, folder / "gateway.db")
        fuzz.quiet()
        yield fuzz


def test_fuzz_every_json_endpoint(json_fuzz: Fuzz) -> None:
    fuzz = json_fuzz

    @given(sent=json_api_request())
    @settings(max_examples=JSON_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def one(sent: Sent) -> None:
        fuzz.check(sent, fuzz.request(sent))

    one()
    print(f"\nfuzz (JSON API): {fuzz.requests} requests, {fuzz.changes} changed the state, "
          f"answers {dict(sorted(fuzz.statuses.items()))}")
    assert fuzz.requests >= JSON_EXAMPLES
    # It reached past every gate: accepted requests and each kind of refusal all occurred.
    for status in (200, 202, 400, 401, 404, 405, 409, 413, 422):
        assert fuzz.statuses.get(status, 0) > 0 or status in (409, 413), (status, fuzz.statuses)
    assert {200, 202, 400, 401, 404, 422} <= set(fuzz.statuses)


def _edges() -> Iterator[Sent]:
    """Every operation with each known edge of each of its parameters, and each hostile body, one by one."""
    auth = ((b"Authorization", _GOOD_AUTH),)
    for (method, template), operation in sorted(OPERATIONS.items()):
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        paths = [template.replace("{alert_id}", "1").replace("{number}", _quote(ALICE))]
        for segment in ("alert_id", "number"):
            if "{" + segment + "}" in template:
                other = "{number}" if segment == "alert_id" else "{alert_id}"
                paths += [template.replace("{" + segment + "}", _quote(value)).replace(other, "1")
                          for value in (_ODD_NUMBERS if segment == "alert_id" else _NUMBERS)]
        for path in paths:
            yield Sent(method, path, auth, b"")
        for name in names:
            for value in _QUERY_VALUES[name]:
                yield Sent(method, f"{paths[0]}?{_query_string({name: value})}", auth, b"")
        if method == "POST":
            for body in (b"[" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65, b"\xff", b"NaN", b'"\\ud800"',
                         b'{"summary": "\\ud800"}', b"9" * 5000):
                yield Sent(method, paths[0], auth, body)
                yield Sent(method, paths[0], (), body)


def test_every_parameter_edge_and_hostile_body(json_fuzz: Fuzz) -> None:
    before = json_fuzz.requests
    for sent in _edges():
        json_fuzz.check(sent, json_fuzz.request(sent))
    print(f"\nfuzz (edges): {json_fuzz.requests - before} requests")
    assert json_fuzz.requests - before > 300


# ----------------------------------------------------------------------------- Twilio webhooks

_TWILIO_PATHS = ["/twilio/sms/inbound", "/twilio/sms/{sms_id}/status", "/twilio/voice/inbound",
                 "/twilio/voice/status", "/twilio/voice/{call_id}/answer", "/twilio/voice/{call_id}/gather",
                 "/twilio/voice/{call_id}/record", "/twilio/voice/{call_id}/hold", "/twilio/voice/{call_id}/status"]
# Replaced when sent by the call the gateway is placing right now (its id in our URLs, and Twilio's sid),
# so that signed webhooks reach a live call: answered, keys pressed, hung up, ...
LIVE_CALL, LIVE_SID = "{live}", "{sid}"
FROM = "+15559990000"
_TWILIO_FIELDS = ["CallSid", "CallStatus", "Digits", "From", "To", "Body", "AnsweredBy", "RecordingUrl",
                  "MessageStatus", "SmsSid", "AccountSid", "Direction", "x"]
_TWILIO_VALUES = ["1", "2", "#", "completed", "busy", "no-answer", "in-progress", "human", "machine_start",
                  ALICE, CAROL, FROM, "ack", "esc", "", "\ud800", "delivered", "failed", LIVE_SID]
_TWILIO_SHAPED: dict[str, list[list[tuple[str, str]]]] = {
    "/answer": [[("CallSid", LIVE_SID), ("CallStatus", "in-progress"), ("AnsweredBy", "human")],
                [("CallSid", LIVE_SID), ("CallStatus", "in-progress")]],
    "/gather": [[("CallSid", LIVE_SID), ("Digits", "1")], [("CallSid", LIVE_SID), ("Digits", "2")],
                [("CallSid", LIVE_SID)]],
    "/status": [[("CallSid", LIVE_SID), ("CallStatus", s)] for s in ("completed", "busy", "no-answer", "failed")],
    "/sms/inbound": [[("From", ALICE), ("To", FROM), ("Body", "ack"), ("MessageSid", "SM1")],
                     [("From", ALICE), ("To", FROM), ("Body", "esc")]],
    "/voice/inbound": [[("CallSid", "CA1"), ("From", ALICE), ("To", FROM), ("CallStatus", "ringing")]],
}


@st.composite
def _twilio_form(draw: st.DrawFn, path: str) -> list[tuple[str, str]]:
    randomly = st.lists(st.tuples(st.one_of(st.sampled_from(_TWILIO_FIELDS), _ODD_TEXT),
                                  st.one_of(st.sampled_from(_TWILIO_VALUES), _ODD_TEXT)), max_size=5)
    shapes = next((forms for suffix, forms in _TWILIO_SHAPED.items() if path.endswith(suffix)), None)
    if shapes is None or draw(st.integers(0, 2)) == 0:
        return draw(randomly)
    form = list(draw(st.sampled_from(shapes)))
    if draw(st.booleans()):  # one value replaced (or one field dropped)
        index = draw(st.integers(0, len(form) - 1))
        value = draw(st.one_of(st.sampled_from(_TWILIO_VALUES), _ODD_TEXT, st.none()))
        form = form[:index] + ([] if value is None else [(form[index][0], value)]) + form[index + 1:]
    return form


@st.composite
def twilio_request(draw: st.DrawFn) -> tuple[Sent, str]:
    """A webhook request and how it is signed (``good``, ``bad``, ``none``, ``garbage``)."""
    template = draw(st.sampled_from(_TWILIO_PATHS))
    ids = st.one_of(st.just(LIVE_CALL), st.just(LIVE_CALL), st.sampled_from(["page-1", "page-999", "x"]), _ODD_TEXT)
    path = "/".join(_quote(draw(ids)) if s.startswith("{") else s for s in template.split("/"))
    query = draw(st.sampled_from(["", "", "?redirected=1", "?x=%FF"]))
    signing = draw(st.sampled_from(["good", "good", "good", "bad", "none", "garbage"]))
    if draw(st.integers(0, 5)) == 0:
        body = draw(_BODIES)
        content_type = draw(st.sampled_from(_CONTENT_TYPES))
    else:
        form = draw(_twilio_form(template))
        body = urllib.parse.urlencode(form, encoding="utf-8", errors="surrogatepass").encode()
        content_type = b"application/x-www-form-urlencoded"
    headers = [(b"Content-Type", content_type), *draw(_EXTRA_HEADERS)]
    return Sent("POST", path + query, tuple(headers), body), signing


@pytest.fixture(scope="module")
def twilio_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fuzz, FakeTwilioApi]]:
    folder = tmp_path_factory.mktemp("fuzz-twilio")
    api = FakeTwilioApi()  # the REST peer, on a loop and thread of its own
    loop = asyncio.new_event_loop()
    loop.run_until_complete(api.start())
    config = BASE_CONFIG + f"""
server:
  public_url: {PUBLIC}
twilio:
  account_sid: {api.account_sid}
  auth_token: {DEFAULT_AUTH_TOKEN}
  from_number: "{FROM}"
  api_base_url: {api.base_url}
  calls_per_second: 100
"""
    thread = threading.Thread(target=loop.run_forever, name="fake-twilio", daemon=True)
    thread.start()
    try:
        with LiveGateway(folder, config) as live:
            fuzz = Fuzz(live, folder / "gateway.db")
            fuzz.quiet()
            yield fuzz, api
    finally:
        asyncio.run_coroutine_threadsafe(api.__aexit__(None, None, None), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


def _live_call(api: FakeTwilioApi) -> tuple[str, str]:
    """Our id and Twilio's sid of the call the gateway placed last."""
    if not api.calls:
        return "none", "none"
    url = api.calls[-1]["Url"]
    return url.removeprefix(f"{PUBLIC}/twilio/voice/").split("/")[0], api.call_sids[-1]


def _signed(sent: Sent, signing: str, live: tuple[str, str]) -> Sent:
    """``sent`` aimed at the live call, with an X-Twilio-Signature good, bad, garbled or missing."""
    call_id, sid = live
    target = sent.target.replace(_quote(LIVE_CALL), call_id)
    body = sent.body.replace(urllib.parse.quote(LIVE_SID).encode(), sid.encode())
    params = urllib.parse.parse_qsl(body.decode("utf-8", "surrogateescape"), keep_blank_values=True)
    headers = sent.headers
    if signing != "none":
        try:
            token = DEFAULT_AUTH_TOKEN if signing == "good" else "wrong-token"
            signature = twilio_signature(token, PUBLIC + target, params).encode()
        except UnicodeEncodeError:  # fields that are not text cannot be signed
            signature = b"\xff\xfe not base64"
        if signing == "garbage":
            signature = b"\xff\xfe not base64"
        headers = (*headers, (b"X-Twilio-Signature", signature))
    return Sent(sent.method, target, headers, body)


def test_fuzz_twilio_webhooks(twilio_fuzz: tuple[Fuzz, FakeTwilioApi]) -> None:
    fuzz, api = twilio_fuzz

    @given(request=twilio_request())
    @settings(max_examples=TWILIO_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def one(request: tuple[Sent, str]) -> None:
        sent, signing = request
        signed = _signed(sent, signing, _live_call(api))
        status = fuzz.request(signed)
        if signing != "good":  # never served; mostly 403 (also 400 from the HTTP parser, 404, 417)
            assert 400 <= status < 500, (signed, status)
        fuzz.check(signed, status)

    one()
    print(f"\nfuzz (Twilio webhooks): {fuzz.requests} requests, {fuzz.changes} changed the state, "
          f"answers {dict(sorted(fuzz.statuses.items()))}")
    assert fuzz.requests >= TWILIO_EXAMPLES and {200, 403} <= set(fuzz.statuses) and fuzz.changes > 0
