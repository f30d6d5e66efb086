"""FakeAsterisk: a loopback AMI server that replays what Asterisk 22 sent.

Every byte it sends comes from the captures in ``tests/fixtures/asterisk``
(``*.ami`` for the bytes, ``*.txt`` for the timings), with the run-dependent
values substituted: the Originate's ``ChannelId``/``OtherChannelId``/``ActionID``,
the dialled number and context, the Local channel counter, the caller ID,
session fields (``SessionID``, addresses, ``EventTV``), ``Uptime``, ``Timestamp``
and ``BridgeUniqueid``. Headers, their order and CRLF framing are the captured
ones.

Originate of ``Local/<number>@<context>`` with ``Async: true`` plays the call
of the simulated phone picked by the number's last digit, as in the captures'
dialplan (``[sim-phones]``), with delays multiplied by ``time_scale``:

- ``1`` answers, presses 1 after 1 s, hangs up 30 s later; ``2`` the same with 2,
  hanging up 10 s later; ``7`` presses 9; ``8`` presses 1 after 8 s;
  ``5`` answers and hangs up after 20 s without a key; ``6`` after 2 s;
- ``3`` rings: ``OriginateResponse`` ``Reason: 3`` at the Originate's ``Timeout``;
- ``4`` busy (``Reason: 5``); ``0``/``9`` congestion (``Reason: 8``);
- ``press_<delay>_<digits>`` answers and sends the digits 250 ms apart after
  ``delay`` s; any other extension (e.g. ``s``) answers and waits 60 s.

Scenarios 1, 2, 3, 4, 0 and ``s`` are the captures themselves. 5-9 and
``press_*`` are assembled from the same captured messages, with the branch's
dialplan priorities of the captured ``[sim-phones]``. The far end hanging up
is the ending of ``originate-dtmf2``. An AMI ``Hangup`` plays the captured
sequence (``originate-answer-dtmf1`` for a ``;1`` leg, the far-end ending for a
``;2`` leg, ``bridge-two-channels`` for a bridged leg) with each channel's
current state and the action's Cause. Not captured, and therefore
approximations: a ``Hangup`` before the answer ends with ``OriginateResponse``
``Failure`` ``Reason: 1``; a non-Local channel gives ``Reason: 0``; an
``Application`` originate drops the ``;1`` leg's dialplan events and keeps its
dial location, and emits no ``AGIExec*`` events; a bridged call's scripted
timeline stops (its legs stay up until hung up); after a bridge ends, the other
party hangs up as the captured ``sim-callers`` dialplan did.

:class:`FakePbx` (at the end) joins this server with :class:`~tests.peers.agi_peer.AgiPeer`:
``Application: AGI`` originates and hotline callers open real FastAGI sessions,
and bridges and hang-ups show on both AMI and AGI.

Test hooks: :attr:`FakeAsterisk.received_actions`, :meth:`FakeAsterisk.drop_connections`,
:meth:`FakeAsterisk.send_raw`, :attr:`FakeAsterisk.unresponsive` (answers
nothing, sends nothing: a half-open connection), a mutable
:attr:`FakeAsterisk.secret`, :attr:`FakeAsterisk.timeline` (actions received,
Hangup events sent and, on :class:`FakePbx`, FastAGI sessions closed, in
order), and ``eager_login``: the fastest PBX possible, which
holds the banner back until the Login arrives and then sends banner, Login
reply and the login's events in one write, with no await in between (real
Asterisk sends the banner at once; a client must not depend on either).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.peers.agi_peer import AgiPeer

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "asterisk"
BANNER = "Asterisk Call Manager/11.0.0"

Headers = tuple[tuple[str, str], ...]

# ------------------------------------------------------------------ captures


def encode_message(headers: Iterable[tuple[str, str]]) -> bytes:
    """One AMI message on the wire: ``Key: Value`` lines and an empty line, CRLF."""
    return ("".join(f"{key}: {value}\r\n" for key, value in headers) + "\r\n").encode()


def _parse_block(block: str) -> Headers:
    pairs = []
    for line in block.split("\r\n"):
        key, sep, value = line.partition(": ")
        if not sep:
            raise ValueError(f"not an AMI header line: {line!r}")
        pairs.append((key, value))
    return tuple(pairs)


def split_stream(data: bytes) -> tuple[str, list[Headers]]:
    """Split the bytes of an AMI connection (as in ``*.ami``) into banner and messages."""
    text = data.decode()
    banner, sep, rest = text.partition("\r\n")
    if not sep or not banner.startswith("Asterisk Call Manager/"):
        raise ValueError("the stream does not start with the AMI banner")
    blocks = rest.split("\r\n\r\n")
    if blocks[-1]:
        raise ValueError("the stream does not end with an empty line")
    return banner, [_parse_block(block) for block in blocks[:-1]]


def header(headers: Iterable[tuple[str, str]], key: str, default: str | None = None) -> str | None:
    """The first value of ``key`` (any case) in a message."""
    lowered = key.lower()
    return next((value for name, value in headers if name.lower() == lowered), default)


@dataclass(frozen=True, kw_only=True)
class CapturedMessage:
    at: float  # seconds since the TCP connect, from the transcript
    headers: Headers
    after: int = 0  # for a message the client sent: how many messages it had received before

    def get(self, key: str, default: str | None = None) -> str | None:
        return header(self.headers, key, default)


@dataclass(frozen=True, kw_only=True)
class Capture:
    name: str
    banner: str
    raw: bytes
    received: tuple[CapturedMessage, ...]  # Asterisk -> client, bytes of the .ami
    sent: tuple[CapturedMessage, ...]  # client -> Asterisk, from the .txt


_TIME_LINE = re.compile(r"# \+(\d+\.\d+)s")


def _parse_transcript(text: str) -> dict[str, list[CapturedMessage]]:
    messages: dict[str, list[CapturedMessage]] = {"<<": [], ">>": []}
    pending: dict[str, tuple[float, list[tuple[str, str]]] | None] = {"<<": None, ">>": None}
    now = 0.0
    for line in text.splitlines():
        if match := _TIME_LINE.match(line):
            now = float(match[1])
            continue
        direction = line[:2]
        if direction not in messages or line[2:3] not in ("", " "):
            continue
        content = line[3:]
        current = pending[direction]
        if line == direction:
            if current is not None:
                after = len(messages["<<"])
                messages[direction].append(CapturedMessage(at=current[0], headers=tuple(current[1]), after=after))
                pending[direction] = None
            continue
        if direction == "<<" and current is None and content.startswith("Asterisk Call Manager/"):
            continue
        key, _, value = content.partition(": ")
        if current is None:
            current = pending[direction] = (now, [])
        current[1].append((key, value))
    return messages


@functools.cache
def load_capture(name: str) -> Capture:
    """Load ``<name>.ami`` (exact bytes) with the timings of ``<name>.txt``; they must agree."""
    raw = (CAPTURES / f"{name}.ami").read_bytes()
    banner, blocks = split_stream(raw)
    transcript = _parse_transcript((CAPTURES / f"{name}.txt").read_text())
    timed = transcript["<<"]
    if len(timed) != len(blocks):
        raise ValueError(f"{name}: {len(blocks)} messages in .ami, {len(timed)} in .txt")
    received = []
    for block, message in zip(blocks, timed, strict=True):
        if [k for k, _ in block] != [k for k, _ in message.headers]:
            raise ValueError(f"{name}: .ami and .txt differ at {block[0]}")
        received.append(CapturedMessage(at=message.at, headers=block))
    return Capture(name=name, banner=banner, raw=raw, received=tuple(received), sent=tuple(transcript[">>"]))


# ------------------------------------------------------------------ templates
#
# A template is a captured message whose run-dependent values are tokens
# "\x00<role>.<name>[:<default>]\x00". Role "a" (and "b" in the bridge capture)
# is one call; role "g" holds global values (the bridge id).

_TOKEN = re.compile("\x00(\\w+)\\.(\\w+)(?::([^\x00]*))?\x00")
_EXTEN_KEYS = frozenset({"Exten", "Extension", "DestExten", "LocalOneExten", "LocalTwoExten"})
BLOCK_KEYS = (
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


def _tok(role: str, name: str, default: str | None = None) -> str:
    return f"\x00{role}.{name}\x00" if default is None else f"\x00{role}.{name}:{default}\x00"


@dataclass(frozen=True, kw_only=True)
class _Identity:
    """How one originated call appears in a capture."""

    role: str
    exten: str
    context: str
    channel_base: str  # Local/<exten>@<context>-<counter>
    channel_id: str
    other_channel_id: str
    action_id: str
    caller_num: str
    caller_name: str
    orig_context: str
    orig_exten: str


@dataclass(frozen=True, kw_only=True)
class _Template:
    at: float
    headers: Headers
    leg: tuple[str, str] | None  # (role, "1" | "2") named by the Channel header
    orig_phase: bool  # a ;1 message after the answer: the leg runs the Originate's context

    @property
    def name(self) -> str:
        return header(self.headers, "Event") or header(self.headers, "Response") or ""

    @property
    def roles(self) -> set[str]:
        return {m[1] for _, v in self.headers for m in _TOKEN.finditer(v)}

    def get(self, key: str) -> str | None:
        return header(self.headers, key)

    def with_values(self, **values: str) -> _Template:
        return replace(self, headers=tuple((k, values.get(k, v)) for k, v in self.headers))


def parse_caller_id(value: str | None) -> tuple[str, str]:
    """``"Name" <num>`` -> (name, num); a bare number -> ("", num)."""
    if not value:
        return "", ""
    if match := re.fullmatch(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*', value):
        return match[1].strip(), match[2].strip()
    if re.fullmatch(r"[+\d*#]+", value.strip()):
        return "", value.strip()
    return value.strip(), ""


def _identities(capture: Capture) -> list[_Identity]:
    found = []
    for sent in capture.sent:
        if sent.get("Action") != "Originate" or not sent.get("ChannelId"):
            continue
        match = re.fullmatch(r"Local/([^@]+)@(.+)", sent.get("Channel") or "")
        if match is None:
            continue
        channel_id = sent.get("ChannelId") or ""
        first = next(
            m for m in capture.received if m.get("Event") == "Newchannel" and m.get("Uniqueid") == channel_id
        )
        name, num = parse_caller_id(sent.get("CallerID"))
        found.append(
            _Identity(
                role="ab"[len(found)],
                exten=match[1],
                context=match[2],
                channel_base=(first.get("Channel") or "")[:-2],
                channel_id=channel_id,
                other_channel_id=sent.get("OtherChannelId") or "",
                action_id=sent.get("ActionID") or "",
                caller_num=num,
                caller_name=name,
                orig_context=sent.get("Context") or "",
                orig_exten=sent.get("Exten") or "",
            )
        )
    return found


def _tokenize_value(key: str, value: str, ident: _Identity, orig: bool, subs: Callable[[str], str]) -> str:
    role = ident.role
    if key == "BridgeUniqueid":
        return _tok("g", "bridge")
    if key == "ActionID" and value == ident.action_id:
        return _tok(role, "aid")
    if key.endswith("Context"):
        if orig and key == "Context" and value == ident.orig_context:
            return _tok(role, "oc")
        if value == ident.context:
            return _tok(role, "ctx")
    if key in _EXTEN_KEYS:
        if orig and key in ("Exten", "Extension") and value == ident.orig_exten:
            return _tok(role, "oe")
        if value == ident.exten:
            return _tok(role, "num")
    if orig and key == "Priority":
        return _tok(role, "op", value)
    if key.endswith(("CallerIDNum", "ConnectedLineNum")) and value == ident.caller_num:
        return _tok(role, "cidnum")
    if key.endswith(("CallerIDName", "ConnectedLineName")) and value == ident.caller_name:
        return _tok(role, "cidname")
    value = subs(value)
    if key == "AppData" and len(ident.exten) > 3:
        value = value.replace(ident.exten, _tok(role, "num"))
    return value


@functools.cache
def _templates(name: str) -> tuple[_Template, ...]:
    """Every message Asterisk sent in capture ``name``, tokenized."""
    capture = load_capture(name)
    identities = _identities(capture)
    mapping: dict[str, str] = {}
    for ident in identities:
        role = ident.role
        mapping.setdefault(ident.channel_base, _tok(role, "chan"))
        mapping.setdefault(f"{ident.exten}@{ident.context}", f"{_tok(role, 'num')}@{_tok(role, 'ctx')}")
        mapping.setdefault(ident.other_channel_id, _tok(role, "oid"))
        mapping.setdefault(ident.channel_id, _tok(role, "cid"))
    pattern = re.compile("|".join(re.escape(k) for k in sorted(mapping, key=len, reverse=True))) if mapping else None

    def subs(value: str) -> str:
        return pattern.sub(lambda m: mapping[m[0]], value) if pattern is not None else value

    answered = {ident.role: False for ident in identities}
    result = []
    for message in capture.received:
        channel = message.get("Channel") or ""
        leg = next(
            ((i.role, channel[-1]) for i in identities if channel in (f"{i.channel_base};1", f"{i.channel_base};2")),
            None,
        )
        mentioned = next(
            (i for i in identities if any(i.channel_base in v or i.channel_id in v for _, v in message.headers)),
            None,
        )
        ident = next((i for i in identities if leg and i.role == leg[0]), mentioned or (identities or [None])[0])
        if ident is None:
            result.append(_Template(at=message.at, headers=message.headers, leg=None, orig_phase=False))
            continue
        is_response = message.get("Event") == "OriginateResponse"
        orig = is_response or (leg == (ident.role, "1") and answered[ident.role])
        headers = tuple((k, _tokenize_value(k, v, ident, orig, subs)) for k, v in message.headers)
        result.append(_Template(at=message.at, headers=headers, leg=leg, orig_phase=orig and not is_response))
        if (
            message.get("Event") == "DialEnd"
            and message.get("DestChannel") == f"{ident.channel_base};1"
            and message.get("DialStatus") == "ANSWER"
        ):
            answered[ident.role] = True
    return tuple(result)


def _render(template: _Template, values: Mapping[str, Mapping[str, str | None]]) -> list[tuple[str, str]]:
    """Fill in the tokens; a header whose token value is None is left out (e.g. no ActionID)."""
    rendered = []
    for key, value in template.headers:
        dropped = False

        def fill(match: re.Match[str]) -> str:
            nonlocal dropped
            role_values = values[match[1]]
            if match[2] not in role_values and match[3] is not None:
                return match[3]
            found = role_values[match[2]]
            if found is None:
                dropped = True
                return ""
            return found

        text = _TOKEN.sub(fill, value)
        if not dropped:
            rendered.append((key, text))
    return rendered


# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True, kw_only=True)
class _Step:
    at: float  # seconds after the Originate's response (capture time)
    template: _Template
    after_timeout: bool = False  # ``at`` counts from the Originate's Timeout instead


def _call_events(name: str, role: str = "a") -> list[_Step]:
    """The events of one call of capture ``name``, timed from its Originate's response.

    They stop at the next reply to another action (Hangup, Bridge, Logoff).
    """
    capture = load_capture(name)
    templates = _templates(name)
    idents = {i.role: i for i in _identities(capture)}
    ident = idents[role]
    start = next(i for i, m in enumerate(capture.received) if _is_reply(m) and m.get("ActionID") == ident.action_id)
    t0 = capture.received[start].at
    originates = {i.action_id for i in idents.values()}
    other_started = False
    steps = []
    for index in range(start + 1, len(templates)):
        message = capture.received[index]
        if _is_reply(message):
            if message.get("ActionID") in originates:
                continue
            break
        template = templates[index]
        if template.leg is not None and template.leg[0] != role:
            other_started = True
            continue
        roles = template.roles - {"g"}
        if template.leg is None and (other_started or (roles and role not in roles)):
            continue
        steps.append(_Step(at=template.at - t0, template=template))
    return steps


def _events_after_reply(name: str, message: str) -> list[_Template]:
    """The events that follow the reply whose ``Message`` is ``message``, up to the next reply."""
    capture = load_capture(name)
    templates = _templates(name)
    start = next(i for i, m in enumerate(capture.received) if m.get("Message") == message)
    result = []
    for index in range(start + 1, len(templates)):
        if _is_reply(capture.received[index]):
            break
        result.append(templates[index])
    return result


def _is_reply(message: CapturedMessage) -> bool:
    """A response to an action (``Response`` first), not an event that has a Response header."""
    return message.headers[0][0] == "Response"


def _is_newexten(template: _Template, leg: str, application: str) -> bool:
    return (
        template.name == "Newexten" and template.leg == ("a", leg) and template.get("Application") == application
    )


@functools.cache
def _far_end_hangup() -> tuple[list[_Step], float]:
    """The phone hanging up (from originate-dtmf2), and its delay after the ``Wait`` ends."""
    steps = _call_events("originate-dtmf2")
    start = next(i for i, s in enumerate(steps) if _is_newexten(s.template, "2", "Hangup"))
    wait = next(s for s in reversed(steps[:start]) if _is_newexten(s.template, "2", "Wait"))
    lag = steps[start].at - wait.at - float(wait.template.get("AppData") or 0)
    t_start = steps[start].at
    return [replace(s, at=s.at - t_start) for s in steps[start:]], lag


# [sim-phones] branches: last digit -> (label, priority of its Answer).
_BRANCHES = {
    "1": ("accept", 12),
    "2": ("decline", 17),
    "3": ("noanswer", 22),
    "4": ("busy", 25),
    "5": ("ignore", 27),
    "6": ("hangup", 30),
    "7": ("wrongkey", 33),
    "8": ("lateaccept", 38),
}
_ACCEPT_PRIORITY = 12  # the branch of originate-answer-dtmf1


def _fix_behaviour(template: _Template, digit: str) -> _Template:
    """Make the dialplan trace name the phone's behaviour digit."""
    values = {}
    app_data = template.get("AppData")
    if app_data is not None:
        new = re.sub(r"behaviour digit \S+", f"behaviour digit {digit}", app_data)
        values["AppData"] = re.sub(r"^SIM_LAST=\S*$", f"SIM_LAST={digit}", new)
    if template.get("Variable") == "SIM_LAST":
        values["Value"] = digit
    return template.with_values(**values) if values else template


