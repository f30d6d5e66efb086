"""Personal notification rules: how an engineer wants to be reached when a policy step pages them.

An engineer's rules replace the step's ``via`` for their own pages: each rule is one page on its channel,
due ``after`` the step starts (``[{via: sms, after: 0s}, {via: call, after: 1m}]``: a text at once, a call a
minute later). Read from the YAML (``engineers.<id>.notification_rules``) and from the API (a stored set
replaces the YAML's); both go through :func:`parse_rules`, so they accept and refuse the same things.

Pure: no store, no clock (``gateway.rule_book`` keeps the sets in force; the scheduler applies them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from core.enums import Channel
from gateway.durations import format_duration, parse_duration

if TYPE_CHECKING:
    from gateway.config import Config

RULE_KEYS = ("via", "after")
MAX_RULES = 10
MAX_AFTER_S = 24 * 3600  # no step waits a day for an answer
_VIAS = (Channel.CALL.value, Channel.SMS.value)  # the phone channels: email and chat are a step's own (via:)


@dataclass(frozen=True, kw_only=True)
class NotificationRule:
    via: Channel  # one page on this channel
    after_s: int  # this many seconds after the step starts (0: at once)

    def describe(self) -> str:
        when = "at once" if not self.after_s else f"after {format_duration(timedelta(seconds=self.after_s))}"
        return f"{self.via} {when}"

    def as_json(self) -> dict[str, Any]:
        return {"via": self.via.value, "after": format_duration(timedelta(seconds=self.after_s)),
                "after_s": self.after_s}


def parse_rules(raw: object) -> tuple[tuple[NotificationRule, ...], list[tuple[str, str]]]:
    """The rules in ``raw`` (a list of ``{via, after}``), ordered by delay, and every problem found as
    ``(sub-path, message)``, the sub-path relative to the list (``[1].via``); no rules when there is a problem."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, list):
        return (), [("", "expected a list of rules like {via: sms, after: 0s}")]
    if not raw:
        return (), [("", "at least one rule is needed (leave the rules out to be paged as each step says)")]
    if len(raw) > MAX_RULES:
        problems.append(("", f"at most {MAX_RULES} rules, got {len(raw)}"))
    rules: list[tuple[str, NotificationRule]] = []
    for index, item in enumerate(raw):
        where = f"[{index}]"
        if not isinstance(item, dict):
            problems.append((where, "expected a mapping like {via: sms, after: 0s}"))
            continue
        for key in item:
            if key not in RULE_KEYS:
                problems.append((f"{where}.{key}", f"unknown key (expected one of: {', '.join(RULE_KEYS)})"))
        via, after_s = item.get("via"), _after_s(item.get("after", 0), f"{where}.after", problems)
        if via not in _VIAS:
            problems.append((f"{where}.via", f"must be one of: {', '.join(_VIAS)}, got {via!r}"))
        elif after_s is not None:
            rules.append((where, NotificationRule(via=Channel(via), after_s=after_s)))
    seen: set[NotificationRule] = set()
    for where, rule in rules:
        if rule in seen:
            problems.append((where, f"the rule {rule.describe()} is listed twice"))
        seen.add(rule)
    if problems:
        return (), problems
    return tuple(sorted((rule for _, rule in rules), key=lambda rule: (rule.after_s, rule.via))), []


def _after_s(raw: object, where: str, problems: list[tuple[str, str]]) -> int | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw < 0:
        problems.append((where, f"must not be negative, got {raw!r}"))
        return None
    if isinstance(raw, str) and raw.strip().startswith("-"):
        problems.append((where, f"must not be negative, got {raw!r}"))
        return None
    if isinstance(raw, float) and not math.isfinite(raw):
        problems.append((where, f"{raw!r} is not a duration (use e.g. 20s, 5m, 1h30m)"))
        return None
    try:
        delay = parse_duration(raw)
    except ValueError as exc:
        problems.append((where, str(exc)))
        return None
    except OverflowError:  # beyond what a timedelta holds: far past the limit anyway
        problems.append((where, f"must be at most {format_duration(timedelta(seconds=MAX_AFTER_S))}, got {raw!r}"))
        return None
    if delay % timedelta(seconds=1):
        problems.append((where, f"must be a whole number of seconds, got {raw!r}"))
        return None
    if delay > timedelta(seconds=MAX_AFTER_S):
        problems.append((where, f"must be at most {format_duration(timedelta(seconds=MAX_AFTER_S))}, got {raw!r}"))
        return None
    return int(delay.total_seconds())


def rules_to_text(rules: tuple[NotificationRule, ...] | None) -> str | None:
    """How the stores keep a set (JSON; None: back to the config's)."""
    return None if rules is None else json.dumps([{"via": r.via.value, "after_s": r.after_s} for r in rules])


def rules_from_text(text: str | None) -> tuple[NotificationRule, ...] | None:
    if text is None:
        return None
    return tuple(NotificationRule(via=Channel(item["via"]), after_s=int(item["after_s"])) for item in json.loads(text))


def never_fire(config: Config) -> list[str]:
    """Warnings for YAML rules that no step could ever send: their delay reaches or passes the timeout of
    every step that may page the engineer (a step naming another engineer never pages them)."""
    warnings = []
    for engineer in config.engineers.values():
        timeouts = [step.timeout_s for policy in config.policies.values() for step in policy.steps
                    if step.target != "engineer" or step.engineer == engineer.id]
        longest = max(timeouts, default=0)
        for index, rule in enumerate(engineer.notification_rules):
            if rule.after_s >= longest:
                warnings.append(f"engineers.{engineer.id}.notification_rules[{index}]: {rule.describe()} can never "
                                f"be sent: no step that may page {engineer.id} lasts longer than "
                                f"{format_duration(timedelta(seconds=longest))}")
    return warnings
