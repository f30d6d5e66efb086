"""What choosing a route costs per alert, with time rules, CEL expressions and receivers: `python -m bench.routing`.

In-process (select_route and the priority rules on one alert, many times over), unlike the other benchmarks:
routing runs on intake's hot path between the request and the first dial. Nothing here asserts a time.
"""

from __future__ import annotations

import tempfile
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from core.enums import Priority
from gateway.config import Config, load_config
from gateway.expressions import Activation, compile_expression
from gateway.priority_rules import raising_rule
from gateway.routing import Arrival, Check, select_route

CONFIG = """
defaults: {time_zone: Europe/Amsterdam}
api_tokens: [{name: bench, token: bench}]
engineers: {a: {phones: ["+15550000001"]}}
teams: {noc: {members: [a]}, desk: {members: [a]}, sre: {members: [a]}}
time_windows:
  business_hours: {weekly: [{days: mon-fri, from: "09:00", to: "18:00"}]}
  holidays: {dates: [2026-12-25, 2026-12-26]}
  after_hours: {not: business_hours}
policies: {phone: {steps: [{notify: primary}]}, sms: {steps: [{notify: primary, via: sms}]}}
routes:
  - {name: sre, receiver: prod-companyapp2-critical-sre, team: sre, policy: phone}
  - {name: pop-night, matchers: ['severity="critical"', 'site=~"pop-.*"'], when: [after_hours, holidays],
     team: noc, policy: phone}
  - {name: pop-day, matchers: ['severity="critical"', 'site=~"pop-.*"'], when: business_hours, unless: holidays,
     team: desk, policy: sms}
  - name: enterprise-routers
    expression: 'labels.tier == "enterprise" && labels.equipment in ["core-router", "edge-router"]'
    team: noc
    policy: phone
default_route: {team: desk, policy: sms}
priority_rules:
  - {name: core-equipment, matchers: ['equipment="core-router"']}
  - {name: enterprise-at-night, expression: 'has(labels.tier) && labels.tier == "enterprise" && hour < 6'}
"""

AT = datetime(2026, 3, 24, 13, 0, tzinfo=UTC)  # Tuesday 14:00 in Amsterdam
LABELS = {"alertname": "LinkDown", "instance": "r1.pop-ams1:9100", "job": "snmp"}


def _per_call(run: Callable[[], object], number: int = 20_000) -> str:
    best = min(timeit.repeat(run, number=number, repeat=5)) / number
    return f"{best * 1e6:6.1f} µs"


def _load() -> Config:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gateway.yaml"
        path.write_text(CONFIG)
        return load_config(path)


def main() -> None:
    config = _load()
    plain = Config(source=config.source, default_route=config.default_route, routes=tuple(
        route for route in config.routes if not (route.receiver or route.when or route.unless or route.expression)))
    expression = compile_expression('labels.tier == "enterprise" && labels.equipment in ["core-router"]')
    arrival = Arrival(at=AT)
    facts = Check({**LABELS, "tier": "enterprise", "equipment": "core-router"}, arrival, config.time_zone).facts()
    activation = Activation(facts)
    pop = {**LABELS, "severity": "critical", "site": "pop-ams1"}
    enterprise = {**LABELS, "tier": "enterprise", "equipment": "core-router"}
    rows = [
        ("one CEL evaluation (facts bound)", _per_call(lambda: activation.evaluate(expression))),
        ("binding an alert's facts (once per alert)", _per_call(lambda: Activation(facts))),
        ("route 1 by receiver", _per_call(lambda: select_route(
            config, LABELS, arrival=Arrival(at=AT, receiver="prod-companyapp2-critical-sre")))),
        ("route 3 by time rule (3 windows checked)", _per_call(lambda: select_route(config, pop, arrival=arrival))),
        ("route 4 by CEL (after the time rules)", _per_call(lambda: select_route(config, enterprise, arrival=arrival))),
        ("default route: every route tried", _per_call(lambda: select_route(config, LABELS, arrival=arrival))),
        ("default route, matchers only (no conditions)", _per_call(lambda: select_route(plain, LABELS,
                                                                                         arrival=arrival))),
        ("priority rules (matcher, then CEL)", _per_call(lambda: raising_rule(
            config, config.routes[2], pop, arrival, Priority.LOW))),
    ]
    width = max(len(name) for name, _ in rows)
    for name, figure in rows:
        print(f"{name:<{width}}  {figure}")


if __name__ == "__main__":
    main()