def _reprioritize(template: _Template, base: int) -> _Template:
    """Move a ;2 message of the accept branch to the same step of the branch at ``base``."""
    priority = template.get("Priority")
    if template.leg != ("a", "2") or priority is None or int(priority) < _ACCEPT_PRIORITY:
        return template
    return template.with_values(Priority=str(base + int(priority) - _ACCEPT_PRIORITY))


def _goto_ifs(goto: _Template, digit: str) -> list[_Template]:
    labels = [label for label, _ in _BRANCHES.values()]
    wanted = _BRANCHES[digit][0]
    result = []
    for index, label in enumerate(labels[: labels.index(wanted) + 1]):
        app_data = f"{int(label == wanted)}?{label}"
        result.append(goto.with_values(Priority=str(3 + index), AppData=app_data))
    return result


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@functools.cache
def _answered(digit: str, keys: str, press_after_s: float, hang_up_after_s: float) -> tuple[_Step, ...]:
    """An answering phone built from originate-answer-dtmf1: wait, press ``keys``, wait, hang up."""
    events = _call_events("originate-answer-dtmf1")
    i_wait = next(i for i, s in enumerate(events) if _is_newexten(s.template, "2", "Wait"))
    wait1 = events[i_wait]
    send = next(s for s in events if _is_newexten(s.template, "2", "SendDTMF"))
    begin = next(s for s in events if s.template.name == "DTMFBegin")
    end = next(s for s in events if s.template.name == "DTMFEnd")
    wait2 = next(s for s in events[events.index(end) :] if _is_newexten(s.template, "2", "Wait"))
    base = _BRANCHES.get(digit, ("accept", _ACCEPT_PRIORITY))[1]

    def adapt(template: _Template) -> _Template:
        return _reprioritize(_fix_behaviour(template, digit), base) if digit in _BRANCHES else template

    steps: list[_Step] = []
    for step in events[:i_wait]:
        if _is_newexten(step.template, "2", "GotoIf") and digit in _BRANCHES:
            steps += [_Step(at=step.at, template=adapt(t)) for t in _goto_ifs(step.template, digit)]
        else:
            steps.append(replace(step, template=adapt(step.template)))
    first_wait = press_after_s if keys else hang_up_after_s
    steps.append(replace(wait1, template=adapt(wait1.template.with_values(AppData=_seconds(first_wait)))))
    if keys:
        shift = press_after_s - (send.at - wait1.at)
        steps.append(_Step(at=send.at + shift, template=adapt(send.template.with_values(AppData=keys))))
        for index, key in enumerate(keys):
            offset = shift + 0.25 * index
            steps.append(_Step(at=begin.at + offset, template=begin.template.with_values(Digit=key)))
            steps.append(_Step(at=end.at + offset, template=end.template.with_values(Digit=key)))
        last = wait2.at + shift + 0.25 * (len(keys) - 1)
        wait = wait2.template.with_values(AppData=_seconds(hang_up_after_s))
        steps.append(_Step(at=last, template=adapt(wait)))
        hangup_priority = base + 4
    else:
        last = wait1.at
        hangup_priority = base + 2
    return tuple(steps + _ending(last + hang_up_after_s, hangup_priority))


