"""Which route (team, policy, priority) an alert takes: Alertmanager-style label matchers."""

from __future__ import annotations

import hmac
import re

from gateway.config import Config, Matcher, Route

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


def select_route(config: Config, labels: dict[str, str], routing_key: str | None = None) -> Route:
    """The route for an alert: a route with this ``routing_key`` first, then the first route
    whose matchers all match (a route with a routing_key and no matchers is taken only by
    its key), then the default route. Raises LookupError when none applies."""
    if routing_key:
        keyed = None
        for route in config.routes:  # every key compared, no early exit: the time taken does not tell which
            if _same_key(route.routing_key, routing_key) and keyed is None:
                keyed = route
        if keyed is not None:
            return keyed
    for route in config.routes:
        if route.routing_key is not None and not route.matchers:
            continue  # a routing-key-only route: never a catch-all
        if all(matches(m, labels) for m in route.matchers):
            return route
    if config.default_route is not None:
        return config.default_route
    raise LookupError("no route matches and no default_route is configured")
