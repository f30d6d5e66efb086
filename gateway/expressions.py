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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
    return Expression(source=source, program=program)


class Activation:
    """The facts of one alert bound once, for every expression evaluated on it."""

    def __init__(self, facts: Facts) -> None:
        self._bound: Any = None
        self._unbound = ""  # why the facts could not be bound, if they could not
        try:
            self._bound = _env().Activation({
                "labels": dict(facts.labels),
                "annotations": dict(facts.annotations),
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