def _ending(at: float, hangup_priority: int) -> list[_Step]:
    """The phone's ``Hangup()`` (the ending of originate-dtmf2) at ``at``, on ``hangup_priority``."""
    tail, lag = _far_end_hangup()
    steps = []
    for step in tail:
        template = step.template
        if template.leg == ("a", "2") and template.get("Priority"):
            template = template.with_values(Priority=str(hangup_priority))
        steps.append(_Step(at=at + lag + step.at, template=template))
    return steps


@functools.cache
def _captured(name: str, digit: str) -> tuple[_Step, ...]:
    return tuple(replace(s, template=_fix_behaviour(s.template, digit)) for s in _call_events(name))


@functools.cache
def _no_answer(digit: str) -> tuple[_Step, ...]:
    capture = load_capture("originate-no-answer")
    timeout_s = int(next(m for m in capture.sent if m.get("Action") == "Originate").get("Timeout") or 0) / 1000
    steps = []
    for step in _captured("originate-no-answer", digit):
        if step.at >= timeout_s:
            steps.append(replace(step, at=step.at - timeout_s, after_timeout=True))
        else:
            steps.append(step)
    return tuple(steps)


@functools.cache
def _passive() -> tuple[_Step, ...]:
    steps = _call_events("bridge-two-channels", "a")
    return tuple(steps + _ending(steps[-1].at + 60, 3))  # [sim-callers] s: Answer, Wait(60), Hangup


