"""Which route (team, policy, priority) an alert takes: Alertmanager-style label matchers, and the
conditions a route (or a priority rule) may add: Alertmanager's receiver, a time rule (``when``/``unless``
time windows at the alert's arrival) and a CEL expression (gateway.expressions). All must hold."""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from gateway.config import Config, Matcher, Route, TimeWindow
from gateway.expressions import WEEKDAYS, Activation, Expression, Facts
from gateway.signals import AlertSignal
from gateway.time_windows import contains

log = logging.getLogger(__name__)

_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BARE = re.compile(r"[^\s\"'=!~,][^\s\"',]*")
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _unquote(body: str) -> str:
    # Known escapes are decoded; any other backslash stays, so regexes like "\d+" read naturally.
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body, flags=re.DOTALL)


def compile_pattern(value: str) -> re.Pattern[str]:
    """Anchor a regex at both ends, as Alertmanager does (``^(?:value)$``, with ``\\Z`` for the end)."""
    return re.compile(f"^(?:{value})\\Z")


def parse_matcher(text: str) -> Matcher:
    """Parse ``label="value"`` with op ``=``, ``!=``, ``=~`` or ``!~``; the value may be a bare word."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a matcher: expected text like team=\"sre\"")
    found = _MATCHER.fullmatch(text)
    if not found:
        raise ValueError(f"{text!r} is not a matcher: expected label=\"value\" (ops: = != =~ !~)")
    label, op, raw = found.groups()
    quoted = _QUOTED.fullmatch(raw)
    if quoted:
        value = _unquote(quoted.group(1))
    elif _BARE.fullmatch(raw):
        value = raw
    else:
        raise ValueError(f"{text!r} is not a matcher: quote the value, e.g. {label}{op}\"...\"")
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = compile_pattern(value)
        except re.error as exc:
            raise ValueError(f"{text!r} has an invalid regular expression: {exc}") from None
    return Matcher(label=label, op=op, value=value, pattern=pattern)


def matches(matcher: Matcher, labels: dict[str, str]) -> bool:
    """Whether ``labels`` satisfy ``matcher``; a missing label counts as the empty string."""
    actual = labels.get(matcher.label, "")
    if matcher.op == "=":
        return actual == matcher.value
    if matcher.op == "!=":
        return actual != matcher.value
    pattern = matcher.pattern or compile_pattern(matcher.value)
    found = pattern.match(actual) is not None
    if matcher.op == "=~":
        return found
    if matcher.op == "!~":
        return not found
    raise ValueError(f"unknown matcher op {matcher.op!r}")


def _same_key(a: str | None, b: str) -> bool:
    # surrogatepass: a key from JSON may hold a lone surrogate, which plain UTF-8 cannot encode
    return a is not None and hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                                                 b.encode("utf-8", "surrogatepass"))


def select_route(config: Config, labels: dict[str, str], routing_key: str | None = None, *,
                 arrival: Arrival | None = None) -> Route:
    """The route for an alert: a route with this ``routing_key`` first, then the first route
    whose matchers and conditions all hold (a route with a routing_key and no matchers is taken
    only by its key), then the default route. Raises LookupError when none applies.

    Without ``arrival`` a route with a time rule or an expression does not match."""
    if routing_key:
        keyed = None
        for route in config.routes:  # every key compared, no early exit: the time taken does not tell which
            if _same_key(route.routing_key, routing_key) and keyed is None:
                keyed = route
        if keyed is not None:
            return keyed
    check = Check(labels, arrival, config.time_zone)
    for route in config.routes:
        if route.routing_key is not None and not route.matchers:
            continue  # a routing-key-only route: never a catch-all
        if check.holds(route, "route"):
            return route
    if config.default_route is not None:
        return config.default_route
    raise LookupError("no route matches and no default_route is configured")


# ------------------------------------------------------------------ conditions


def parse_receiver(raw: object) -> Matcher:
    """A route's ``receiver:``: a name (equality), or ``=~regex``, ``!~regex``, ``!=name``."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("expected a receiver name, or =~\"regex\" (also !~ and !=)")
    text = raw.strip()
    op = next((op for op in ("=~", "!~", "!=") if text.startswith(op)), "=")
    value = text.removeprefix(op).strip() if op != "=" else text
    quoted = _QUOTED.fullmatch(value)
    if quoted:
        value = _unquote(quoted.group(1))
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = compile_pattern(value)
        except re.error as exc:
            raise ValueError(f"{raw!r} has an invalid regular expression: {exc}") from None
    return Matcher(label="receiver", op=op, value=value, pattern=pattern)


