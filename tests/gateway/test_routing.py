from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config, Route
from gateway.routing import matches, parse_matcher, select_route


@pytest.mark.parametrize(
    ("text", "label", "op", "value"),
    [
        ('team="sre"', "team", "=", "sre"),
        ('team!="sre"', "team", "!=", "sre"),
        ('severity=~"critical|page"', "severity", "=~", "critical|page"),
        ('severity!~"info|debug"', "severity", "!~", "info|debug"),
        ("team=sre", "team", "=", "sre"),
        ("  team  =  \"sre\"  ", "team", "=", "sre"),
        ('msg="say \\"hi\\""', "msg", "=", 'say "hi"'),
        ('path="a\\\\b"', "path", "=", "a\\b"),
        ('team=""', "team", "=", ""),
        ('code=~"\\d+"', "code", "=~", "\\d+"),
        ("_x1=~a.*", "_x1", "=~", "a.*"),
    ],
)
def test_parse_matcher(text: str, label: str, op: str, value: str) -> None:
    matcher = parse_matcher(text)
    assert (matcher.label, matcher.op, matcher.value) == (label, op, value)
    assert (matcher.pattern is not None) == (op in ("=~", "!~"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("team", "is not a matcher"),
        ('="sre"', "is not a matcher"),
        ('1team="sre"', "is not a matcher"),
        ('team="sre', "quote the value"),
        ("team=two words", "quote the value"),
        ('team=="sre"', "quote the value"),
        ('sev=~"(("', "invalid regular expression"),
        ("", "is not a matcher"),
    ],
)
def test_parse_matcher_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_matcher(text)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('team="sre"', {"team": "sre"}, True),
        ('team="sre"', {"team": "db"}, False),
        ('team!="sre"', {"team": "db"}, True),
        ('team!="sre"', {"team": "sre"}, False),
        ('sev=~"critical|page"', {"sev": "page"}, True),
        ('sev=~"critical|page"', {"sev": "warning"}, False),
        ('sev!~"critical|page"', {"sev": "warning"}, True),
        ('sev!~"critical|page"', {"sev": "critical"}, False),
        # a missing label is the empty string
        ('team=""', {}, True),
        ('team="sre"', {}, False),
        ('team!="sre"', {}, True),
        ('sev=~".*"', {}, True),
        ('sev=~".+"', {}, False),
        ('sev!~".+"', {}, True),
        # regexes are anchored at both ends
        ('sev=~"crit"', {"sev": "critical"}, False),
        ('sev=~"crit"', {"sev": "supercrit"}, False),
        ('sev=~"crit.*"', {"sev": "critical"}, True),
        ('sev=~"a|b"', {"sev": "ab"}, False),
        ('sev=~"a"', {"sev": "a\n"}, False),
        ('sev!~"crit"', {"sev": "critical"}, True),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(parse_matcher(text), labels) is expected


def _route(name: str, *matchers: str, team: str = "sre", routing_key: str | None = None) -> Route:
    return Route(
        name=name,
        matchers=tuple(parse_matcher(m) for m in matchers),
        team=team,
        policy="default",
        routing_key=routing_key,
    )


DEFAULT = Route(name="default", matchers=(), team="sre", policy="default")


def _config(*routes: Route, default: Route | None = DEFAULT) -> Config:
    return Config(source=Path("test.yaml"), routes=routes, default_route=default)


def test_first_matching_route_wins() -> None:
    config = _config(
        _route("db-critical", 'team="db"', 'sev="critical"', team="db"),
        _route("db", 'team="db"', team="db"),
        _route("critical", 'sev="critical"'),
    )
    assert select_route(config, {"team": "db", "sev": "critical"}).name == "db-critical"
    assert select_route(config, {"team": "db", "sev": "warning"}).name == "db"
    assert select_route(config, {"team": "web", "sev": "critical"}).name == "critical"
    assert select_route(config, {"team": "web"}).name == "default"


def test_all_matchers_must_match() -> None:
    config = _config(_route("both", 'team="db"', 'sev="critical"'))
    assert select_route(config, {"team": "db"}).name == "default"


def test_route_without_matchers_matches_everything() -> None:
    config = _config(_route("catch-all"), _route("never-reached", 'team="db"'))
    assert select_route(config, {"team": "db"}).name == "catch-all"


def test_routing_key_wins_over_matchers() -> None:
    config = _config(
        _route("critical", 'sev="critical"'),
        _route("by-key", 'team="db"', routing_key="key-1"),
    )
    assert select_route(config, {"sev": "critical"}, routing_key="key-1").name == "by-key"
    assert select_route(config, {"sev": "critical"}, routing_key="other").name == "critical"
    assert select_route(config, {"sev": "critical"}).name == "critical"


def test_routing_key_only_route_is_not_a_catch_all() -> None:
    config = _config(_route("by-key", routing_key="key-1"), _route("critical", 'sev="critical"'))
    assert select_route(config, {"sev": "critical"}).name == "critical"
    assert select_route(config, {}).name == "default"
    assert select_route(config, {}, routing_key="key-1").name == "by-key"


def test_no_route_raises_lookup_error() -> None:
    config = _config(_route("db", 'team="db"'), default=None)
    assert select_route(config, {"team": "db"}).name == "db"
    with pytest.raises(LookupError):
        select_route(config, {"team": "web"})