def scenario_for(exten: str) -> tuple[_Step, ...]:
    """The timeline of the simulated phone reached at ``exten``."""
    if match := re.fullmatch(r"press_(\d+)_([0-9*#A-D]+)", exten):
        return _answered("", match[2], float(match[1]), 60.0)
    digit = exten[-1:]
    match digit:
        case "1":
            return _answered("1", "1", 1.0, 30.0)
        case "2":
            return _captured("originate-dtmf2", "2")
        case "3":
            return _no_answer("3")
        case "4":
            return _captured("originate-busy", "4")
        case "0" | "9":
            return _captured("originate-congestion", digit)
        case "5":
            return _answered("5", "", 0.0, 20.0)
        case "6":
            return _answered("6", "", 0.0, 2.0)
        case "7":
            return _answered("7", "9", 1.0, 30.0)
        case "8":
            return _answered("8", "1", 8.0, 30.0)
    return _passive()


# ------------------------------------------------------------------ live calls

_CAUSES = {
    0: "Unknown",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
    34: "Circuit/channel congestion",
}


@dataclass(eq=False, kw_only=True)
class _Bridge:
    uniqueid: str
    legs: list[_Leg]
    runner: _Leg | None = None  # the leg whose own Bridge application made it (stays up after)
    ended: asyncio.Future[str] | None = None  # "other" or "runner": who hung up


@dataclass(eq=False, kw_only=True)
class _Leg:
    call: _Call
    channel: str
    block: dict[str, str]
    created: float
    application: str = ""
    app_data: str = ""
    bridge: _Bridge | None = None

    @property
    def uniqueid(self) -> str:
        return self.block.get("Uniqueid", "")


@dataclass(eq=False, kw_only=True)
class _Call:
    values: dict[str, str | None]
    dial: str  # the Originate's Channel
    application: str | None
    data: str | None
    timeout_s: float
    legs: dict[str, _Leg] = field(default_factory=dict)  # "1" / "2"
    task: asyncio.Task[None] | None = None
    originate_reported: bool = False
    sync_reply: asyncio.Future[int] | None = None  # for an Originate without Async
    inbound: bool = False  # a caller reaching the PBX, not an Originate: no OriginateResponse is sent

    @property
    def base(self) -> str:
        return self.values["chan"] or ""


def _tv(moment: float) -> str:
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}+0000"


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


@dataclass(eq=False, kw_only=True)
class _Session:
    writer: asyncio.StreamWriter
    session_id: str
    remote: str
    authenticated: bool = False
    events: bool = True
    username: str = ""
    login_tv: str = ""
    banner_sent: bool = False

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)