@dataclass(frozen=True, kw_only=True)
class Arrival:
    """What is known of an alert when it arrives, besides its labels."""

    at: datetime  # aware: the injected clock's now
    source: str = ""
    receiver: str = ""  # "" for sources without one
    annotations: Mapping[str, str] = field(default_factory=dict)
    priority: str = ""  # what the sender asked for ("high", "low"), "" when it did not say

    @classmethod
    def of(cls, signal: AlertSignal, now: float) -> Arrival:
        raw = signal.details.get("annotations")
        annotations = {k: v for k, v in raw.items() if isinstance(v, str)} if isinstance(raw, dict) else {}
        return cls(at=datetime.fromtimestamp(now, UTC), source=signal.source, receiver=signal.receiver,
                   annotations=annotations, priority=signal.priority or "")


class Conditional(Protocol):
    """A route or a priority rule: what must hold for it to apply."""

    @property
    def name(self) -> str: ...
    @property
    def matchers(self) -> tuple[Matcher, ...]: ...
    @property
    def receiver(self) -> Matcher | None: ...
    @property
    def when(self) -> tuple[TimeWindow, ...]: ...
    @property
    def unless(self) -> tuple[TimeWindow, ...]: ...
    @property
    def expression(self) -> Expression | None: ...


#: (what, error) pairs already logged: an expression that fails on every alert is reported once, not per alert
_reported: set[tuple[str, str]] = set()
_REPORTED_MAX = 1000


class Check:
    """One alert checked against routes or rules; its time windows and CEL bindings are worked out once."""

    def __init__(self, labels: Mapping[str, str], arrival: Arrival | None, time_zone: str) -> None:
        self.labels = dict(labels)
        self.arrival = arrival
        self.time_zone = time_zone
        self._receiver = {"receiver": arrival.receiver if arrival else ""}
        self._inside: dict[str, bool] = {}
        self._activation: Activation | None = None

    def holds(self, rule: Conditional, what: str) -> bool:
        """Whether ``rule``'s matchers, receiver, time rule and expression all hold; ``what`` names it in logs."""
        if not all(matches(m, self.labels) for m in rule.matchers):
            return False
        if rule.receiver is not None and not matches(rule.receiver, self._receiver):
            return False
        if rule.when or rule.unless:
            if self.arrival is None:
                return False
            if rule.when and not any(self._in(window) for window in rule.when):
                return False
            if any(self._in(window) for window in rule.unless):
                return False
        if rule.expression is not None:
            return self._true(rule.expression, f"{what} {rule.name}")
        return True

    def _in(self, window: TimeWindow) -> bool:
        assert self.arrival is not None
        inside = self._inside.get(window.name)
        if inside is None:
            inside = self._inside[window.name] = contains(window, self.arrival.at)
        return inside

    def _true(self, expression: Expression, what: str) -> bool:
        if self.arrival is None:
            return False
        if self._activation is None:
            self._activation = Activation(self.facts())
        result = self._activation.evaluate(expression)
        if isinstance(result, bool):
            return result
        key = (what, result)
        if key not in _reported and len(_reported) <= _REPORTED_MAX:
            _reported.add(key)
            if len(_reported) > _REPORTED_MAX:  # error texts can carry an alert's data: do not log them without end
                log.warning("%s: expression counts as no match (and so do more errors, no longer logged)", what)
            else:
                log.warning("%s: expression counts as no match: %s (logged once)", what, result)
        return False

    def facts(self) -> Facts:
        """The expression variables of this alert (``arrival`` is set)."""
        assert self.arrival is not None
        local = self.arrival.at.astimezone(ZoneInfo(self.time_zone))
        return Facts(labels=self.labels, annotations=self.arrival.annotations, priority=self.arrival.priority,
                     source=self.arrival.source, receiver=self.arrival.receiver, now=self.arrival.at,
                     hour=local.hour, weekday=WEEKDAYS[local.weekday()])
