"""The AGI command language: command lines we send, reply lines Asterisk sends back.

Replies are ``<code> result=<value>[ <extra>]`` (``200 result=49 endpos=9760``,
``200 result= (timeout)``, ``200 result=1 (SUCCESS)``), or a bare status line
(``511 Command Not Permitted on a dead channel or intercept routine``,
``510 Invalid or unknown command``), or a multi-line usage error that starts
with ``520-`` and ends with a ``520 `` line. Which result convention applies
depends on the command: ``STREAM FILE``, ``WAIT FOR DIGIT`` and the ``SAY``
commands report a key as its ASCII code (``49`` is ``1``, ``0`` none), while
``GET DATA`` reports the keys as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ALL_KEYS = "0123456789*#"
DEAD_CHANNEL = 511

_REPLY = re.compile(r"^(\d{3})[ -](.*)$")
_ENDPOS = re.compile(r"(?:^|\s)endpos=(-?\d+)")


class AgiProtocolError(Exception):
    """A line from Asterisk that is not an AGI reply."""


@dataclass(frozen=True, kw_only=True)
class AgiReply:
    """One reply. ``result`` is the text after ``result=`` (may be empty); ``extra`` the rest."""

    code: int
    result: str = ""
    extra: str = ""
    raw: str = ""

    @property
    def ok(self) -> bool:
        return self.code == 200

    @property
    def dead_channel(self) -> bool:
        """511: the command needs a live channel and this one is gone."""
        return self.code == DEAD_CHANNEL

    @property
    def failed(self) -> bool:
        """``result=-1``: hung up while running, or (for prompts) the file could not be played."""
        return self.ok and self.result.startswith("-")

    @property
    def digit(self) -> str | None:
        """The key of an ASCII-code result (STREAM FILE, WAIT FOR DIGIT, SAY ...), or None."""
        try:
            code = int(self.result)
        except ValueError:
            return None
        return chr(code) if 0 < code < 256 else None

    @property
    def endpos(self) -> int | None:
        match = _ENDPOS.search(self.extra)
        return int(match.group(1)) if match else None

    @property
    def value(self) -> str | None:
        """The text in parentheses: ``(SUCCESS)`` of GET VARIABLE, ``(timeout)``, ``(hangup)``."""
        start, end = self.extra.find("("), self.extra.rfind(")")
        if start < 0 or end < start:
            return None
        return self.extra[start + 1 : end]


def parse_reply(text: str) -> AgiReply:
    """Parse one reply; ``text`` may hold several lines (a 520 usage block)."""
    first, _, rest = text.partition("\n")
    match = _REPLY.match(first)
    if match is None:
        raise AgiProtocolError(f"not an AGI reply: {first[:80]!r}")
    code, body = int(match.group(1)), match.group(2)
    if body.startswith("result="):
        result, _, extra = body[len("result=") :].partition(" ")
        return AgiReply(code=code, result=result, extra=extra.strip(), raw=text)
    extra = body if not rest else f"{body}\n{rest}"
    return AgiReply(code=code, extra=extra, raw=text)


def is_continuation_start(line: str) -> bool:
    """True for the first line of a multi-line reply (``520-...``)."""
    return len(line) > 3 and line[:3].isdigit() and line[3] == "-"


def ends_continuation(line: str, code: str) -> bool:
    return line.startswith(f"{code} ")


# ------------------------------------------------------------------ commands


def _arg(value: str) -> str:
    """One argument, quoted when it holds a space (AGI splits on spaces, honours quotes)."""
    _check(value)
    if value == "" or any(ch.isspace() for ch in value):
        return f'"{value}"'
    return value


def _check(value: str) -> str:
    if any(ch in value for ch in '"\r\n'):
        raise ValueError(f"AGI argument must not contain quotes or line breaks: {value!r}")
    return value


def answer() -> str:
    return "ANSWER"


def hangup() -> str:
    return "HANGUP"


def channel_status() -> str:
    return "CHANNEL STATUS"


def stream_file(file: str, escape_digits: str = "") -> str:
    """Play ``file`` (no extension); a key in ``escape_digits`` stops it and is reported."""
    return f'STREAM FILE {_arg(file)} "{_check(escape_digits)}"'


def wait_for_digit(timeout_ms: int) -> str:
    return f"WAIT FOR DIGIT {int(timeout_ms)}"


def get_data(file: str, timeout_ms: int, max_digits: int) -> str:
    return f"GET DATA {_arg(file)} {int(timeout_ms)} {int(max_digits)}"


def say_digits(number: str, escape_digits: str = "") -> str:
    if not number.isdigit():
        raise ValueError(f"SAY DIGITS needs digits, got {number!r}")
    return f'SAY DIGITS {number} "{_check(escape_digits)}"'


def exec_app(application: str, *args: str) -> str:
    """``EXEC App "a,b"``: dialplan application arguments are comma-separated."""
    if not application.isalnum():
        raise ValueError(f"not an application name: {application!r}")
    joined = ",".join(_check(arg) for arg in args)
    return f'EXEC {application} "{joined}"'


def get_variable(name: str) -> str:
    return f"GET VARIABLE {_arg(name)}"


def set_variable(name: str, value: str) -> str:
    return f"SET VARIABLE {_arg(name)} {_arg(value)}"


def record_file(
    path: str,
    *,
    fmt: str = "wav",
    escape_digits: str = "#",
    timeout_ms: int,
    beep: bool = True,
    silence_s: int | None = None,
) -> str:
    """``RECORD FILE <path> <fmt> "<escape>" <timeout_ms> 0 [BEEP] [s=<silence>]``.

    The reply is ``200 result=<key> (dtmf) endpos=N``, ``200 result=0 (timeout)
    endpos=N`` (time limit or silence), or ``200 result=-1 (hangup) endpos=N``.
    """
    parts = [
        "RECORD FILE",
        _arg(path),
        _arg(fmt),
        f'"{_check(escape_digits)}"',
        str(int(timeout_ms)),
        "0",
    ]
    if beep:
        parts.append("BEEP")
    if silence_s:
        parts.append(f"s={int(silence_s)}")
    return " ".join(parts)