class FakeAsterisk:
    """A loopback AMI server speaking Asterisk 22's wire format (see the module doc)."""

    def __init__(
        self,
        *,
        username: str = "gateway",
        secret: str = "gatewaysecret",
        host: str = "127.0.0.1",
        port: int = 0,
        time_scale: float = 1.0,
        auth_failure_delay_s: float = 0.05,
        first_local_id: int = 0x11,
        eager_login: bool = False,
    ) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self.port = port
        self.time_scale = time_scale
        self.auth_failure_delay_s = auth_failure_delay_s
        self.eager_login = eager_login
        self.unresponsive = False
        self.received_actions: list[dict[str, str]] = []
        # What happened, in order: "action <Action> [<Channel>]", "event Hangup <Uniqueid>" and (FakePbx)
        # "agi closed <Uniqueid>" when the FastAGI server closed a channel's session.
        self.timeline: list[str] = []
        self._local_ids = itertools.count(first_local_id)
        self._uniqueids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._calls: dict[str, _Call] = {}  # by channel base
        self._legs: dict[str, _Leg] = {}  # live channels by name
        self._started = time.time()
        self._arrivals = asyncio.Condition()

    # ------------------------------------------------------------ control

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._started = time.time()

    async def stop(self) -> None:
        """Stop listening, drop every client and end every call, without events."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for call in list(self._calls.values()):
            if call.task is not None:
                call.task.cancel()
        self._calls.clear()
        self._legs.clear()
        await self.drop_connections()
        if server is not None:
            await server.wait_closed()

    async def drop_connections(self) -> None:
        """Cut every client connection abruptly (RST, no Goodbye); calls go on."""
        for session in list(self._sessions):
            session.writer.transport.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as is to every connected client (garbage, malformed frames)."""
        for session in list(self._sessions):
            session.send(data)

    async def __aenter__(self) -> FakeAsterisk:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def connections(self) -> int:
        """How many clients are connected now."""
        return len(self._sessions)

    @property
    def channels(self) -> list[str]:
        """The names of the live channels."""
        return list(self._legs)

    async def wait_for_action(self, name: str, *, timeout: float = 2.0, **headers: str) -> dict[str, str]:
        """The first received action ``name`` whose headers include ``headers``; waits for it."""

        def find() -> dict[str, str] | None:
            for action in self.received_actions:
                if (action.get("Action") or "").lower() == name.lower() and all(
                    action.get(k) == v for k, v in headers.items()
                ):
                    return action
            return None

        async with self._arrivals:
            await asyncio.wait_for(self._arrivals.wait_for(lambda: find() is not None), timeout)
        return find() or {}

    # ------------------------------------------------------------ sessions

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        session = _Session(
            writer=writer, session_id=f"0x{random.getrandbits(44):x}", remote=f"IPV4/TCP/{peer[0]}/{peer[1]}"
        )
        self._sessions.add(session)
        try:
            if not self.unresponsive and not self.eager_login:
                session.send(self._banner(session))
            while True:
                action = await self._read_action(reader)
                if action is None:
                    break
                self.received_actions.append(_as_dict(action))
                self.timeline.append(f"action {header(action, 'Action')} {header(action, 'Channel') or ''}".rstrip())
                async with self._arrivals:
                    self._arrivals.notify_all()
                if self.unresponsive:
                    continue
                if not await self._handle(session, action):
                    await writer.drain()
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # drop_connections()/stop() end the session; asyncio's stream callback chokes on a cancelled task
        finally:
            self._sessions.discard(session)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    @staticmethod
    async def _read_action(reader: asyncio.StreamReader) -> list[tuple[str, str]] | None:
        headers: list[tuple[str, str]] = []
        while True:
            line = await reader.readline()
            if not line:
                return None
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if not text:
                if headers:
                    return headers
                continue
            key, sep, value = text.partition(":")
            if sep:
                headers.append((key.strip(), value.lstrip()))

    @staticmethod
    def _banner(session: _Session) -> bytes:
        """The banner, the first time it is asked for on this connection; then nothing."""
        if session.banner_sent:
            return b""
        session.banner_sent = True
        return f"{BANNER}\r\n".encode()

    def _reply(self, session: _Session, action: Sequence[tuple[str, str]], *lines: tuple[str, str]) -> None:
        session.send(_response(action, *lines))

    def _error(self, session: _Session, action: Sequence[tuple[str, str]], message: str) -> None:
        self._reply(session, action, ("Response", "Error"), ("Message", message))

    def _broadcast(self, headers: Iterable[tuple[str, str]]) -> None:
        if self.unresponsive:
            return
        data = encode_message(headers)
        for session in list(self._sessions):
            if session.authenticated and session.events:
                session.send(data)

    async def _handle(self, session: _Session, action: list[tuple[str, str]]) -> bool:
        """Answer one action; False when the connection must close."""
        name = (header(action, "Action") or "").lower()
        if name == "login":
            return await self._login(session, action)
        if name == "logoff":
            self._reply(session, action, ("Response", "Goodbye"), ("Message", "Thanks for all the fish."))
            return False
        if not session.authenticated:
            self._error(session, action, "Permission denied")
            return True
        handler = {
            "ping": self._ping,
            "events": self._events,
            "originate": self._originate,
            "hangup": self._hangup,
            "bridge": self._bridge,
            "coreshowchannels": self._core_show_channels,
        }.get(name)
        if handler is None:
            self._unknown(session, action)
        else:
            await handler(session, action)
        return True

    def _security_headers(self, session: _Session) -> dict[str, str]:
        return {
            "EventTV": _tv(time.time()),
            "SessionID": session.session_id,
            "LocalAddress": f"IPV4/TCP/{self.host}/{self.port}",
            "RemoteAddress": session.remote,
            "SessionTV": session.login_tv,
            "AccountID": session.username,
        }

    async def _login(self, session: _Session, action: list[tuple[str, str]]) -> bool:
        """The reply and the login's events go out in one write (after the banner, if held back)."""
        capture = load_capture("ami-login-success")
        if header(action, "Username") != self.username or header(action, "Secret") != self.secret:
            await asyncio.sleep(self.auth_failure_delay_s)
            failed = _response(action, ("Response", "Error"), ("Message", "Authentication failed"))
            session.send(self._banner(session) + failed)
            return False
        session.authenticated = True
        session.username = self.username
        session.login_tv = _tv(time.time())
        session.events = (header(action, "Events") or "on").lower() != "off"
        response, fully_booted, successful_auth = capture.received[:3]
        out = [self._banner(session), _response(action, response.headers[0], *response.headers[2:])]
        if session.events:
            uptime = str(int(time.time() - self._started))
            out.append(encode_message(_with(fully_booted.headers, Uptime=uptime, LastReload=uptime)))
            values = self._security_headers(session)
            out.append(encode_message(_with(successful_auth.headers, **values)))
        session.send(b"".join(out))
        return True

    async def _ping(self, session: _Session, action: list[tuple[str, str]]) -> None:
        pong = _message("ami-ping-and-errors", lambda m: m.get("Ping") == "Pong")
        self._reply(session, action, pong[0], *_with(pong[2:], Timestamp=f"{time.time():.6f}"))

    async def _events(self, session: _Session, action: list[tuple[str, str]]) -> None:
        mask = (header(action, "EventMask") or "").strip().lower()
        if not mask:
            self._error(session, action, "Invalid event mask")
            return
        session.events = mask != "off"
        self._reply(session, action, ("Response", "Success"), ("Events", "On" if session.events else "Off"))

    def _unknown(self, session: _Session, action: list[tuple[str, str]]) -> None:
        name = header(action, "Action") or ""
        self._error(
            session, action, f"Invalid/unknown command: {name}. Use Action: ListCommands to show available commands."
        )
        template = next(m for m in load_capture("ami-ping-and-errors").received if m.get("Event") == "RequestBadFormat")
        values = self._security_headers(session)
        values["RequestType"] = f"Action: {name}"
        self._broadcast(_with(template.headers, **values))

    # ------------------------------------------------------------ originate

    async def _originate(self, session: _Session, action: list[tuple[str, str]]) -> None:
        dial = header(action, "Channel")
        if not dial:
            self._error(session, action, "Channel not specified")
            return
        is_async = _is_true(header(action, "Async"))
        if is_async:
            self._reply(session, action, ("Response", "Success"), ("Message", "Originate successfully queued"))
        timeout_ms = header(action, "Timeout") or "30000"
        call = self._new_call(
            dial,
            application=header(action, "Application"),
            data=header(action, "Data") or "",
            context=header(action, "Context") or "",
            exten=header(action, "Exten") or "",
            channel_id=header(action, "ChannelId"),
            other_id=header(action, "OtherChannelId"),
            caller_id=header(action, "CallerID"),
            action_id=header(action, "ActionID"),
            timeout_s=int(timeout_ms) / 1000 if timeout_ms.isdigit() else 30.0,
            sync=not is_async,
        )
        if call.sync_reply is not None:
            reason = await call.sync_reply
            if reason == 4:
                self._reply(session, action, ("Response", "Success"), ("Message", "Originate successfully queued"))
            else:
                self._error(session, action, "Originate failed")

    def _new_call(
        self,
        dial: str,
        *,
        application: str | None,
        data: str,
        context: str,
        exten: str,
        channel_id: str | None,
        other_id: str | None,
        caller_id: str | None,
        action_id: str | None,
        timeout_s: float,
        sync: bool = False,
        inbound: bool = False,
    ) -> _Call:
        """Create the Local channel pair of a call and start playing its phone's timeline."""
        channel_id = channel_id or f"{int(self._started)}.{next(self._uniqueids)}"
        other_id = other_id or f"{int(self._started)}.{next(self._uniqueids)}"
        name, number = parse_caller_id(caller_id)
        match = re.fullmatch(r"Local/([^@/]+)@([^/]+?)(?:/\w+)?", dial)
        dialled, dial_context = (match[1], match[2]) if match else (dial, "")
        base = f"Local/{dialled}@{dial_context}-{next(self._local_ids):08x}"
        values: dict[str, str | None] = {
            "chan": base,
            "cid": channel_id,
            "oid": other_id,
            "aid": action_id,
            "num": dialled,
            "ctx": dial_context,
            "oc": dial_context if application else context,
            "oe": dialled if application else exten,
            "cidnum": number or "<unknown>",
            "cidname": name or "<unknown>",
        }
        if application:
            values["op"] = "1"
        call = _Call(
            values=values, dial=dial, application=application, data=data, timeout_s=timeout_s, inbound=inbound
        )
        steps = scenario_for(dialled) if match else (_Step(at=0.001, template=_failed_originate(0)),)
        if sync:
            call.sync_reply = asyncio.get_running_loop().create_future()
        self._calls[base] = call
        call.task = asyncio.create_task(self._play(call, steps))
        return call

    async def _play(self, call: _Call, steps: Sequence[_Step]) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            for step in steps:
                at = step.at + (call.timeout_s if step.after_timeout else 0.0)
                delay = start + at * self.time_scale - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._emit({"a": call}, step.template)
        finally:
            if not call.legs:
                self._calls.pop(call.base, None)

    def _emit(
        self,
        roles: Mapping[str, _Call],
        template: _Template,
        *,
        restamp: bool = False,
        causes: Mapping[str, int] | None = None,
        bridge_id: str | None = None,
    ) -> None:
        """Render one template for live calls, track channel state, send it to the clients."""
        leg_call = roles[template.leg[0]] if template.leg else None
        if (
            leg_call is not None
            and leg_call.application
            and template.orig_phase
            and template.leg is not None
            and template.leg[1] == "1"
            and template.name == "Newexten"
        ):
            return  # an Application originate does not run the Originate's context
        values = {role: call.values for role, call in roles.items()}
        values["g"] = {"bridge": bridge_id}
        headers = _render(template, values)
        channel = header(headers, "Channel") or ""
        leg = self._legs.get(channel)
        if restamp and leg is not None and template.name != "Newexten":
            headers = [(k, leg.block.get(k, v) if k in BLOCK_KEYS else v) for k, v in headers]
        if causes and template.leg and template.leg[0] in causes:
            cause = causes[template.leg[0]]
            if header(headers, "Cause") == "16":
                headers = _with(headers, Cause=str(cause), **{"Cause-txt": _CAUSES.get(cause, "Unknown")})
        if not self._hold_back(roles, template, headers):
            self._publish(roles, template, headers)

    def _hold_back(
        self, roles: Mapping[str, _Call], template: _Template, headers: list[tuple[str, str]]
    ) -> bool:
        """True to keep an event for later (:class:`FakePbx`: a channel's end while its AGI runs)."""
        return False

    def _publish(self, roles: Mapping[str, _Call], template: _Template, headers: list[tuple[str, str]]) -> None:
        """Track the channel state an event changes and send it to the clients."""
        if header(headers, "Event") == "Hangup":
            self.timeline.append(f"event Hangup {header(headers, 'Uniqueid')}")
        self._track(headers)
        if template.name == "OriginateResponse":
            call = roles[next(iter(template.roles - {"g"}), "a")]
            call.originate_reported = True
            if header(headers, "Response") == "Failure":
                headers = _with(headers, Channel=call.dial)  # the dial string, as sent
            if call.application:
                headers = [
                    ("Application", call.application) if k == "Context" else ("Data", call.data or "")
                    if k == "Exten"
                    else (k, v)
                    for k, v in headers
                ]
            if call.sync_reply is not None:
                if not call.sync_reply.done():
                    call.sync_reply.set_result(int(header(headers, "Reason") or 0))
                return
            if call.inbound:
                self._observe(roles, template, headers)
                return
        self._broadcast(headers)
        self._observe(roles, template, headers)

    def _observe(
        self, roles: Mapping[str, _Call], template: _Template, headers: Sequence[tuple[str, str]]
    ) -> None:
        """Called after each event is emitted; :class:`FakePbx` hooks FastAGI in here."""

    def _track(self, headers: Sequence[tuple[str, str]]) -> None:
        name = header(headers, "Event")
        channel = header(headers, "Channel") or ""
        if name == "Newchannel":
            call = self._calls.get(channel[:-2])
            if call is not None:
                leg = _Leg(call=call, channel=channel, block={}, created=time.monotonic())
                call.legs[channel[-1]] = leg
                self._legs[channel] = leg
        leg = self._legs.get(channel)
        if leg is None:
            return
        leg.block.update((k, v) for k, v in headers if k in BLOCK_KEYS)
        if name == "Newexten":
            leg.application = header(headers, "Application") or ""
            leg.app_data = header(headers, "AppData") or ""
        elif name == "Hangup":
            del self._legs[channel]
            leg.call.legs.pop(channel[-1], None)
            if not leg.call.legs and (leg.call.task is None or leg.call.task.done()):
                self._calls.pop(leg.call.base, None)

    def _find_leg(self, name_or_id: str) -> _Leg | None:
        leg = self._legs.get(name_or_id)
        if leg is not None:
            return leg
        return next((leg for leg in self._legs.values() if leg.uniqueid == name_or_id), None)

    # ------------------------------------------------------------ hangup, bridge

    async def _hangup(self, session: _Session, action: list[tuple[str, str]]) -> None:
        target = header(action, "Channel")
        if not target:
            self._error(session, action, "No channel specified")
            return
        leg = self._find_leg(target)
        if leg is None:
            self._error(session, action, "No such channel")
            return
        cause_text = header(action, "Cause") or "16"
        cause = int(cause_text) if cause_text.isdigit() else 16
        self._reply(session, action, ("Response", "Success"), ("Message", "Channel Hungup"))
        self.hang_up(leg.channel, cause)

    def hang_up(self, channel: str, cause: int = 16) -> None:
        """End a live channel as an AMI Hangup would (also usable directly from tests)."""
        leg = self._legs[channel]
        call = leg.call
        if call.task is not None:
            call.task.cancel()
        if leg.bridge is not None:
            self._hang_up_bridged(leg, cause)
            return
        if channel.endswith(";1"):
            templates = _events_after_reply("originate-answer-dtmf1", "Channel Hungup")
        else:
            templates = [s.template for s in _far_end_hangup()[0][1:]]
        for template in templates:
            self._emit({"a": call}, template, restamp=True, causes={"a": cause})
            if template.name == "Hangup" and not call.originate_reported:
                self._emit({"a": call}, _failed_originate(1))
        self._calls.pop(call.base, None)

    def _hang_up_bridged(self, leg: _Leg, cause: int) -> None:
        """As captured: both leave the bridge; the other party is hung up too, unless it is
        the leg that ran the Bridge application (its AGI goes on, ``hotline-bridge``)."""
        bridge = leg.bridge
        assert bridge is not None
        peer = next(other for other in bridge.legs if other is not leg)
        for other in bridge.legs:
            other.bridge = None
            if other.call.task is not None:
                other.call.task.cancel()
        peer_stays = bridge.runner is peer
        roles = {"a": leg.call, "b": peer.call}
        for template in _events_after_reply("bridge-two-channels", "Channel Hungup"):
            if peer_stays and "b" in _template_roles(template) and template.name != "BridgeLeave":
                continue
            self._emit(roles, template, restamp=True, causes={"a": cause}, bridge_id=bridge.uniqueid)
        self._calls.pop(leg.call.base, None)
        if not peer_stays:
            self._calls.pop(peer.call.base, None)
        if bridge.ended is not None and not bridge.ended.done():
            bridge.ended.set_result("runner" if bridge.runner is leg else "other")

    async def _bridge(self, session: _Session, action: list[tuple[str, str]]) -> None:
        name1, name2 = header(action, "Channel1"), header(action, "Channel2")
        if not name1 or not name2:
            self._error(session, action, "Missing channel parameter in request")
            return
        leg1 = self._find_by_prefix(name1)
        if leg1 is None:
            self._error(session, action, f"Channel1 does not exist: {name1}")
            return
        leg2 = self._find_by_prefix(name2)
        if leg2 is None:
            self._error(session, action, f"Channel2 does not exist: {name2}")
            return
        self._reply(session, action, ("Response", "Success"), ("Message", "Channels have been bridged"))
        self.bridge_legs(leg1, leg2)

    def bridge_legs(self, leg1: _Leg, leg2: _Leg, *, runner: _Leg | None = None) -> _Bridge:
        """Put two live legs into a basic bridge, with the captured events.

        ``runner`` is the leg that ran the Bridge application itself: it stays up
        when the other party hangs up, and ``_Bridge.ended`` says when and who.
        """
        bridge = _Bridge(
            uniqueid=str(uuid.uuid4()),
            legs=[leg1, leg2],
            runner=runner,
            ended=asyncio.get_running_loop().create_future(),
        )
        oldest = min(bridge.legs, key=lambda leg: leg.created)
        for leg in bridge.legs:
            leg.bridge = bridge
            if leg.call.task is not None:
                leg.call.task.cancel()
            # As captured: a leg running dialplan shows the priority it returns to after the
            # bridge (the next one); both legs carry the older call's Linkedid from now on.
            priority = leg.block.get("Priority", "1")
            if leg.call.application is None and priority.isdigit():
                leg.block["Priority"] = str(int(priority) + 1)
            leg.block["Linkedid"] = oldest.block.get("Linkedid", "")
        roles = {"a": leg1.call, "b": leg2.call}
        for template in _events_after_reply("bridge-two-channels", "Channels have been bridged"):
            self._emit(roles, template, restamp=True, bridge_id=bridge.uniqueid)
        return bridge

    def _find_by_prefix(self, name: str) -> _Leg | None:
        return self._legs.get(name) or next((leg for ch, leg in self._legs.items() if ch.startswith(name)), None)

    # ------------------------------------------------------------ lists

    async def _core_show_channels(self, session: _Session, action: list[tuple[str, str]]) -> None:
        capture = load_capture("ami-ping-and-errors")
        item = next(m for m in capture.received if m.get("Event") == "CoreShowChannel")
        complete = next(m for m in capture.received if m.get("Event") == "CoreShowChannelsComplete")
        action_id = header(action, "ActionID")
        self._reply(
            session, action, ("Response", "Success"), ("EventList", "start"), ("Message", "Channels will follow")
        )
        now = time.monotonic()
        for leg in self._legs.values():
            seconds = int((now - leg.created) / self.time_scale) if self.time_scale > 0 else 0
            values = dict(leg.block)
            values.update(
                Channel=leg.channel,
                Application=leg.application,
                ApplicationData=leg.app_data,
                Duration=f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
                BridgeId=leg.bridge.uniqueid if leg.bridge else "",
            )
            session.send(encode_message(_with_action_id(_with(item.headers, **values), action_id)))
        closing = _with(complete.headers, ListItems=str(len(self._legs)))
        session.send(encode_message(_with_action_id(closing, action_id)))


