"""Route and priority-rule expressions in the Common Expression Language (CEL), over one alert.

The one adapter over ``cel-expr-python`` (the CEL project's own Python runtime, a wrapper of cel-cpp): it
type-checks at load, so an unknown variable, a comparison of a string with a number or a result that is
not true/false is a config error, and evaluating a compiled expression costs a few microseconds.

Variables (``Facts`` gives their values):

- ``labels``, ``annotations``: ``map(string, string)``. A missing key is an error, so ``labels.tier == "x"``
  does not match an alert without ``tier``; ask ``has(labels.tier)``, ``"tier" in labels`` or
  ``labels.?tier.orValue("")`` when that matters.
- ``priority``, ``source``, ``receiver``: strings ("" when unknown).
- ``now``: the alert's arrival as a timestamp (``now.getHours("Europe/Amsterdam")``).
- ``hour`` (0-23) and ``weekday`` ("mon" ... "sun"): ``now`` in the config's ``defaults.time_zone``.

The optional-value syntax (``labels.?x``) and the strings extension (``lowerAscii()``, ``split()``...)
are enabled.

Bounded at run time: cel-cpp stops a comprehension after about 10,000 iterations (an evaluation error, so no
match), and ``compile_expression`` refuses what could still build a huge value from an alert's labels: text or
lists joined inside a macro (doubling at each ``map`` or ``optMap``), ``join`` with a separator and a ``replace``
that can lengthen text (chained, they grow a value exponentially). See ``_unbounded``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_optional, ext_strings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NOISE = re.compile(r"^(?:[A-Z_]+: )?(?:ERROR: )?(?:<input>:)?|\s*\[[A-Z_]+\]$")


@cache
def _env() -> Any:
    text = cel.Type.STRING
    return cel.NewEnv(
        variables={
            "labels": cel.Type.Map(text, text),
            "annotations": cel.Type.Map(text, text),
            "priority": text,
            "source": text,
            "receiver": text,
            "now": cel.Type.TIMESTAMP,
            "hour": cel.Type.INT,
            "weekday": text,
        },
        extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings()],
    )


@dataclass(frozen=True, kw_only=True)
class Expression:
    """A compiled expression; equal when the source text is."""

    source: str
    program: Any = field(compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What an expression can ask about one alert."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    priority: str
    source: str
    receiver: str
    now: datetime  # aware
    hour: int
    weekday: str


def _message(error: Exception) -> str:
    """cel-cpp's error text on one line: ``1:15: Syntax error: ...`` without the caret drawing."""
    lines = [line.strip() for line in str(error).splitlines()]
    found = [_NOISE.sub("", line) for line in lines if line and not line.startswith("|")]
    return "; ".join(part for part in found if part) or str(error)


def compile_expression(source: str) -> Expression:
    """Parse and type-check ``source``; ValueError saying what is wrong (with line:column) otherwise."""
    try:
        program = _env().compile(source)
    except RuntimeError as exc:
        raise ValueError(f"does not compile: {_message(exc)}") from None
    result = program.return_type()
    if result != cel.Type.BOOL and result != cel.Type.DYN:
        raise ValueError(f"must give true or false, but gives {result.name().lower()}")
    problem = _unbounded(program.serialize())
    if problem:
        raise ValueError(problem)
    return Expression(source=source, program=program)


# ------------------------------------------------------------------ what an expression may build
# The checked expression, as cel-cpp serializes it: google.protobuf.Any holding a cel.expr.CheckedExpr
# (cel-spec proto/cel/expr/checked.proto and syntax.proto), read with a few lines of protobuf wire format.

#: overloads that join text or lists: fine once, refused where they run once per iteration
_JOINING = ("add_string", "add_bytes", "add_list", "string_format", "list_join")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one protobuf message; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
        yield number, value


def _messages(data: bytes, number: int) -> list[bytes]:
    return [value for field_number, value in _fields(data) if field_number == number and isinstance(value, bytes)]


def _text_constant(expr: bytes) -> str | None:
    """The text of a string literal expression, or None."""
    for constant in _messages(expr, 3):
        for text in _messages(constant, 6):
            return text.decode("utf-8", "replace")
    return None


def _ident(expr: bytes) -> str | None:
    for ident in _messages(expr, 4):
        return next((name.decode() for name in _messages(ident, 1)), "")
    return None


def _unbounded(serialized: bytes) -> str:
    """Why the checked expression could build a value far larger than the alert's data, or ""."""
    try:
        if _messages(serialized, 1) != [b"type.googleapis.com/cel.expr.CheckedExpr"]:
            raise ValueError("not a CheckedExpr")
        return _unbounded_checked(_messages(serialized, 2)[0])  # Any.value: the CheckedExpr
    except (IndexError, ValueError) as exc:  # fail closed: an expression that cannot be checked is not run
        return f"cannot be checked for unbounded values (has cel-expr-python changed its serialized form?): {exc}"


