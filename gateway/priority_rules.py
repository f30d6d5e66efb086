"""Priority rules (``priority_rules:``): raise an alert to high priority once its route is chosen, when a
rule's conditions hold (equipment, customer tier, time...). A rule never lowers a priority; the first rule
that holds is named on the alert's timeline."""

from __future__ import annotations

from dataclasses import replace

from core.enums import Priority
from gateway.config import Config, PriorityRule, Route
from gateway.routing import Arrival, Check


def raising_rule(config: Config, route: Route, labels: dict[str, str], arrival: Arrival,
                 priority: Priority) -> PriorityRule | None:
    """The first rule that raises an alert of ``priority`` on ``route`` to high, or None.

    Its expression sees ``priority`` as the alert has it now (the sender's or the route's)."""
    if priority == Priority.HIGH or not config.priority_rules:
        return None
    check = Check(labels, replace(arrival, priority=priority.value), config.time_zone)
    for rule in config.priority_rules:
        if (not rule.routes or route.name in rule.routes) and check.holds(rule, "priority rule"):
            return rule
    return None