# ------------------------------------------------------------------ helpers

def _response(action: Sequence[tuple[str, str]], *lines: tuple[str, str]) -> bytes:
    """A response: ``Response`` first, then ``ActionID`` when the action had one, as captured."""
    action_id = header(action, "ActionID")
    return encode_message([lines[0], *([("ActionID", action_id)] if action_id is not None else []), *lines[1:]])


def _as_dict(action: Iterable[tuple[str, str]]) -> dict[str, str]:
    """An action as a dict; a repeated header (``Variable``) is joined with commas, as Asterisk reads it."""
    result: dict[str, str] = {}
    for key, value in action:
        result[key] = f"{result[key]},{value}" if key in result else value
    return result


def _with(headers: Iterable[tuple[str, str]], **values: str) -> list[tuple[str, str]]:
    """``headers`` with the values of the given keys replaced (order kept)."""
    return [(k, values.get(k, v)) for k, v in headers]


def _with_action_id(headers: list[tuple[str, str]], action_id: str | None) -> list[tuple[str, str]]:
    if action_id is None:
        return [(k, v) for k, v in headers if k != "ActionID"]
    return _with(headers, ActionID=action_id)


def _message(capture: str, predicate: Callable[[CapturedMessage], bool]) -> Headers:
    return next(m for m in load_capture(capture).received if predicate(m)).headers