def _unbounded_checked(checked: bytes) -> str:
    overloads: dict[int, list[str]] = {}
    for entry in _messages(checked, 2):  # reference_map: expression id -> Reference (overload_id = 3)
        fields = dict(_fields(entry))
        key, reference = fields.get(1), fields.get(2)
        if isinstance(key, int) and isinstance(reference, bytes):
            overloads[key] = [name.decode() for name in _messages(reference, 3)]
    for expr in _messages(checked, 4):
        problem = _walk(expr, overloads, accumulator=None)
        if problem:
            return problem
    return ""


def _walk(expr: bytes, overloads: dict[int, list[str]], accumulator: str | None) -> str:
    """``accumulator``: the comprehension accumulator when ``expr`` runs once per iteration, else None."""
    fields = list(_fields(expr))
    node = next((value for number, value in fields if number == 2 and isinstance(value, int)), 0)
    children: list[tuple[bytes, str | None]] = []
    for number, value in fields:
        if not isinstance(value, bytes):
            continue
        if number == 5:  # select: operand
            children += [(operand, accumulator) for operand in _messages(value, 1)]
        elif number == 7:  # list: elements
            children += [(element, accumulator) for element in _messages(value, 1)]
        elif number == 8:  # map: keys and values
            children += [(part, accumulator) for entry in _messages(value, 2) for part in
                         (*_messages(entry, 3), *_messages(entry, 4))]
        elif number == 9:  # comprehension: condition and step run once per iteration; the result of a
            # bind-like macro (optMap, optFlatMap) sees the value it was given, so chained they can double it too
            accu = next((name.decode() for name in _messages(value, 3)), "")
            children += [(part, accumulator) for part in (*_messages(value, 2), *_messages(value, 4))]
            children += [(part, accu) for part in (*_messages(value, 5), *_messages(value, 6), *_messages(value, 7))]
        elif number == 6:  # call
            problem = _call(value, overloads.get(node, []), accumulator)
            if problem:
                return problem
            children += [(part, accumulator) for part in (*_messages(value, 1), *_messages(value, 3))]
    for child, inside in children:
        problem = _walk(child, overloads, inside)
        if problem:
            return problem
    return ""


def _call(call: bytes, overloads: list[str], accumulator: str | None) -> str:
    function = next((name.decode() for name in _messages(call, 2)), "?")
    name = "+" if function == "_+_" else f"{function}()"
    args = _messages(call, 3)
    if any(overload.startswith("string_replace") for overload in overloads):
        old, new = (_text_constant(arg) for arg in [*args, b"", b""][:2])
        if new != "" and (new is None or not old or len(new) > len(old)):
            return ("replace() may lengthen the text (chained, without bound): give the replacement as a "
                    "literal no longer than the literal it replaces")
    if "list_join_string" in overloads:
        return "join() with a separator may build text without bound: compare the parts instead"
    if "strings_quote" in overloads:  # each call can double the backslashes of the one before
        return "strings.quote() may build text without bound (chained, it doubles): compare the text itself"
    if accumulator is not None and any(overload.startswith(_JOINING) for overload in overloads):
        if function == "_+_" and args and _ident(args[0]) == accumulator and accumulator.startswith("@"):
            return ""  # the map or filter macro appending to its own result (@result: not a name one can write)
        return (f"{name} inside all/exists/exists_one/map/filter/optMap/optFlatMap may build values without "
                "bound (each iteration or chained call can double them): compare the parts instead")
    return ""


#: the longest label or annotation value an expression sees (longer ones are cut): an expression may run a
#: loop over one value per item of another (up to the library's 10,000 iterations), so the sender's data must
#: not be able to make one evaluation take seconds on the event loop
MAX_VALUE_CHARS = 4096


def _capped(values: Mapping[str, str]) -> dict[str, str]:
    return {key[:MAX_VALUE_CHARS]: value[:MAX_VALUE_CHARS] for key, value in values.items()}


class Activation:
    """The facts of one alert bound once, for every expression evaluated on it."""

    def __init__(self, facts: Facts) -> None:
        self._bound: Any = None
        self._unbound = ""  # why the facts could not be bound, if they could not
        try:
            self._bound = _env().Activation({
                "labels": _capped(facts.labels),
                "annotations": _capped(facts.annotations),
                "priority": facts.priority,
                "source": facts.source,
                "receiver": facts.receiver,
                "now": facts.now,
                "hour": facts.hour,
                "weekday": facts.weekday,
            })
        except Exception as exc:  # text CEL cannot hold: every expression fails on this alert, none raises
            self._unbound = _message(exc)

    def evaluate(self, expression: Expression) -> bool | str:
        """True or False, or the error text when evaluation fails (a missing key, a bad conversion, a result
        that is not true/false). Never raises for the alert's data."""
        if self._bound is None:
            return self._unbound
        try:
            value = expression.program.eval(self._bound)
        except Exception as exc:  # the library's own errors: reported as a no-match, never raised
            return _message(exc)
        kind = value.type()
        if kind == cel.Type.BOOL:
            return bool(value.value())
        if kind == cel.Type.ERROR:
            return _message(Exception(str(value.value())))
        return f"gave {kind.name().lower()}, not true or false"