def _template_roles(template: _Template) -> set[str]:
    """The calls a template names: through its channel, or through its tokens."""
    return ({template.leg[0]} if template.leg else set()) | (template.roles - {"g"})


def _failed_originate(reason: int) -> _Template:
    """The captured failed OriginateResponse (Channel = dial string) with another Reason."""
    template = next(s.template for s in _call_events("originate-no-answer") if s.template.name == "OriginateResponse")
    return template.with_values(Reason=str(reason))


# ------------------------------------------------------------------ FakePbx


@dataclass(frozen=True, kw_only=True)
class PbxCaller:
    """A caller that :meth:`FakePbx.call_hotline` put through to the hotline's FastAGI route."""

    uniqueid: str
    channel: str  # the ;1 leg that runs AGI
    peer: AgiPeer


def phone_script(exten: str) -> dict[str, object]:
    """How the simulated phone at ``exten`` behaves on the FastAGI side (AgiPeer options).

    The same last-digit scenarios as ``[sim-phones]``: 1 presses 1 during the first
    prompt, 2 presses 2, 7 presses 9, 8 presses 1 only after the prompts (late),
    5 stays silent, 6 hangs up during the first prompt; ``press_<delay>_<keys>``
    presses its keys during the first prompt.
    """
    if match := re.fullmatch(r"press_\d+_([0-9*#A-D]+)", exten):
        return {"press_on": ("listen", match[1])}
    match exten[-1:]:
        case "1":
            return {"press_on": ("listen", "1")}
        case "2":
            return {"press_on": ("listen", "2")}
        case "7":
            return {"press_on": ("listen", "9")}
        case "8":
            return {"press_on": ("wait", "1")}
        case "6":
            return {"hang_up_at": 1}  # ANSWER is command 0, the first prompt command 1
    return {}


class FakePbx(FakeAsterisk):
    """FakeAsterisk joined with FastAGI: the AMI server and the channels' AGI sessions, together.

    - An Originate with ``Application: AGI`` / ``Data: agi://host:port/<route>``:
      once the phone answers (``OriginateResponse`` ``Reason: 4``), the ``;1`` leg
      opens a real FastAGI connection to that address (an :class:`AgiPeer` with
      ``agi_uniqueid`` = the ChannelId, ``agi_channel`` = the ``;1`` name, the
      dialled context/extension, priority 1, as in ``hotline-bridge``) and the
      phone is played over AGI by :func:`phone_script` from then on (its AMI
      timeline stops; keys do not show as AMI DTMF events).
    - :meth:`call_hotline`: a caller reaches the hotline: its channel events are
      sent on AMI and its ``;1`` leg runs the ``hotline`` route of ``agi_url``.
    - ``EXEC Bridge "<caller ;1>,x"`` on an AGI session pulls the caller out of
      its MusicOnHold (``200 result=-1`` + ``HANGUP`` on the caller's AGI) and
      bridges the two legs (BridgeCreate/BridgeEnter on AMI). It returns ``200
      result=0`` when the caller hangs up; the bridging leg then stays up until
      its FastAGI socket is closed, as captured.
    - Hang-ups show on both sides: an AMI ``Hangup`` of a leg that runs AGI
      sends ``HANGUP`` (or ``-1``) on its session; the FastAGI server closing a
      session ends its channel on AMI (unless it sits in a bridge); a phone that
      hangs up on the AGI side (scenario 6) ends on AMI as a far-end hang-up.
    - As on a real Asterisk 22, a channel that hangs up (or is hung up) while it
      runs AGI is destroyed only once the FastAGI server closes the session:
      its AGI hears the hang-up at once, but its ``Hangup`` event, and every
      event of that call after it, is published only after the socket is closed
      (:attr:`timeline` shows ``agi closed <Uniqueid>`` before ``event Hangup
      <Uniqueid>``). A channel in a bridge is not held back.

    MusicOnHold chunks end by themselves after their duration times ``time_scale``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.peers: dict[str, AgiPeer] = {}  # by the ;1 leg's Uniqueid
        self._peer_calls: dict[str, _Call] = {}
        self._agi_tasks: set[asyncio.Task[None]] = set()
        # Calls whose ;1 leg hung up while running AGI: their events from that Hangup on, until the
        # FastAGI session is closed and the channel really goes.
        self._held: dict[_Call, list[tuple[Mapping[str, _Call], _Template, list[tuple[str, str]]]]] = {}
        self._callers = itertools.count(1)

    async def stop(self) -> None:
        for call in list(self._calls.values()):
            for leg in call.legs.values():
                bridge = leg.bridge
                if bridge is not None and bridge.ended is not None and not bridge.ended.done():
                    bridge.ended.set_result("stopped")
        await super().stop()
        tasks = list(self._agi_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ control

    async def call_hotline(
        self,
        *,
        caller: str,
        dialled: str,
        agi_url: str,
        press: str = "",
        caller_name: str = "Caller",
        request: str = "hotline",
        extension: str | None = None,
        dnid: str = "unknown",
    ) -> PbxCaller:
        """A caller dials ``dialled``; the dialplan answers and runs ``AGI(<agi_url>/<request>)``.

        ``request`` is the rest of the AGI application's data: ``hotline``,
        ``hotline/ops`` (``agi_network_script: hotline/ops``) or ``hotline,ops``
        (``agi_arg_1: ops``). The AGI runs where the dialled number is the
        extension unless ``extension`` says otherwise: from an ``s`` extension
        (after a ``Goto`` into a shared IVR) Asterisk shows ``agi_extension: s``,
        and ``agi_dnid`` is ``unknown`` for a channel that carries no DNID.
        """
        number = next(self._callers)
        call = self._new_call(
            "Local/s@sim-callers",
            application=None,
            data="",
            context="hotline-in",
            exten=dialled if extension is None else extension,
            channel_id=f"{int(self._started)}.{number + 100}",
            other_id=f"{int(self._started)}.{number + 100}-b",
            caller_id=f'"{caller_name}" <{caller}>' if caller else None,
            action_id=None,
            timeout_s=30.0,
            inbound=True,
        )
        call.data = f"{agi_url.rstrip('/')}/{request}"
        call.values["press"] = press
        call.values["dnid"] = dnid
        uniqueid = call.values["cid"] or ""
        peer = await self.wait_peer(uniqueid)
        return PbxCaller(uniqueid=uniqueid, channel=f"{call.base};1", peer=peer)

    async def hang_up_caller(self, caller: PbxCaller, cause: int = 16) -> None:
        """The caller hangs up (AMI Hangup events, and HANGUP on its AGI if it still runs one)."""
        if caller.channel in self._legs:
            self.hang_up(caller.channel, cause)
        await asyncio.sleep(0)

    async def wait_peer(self, uniqueid: str, timeout: float = 3.0) -> AgiPeer:
        """The AGI session of the leg ``uniqueid`` once it has connected."""

        async def poll() -> AgiPeer:
            while uniqueid not in self.peers:
                await asyncio.sleep(0.005)
            return self.peers[uniqueid]

        return await asyncio.wait_for(poll(), timeout)

    def live(self, uniqueid: str) -> bool:
        """Is the ;1 leg with this Uniqueid still up?"""
        return any(leg.uniqueid == uniqueid for leg in self._legs.values())

    # ------------------------------------------------------------ hooks

    def hang_up(self, channel: str, cause: int = 16) -> None:
        leg = self._legs.get(channel)
        if leg is not None and leg.call in self._held:
            return  # already ending: the channel goes when its AGI session is closed
        super().hang_up(channel, cause)

    def _hold_back(
        self, roles: Mapping[str, _Call], template: _Template, headers: list[tuple[str, str]]
    ) -> bool:
        call = roles[template.leg[0]] if template.leg else None
        if call is None:
            return False
        held = self._held.get(call)
        if held is not None:
            held.append((roles, template, headers))
            return True
        if template.name != "Hangup" or template.leg != ("a", "1"):
            return False
        leg = self._legs.get(header(headers, "Channel") or "")
        peer = self.peers.get(leg.uniqueid) if leg is not None else None
        if leg is None or leg.bridge is not None or peer is None or not peer.connected:
            return False
        # The channel runs AGI: the AGI hears the hang-up now; the channel (and its Hangup event)
        # ends when the FastAGI server closes the session.
        self._held[call] = [(roles, template, headers)]
        if not peer.agi_dead:
            self._spawn(peer.hang_up())
        return True

    def _release(self, call: _Call) -> None:
        """The session of ``call``'s ;1 leg is closed: publish what its end held back."""
        for roles, template, headers in self._held.pop(call, []):
            self._publish(roles, template, headers)

    def _observe(
        self, roles: Mapping[str, _Call], template: _Template, headers: Sequence[tuple[str, str]]
    ) -> None:
        name = header(headers, "Event")
        if name == "OriginateResponse" and header(headers, "Reason") == "4":
            call = roles[next(iter(template.roles - {"g"}), "a")]
            if (call.application or "").upper() == "AGI" or call.inbound:
                self._start_agi(call)
        elif name == "Hangup":
            peer = self.peers.get(header(headers, "Uniqueid") or "")
            if peer is not None and not peer.agi_dead:
                self._spawn(peer.hang_up())

    def _start_agi(self, call: _Call) -> None:
        # AGI(<url>[,<arg1>,...]): res_agi sends the path after host:port as agi_network_script
        # and the other arguments as agi_arg_1...
        url, *args = (call.data or "").split(",")
        match = re.fullmatch(r"agi://([^:/]+)(?::(\d+))?/(\S+)", url)
        if match is None:
            return
        if call.task is not None:
            call.task.cancel()  # from here on the phone is played over AGI
        host, port, script = match[1], int(match[2] or 4573), match[3]
        uniqueid = call.values["cid"] or ""
        options = phone_script(call.values["num"] or "")
        if call.inbound:
            press = call.values.get("press") or ""
            options = {"press_on": ("listen", press)} if press else {}
        peer = AgiPeer(
            port,
            host=host,
            script=script,
            request_host=f"{host}:{port}",
            channel=f"{call.base};1",
            uniqueid=uniqueid,
            callerid=call.values["cidnum"] or "",
            calleridname=call.values["cidname"] or "",
            context=call.values["oc"] or "",
            extension=call.values["oe"] or "",
            priority="2" if call.inbound else "1",
            dnid=call.values.get("dnid") or "unknown",
            args=args,
            hold_scale=self.time_scale,
            on_bridge=lambda data: self._bridge_from(call, data),
            on_lost=lambda: self._far_end_hung_up(call),
            **options,  # type: ignore[arg-type]
        )
        self.peers[uniqueid] = peer
        self._peer_calls[uniqueid] = call
        self._spawn(self._run_peer(call, peer))

    async def _run_peer(self, call: _Call, peer: AgiPeer) -> None:
        try:
            await peer.run()
        except (ConnectionError, OSError):
            pass  # nobody listening, or the server vanished: the channel ends as below
        self.timeline.append(f"agi closed {call.values['cid']}")
        self._release(call)
        leg = call.legs.get("1")
        if leg is not None and leg.channel in self._legs and leg.bridge is None:
            self.hang_up(leg.channel)  # closing the FastAGI socket is what ends the channel

    def _far_end_hung_up(self, call: _Call) -> None:
        if call in self._held:
            return  # the call is already ending (its AGI heard that hang-up)
        leg = call.legs.get("2")
        if leg is not None and leg.channel in self._legs and leg.bridge is None:
            self.hang_up(leg.channel)

    async def _bridge_from(self, runner_call: _Call, data: str) -> str:
        """``EXEC Bridge "<channel>,x"`` on ``runner_call``'s AGI: lasts as long as the bridge."""
        target = data.split(",")[0]
        runner_leg = runner_call.legs.get("1")
        other = self._legs.get(target)
        runner_peer = self.peers.get(runner_call.values["cid"] or "")
        if other is None or runner_leg is None:
            if runner_peer is not None:
                runner_peer.variables["BRIDGERESULT"] = "NONEXISTENT"
            return "200 result=0"
        other_peer = self.peers.get(other.uniqueid)
        if other_peer is not None and not other_peer.agi_dead:
            await other_peer.pull_into_bridge()
        if other.channel not in self._legs or runner_leg.channel not in self._legs:
            return "200 result=-1"
        bridge = self.bridge_legs(other, runner_leg, runner=runner_leg)
        assert bridge.ended is not None
        who = await bridge.ended
        return "200 result=-1" if who == "runner" else "200 result=0"

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._agi_tasks.add(task)
        task.add_done_callback(self._agi_tasks.discard)
