"""The one config object: loaded from a YAML file (secrets may come from the environment),
validated at start, frozen afterwards. Every error names the file and the key path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import jinja2
import phonenumbers
import yaml

from core.enums import Priority
from core.phone import normalize
from gateway.durations import format_duration, parse_duration
from gateway.expressions import Expression, compile_expression
from gateway.message_settings import (
    CHAT_KINDS,
    LINK_SECRET_ENV,
    MIN_LINK_SECRET_CHARS,
    ActionLinkSettings,
    ChatDestination,
    EmailSettings,
    is_address,
)
from gateway.notification_rules import NotificationRule, parse_rules
from providers.asterisk_settings import AsteriskSettings
from providers.kavenegar.settings import DEFAULT_API_URL as KAVENEGAR_API_URL
from providers.kavenegar.settings import KavenegarSettings
from providers.sandbox import SandboxPhone, SandboxSettings
from providers.twilio.settings import TwilioSettings

# --------------------------------------------------------------------- schema


@dataclass(frozen=True, kw_only=True)
class Engineer:
    id: str  # the key under `engineers:`
    name: str
    phones: tuple[str, ...]  # E.164, first is preferred
    language: str = "en-US"
    notification_rules: tuple[NotificationRule, ...] = ()  # empty: each step's ``via`` (gateway.notification_rules)
    email: str | None = None  # where a step with ``via: email`` sends the alert


@dataclass(frozen=True, kw_only=True)
class Rotation:
    kind: str  # "daily" | "weekly" | "custom"
    shift: timedelta  # 1 day, 7 days, or the custom length
    start: date  # local date of the first shift's handoff (shift 0: members[0] primary)
    handoff: time  # local handoff time
    time_zone: str  # IANA name


@dataclass(frozen=True, kw_only=True)
class Override:
    start: datetime  # aware
    end: datetime  # aware, exclusive
    role: str  # "primary" | "secondary"
    engineer: str  # engineer id


@dataclass(frozen=True, kw_only=True)
class Team:
    id: str
    members: tuple[str, ...]  # engineer ids, rotation order
    rotation: Rotation | None  # None: members[0] primary, members[1] secondary, always
    overrides: tuple[Override, ...] = ()
    directory: DirectoryGroup | None = None  # members come from this directory group (members is then empty)
    layers: tuple[Layer, ...] = ()  # bottom first (gateway.layers); empty: members and rotation are the one layer


@dataclass(frozen=True, kw_only=True)
class PolicyStep:
    target: str  # "primary" | "secondary" | "team" | "engineer"
    engineer: str | None = None  # set when target == "engineer"
    via: str = "call"  # "call" | "sms" | "both" | "email" | "chat", or channels joined by "+" ("call+email")
    timeout_s: int = 300
    ring_timeout_s: int | None = None  # how long a call rings before it counts as unanswered
    group: DirectoryGroup | None = None  # set when target == "group": every member of a directory group
    chat: tuple[str, ...] = ()  # the chat destinations a step with chat in ``via`` posts to

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels the step pages by, in order: "both" is a call and an SMS."""
        return ("call", "sms") if self.via == "both" else tuple(self.via.split("+"))

    @property
    def ring_s(self) -> int:
        """The ring time of this step's calls: ``ring_timeout``, else the step timeout within 10-120 s."""
        return self.ring_timeout_s if self.ring_timeout_s is not None else max(10, min(self.timeout_s, 120))


@dataclass(frozen=True, kw_only=True)
class Policy:
    id: str
    steps: tuple[PolicyStep, ...]
    repeat: int = 0  # how many times the whole policy runs again after the last step


@dataclass(frozen=True, kw_only=True)
class Matcher:
    label: str
    op: str  # "=" | "!=" | "=~" | "!~"
    value: str
    pattern: re.Pattern[str] | None = None  # fully anchored, for =~ and !~


@dataclass(frozen=True, kw_only=True)
class Route:
    name: str
    matchers: tuple[Matcher, ...]
    team: str
    policy: str
    priority: Priority = Priority.LOW
    routing_key: str | None = None  # PagerDuty Events v2 routing_key selecting this route
    # Conditions besides the matchers (gateway.routing.Check): all must hold.
    receiver: Matcher | None = None  # on Alertmanager's (or Grafana's) receiver name; label "receiver"
    when: tuple[TimeWindow, ...] = ()  # inside any of these windows at the alert's arrival (none: always)
    unless: tuple[TimeWindow, ...] = ()  # and inside none of these
    expression: Expression | None = None  # CEL, gateway.expressions


@dataclass(frozen=True, kw_only=True)
class ApiToken:
    name: str
    token: str
    role: str = "admin"  # "viewer" | "responder" | "admin" (gateway.web.auth.Role)


@dataclass(frozen=True, kw_only=True)
class Hotline:
    """A number callers dial; engineers are screened along ``policy`` of ``team``."""

    name: str
    number: str  # E.164
    team: str
    policy: str
    greeting: str  # jinja2 template text (context: hotline, team)
    priority_menu: bool = False  # ask the caller: emergency (1) or not (2)
    priority: Priority = Priority.LOW  # without a menu, or when the caller never chooses
    voicemail: bool = True
    max_voicemail_s: int = 120


@dataclass(frozen=True, kw_only=True)
class WeeklyRange:
    """Local clock times on some weekdays; ``end`` at or before ``start`` runs past midnight."""

    days: frozenset[int]  # 0 = Monday ... 6 = Sunday: the days the range starts on
    start: time
    end: time | None  # None: the end of the day (24:00)


@dataclass(frozen=True, kw_only=True)
class TimeWindow:
    """A named set of times in a zone (business hours, nights, weekends, holidays); see gateway.time_windows."""

    name: str
    time_zone: str
    weekly: tuple[WeeklyRange, ...] = ()
    dates: frozenset[date] = frozenset()  # whole local days inside the window
    except_dates: frozenset[date] = frozenset()  # whole local days outside it, whatever else says
    excluded: tuple[TimeWindow, ...] = ()  # other windows taken out of this one (``except:``)
    negated: TimeWindow | None = None  # ``not: other``: the window is every moment outside ``other``


@dataclass(frozen=True, kw_only=True)
class PriorityRule:
    """Raises an alert to high priority once its route is chosen, when its conditions hold (never lowers)."""

    name: str
    matchers: tuple[Matcher, ...] = ()
    receiver: Matcher | None = None
    when: tuple[TimeWindow, ...] = ()
    unless: tuple[TimeWindow, ...] = ()
    expression: Expression | None = None
    routes: frozenset[str] = frozenset()  # only alerts on these routes (empty: any route)


@dataclass(frozen=True, kw_only=True)
class Layer:
    """One rotation in a team's stack (``layers:``); the highest layer active at a moment gives the answer."""

    name: str
    members: tuple[str, ...]  # engineer ids, rotation order
    rotation: Rotation | None  # None: members[0] primary, members[1] secondary, always
    when: tuple[TimeWindow, ...] = ()  # active only inside one of these windows; empty: always


@dataclass(frozen=True, kw_only=True)
class MaintenanceWindow:
    """Alerts matching ``matchers`` while the window is on are held (``suppress``) or paged at low priority.

    One-off (``start``..``end``) or recurring (``during``: named time windows); see gateway.maintenance."""

    name: str
    matchers: tuple[Matcher, ...]
    action: str  # "suppress" | "low_priority"
    start: datetime | None = None  # one-off, UTC
    end: datetime | None = None
    during: tuple[TimeWindow, ...] = ()  # recurring: on while any of these contains the moment
    comment: str = ""


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """A job that checks in (POST /api/v1/heartbeats/{name}); late by ``grace`` after ``interval``, it alerts."""

    name: str
    interval_s: float
    grace_s: float
    labels: dict[str, str]  # routes choose the team and policy, as for any alert (plus heartbeat=<name>)
    team: str | None = None  # or the team named outright, as the generic API's team field does
    summary: str = ""
    priority: Priority | None = None  # default: the route's


@dataclass(frozen=True, kw_only=True)
class Config:
    source: Path  # the config file
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 1024 * 1024
    store_path: Path = Path("gateway.db")  # resolved relative to the config file's folder
    store_url: str | None = None  # PostgreSQL instead of the SQLite file: postgresql://user@host:5432/db
    store_password: str | None = field(default=None, repr=False)  # from store.password_env
    default_region: str = "US"
    default_language: str = "en-US"
    time_zone: str = "UTC"
    templates_dir: Path | None = None
    engineers: dict[str, Engineer] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    time_windows: dict[str, TimeWindow] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    default_route: Route | None = None
    api_tokens: tuple[ApiToken, ...] = ()
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    hotlines: tuple[Hotline, ...] = ()
    reserved_for_high: float = 0.2  # share of each provider's lines low priority never takes
    low_wait_warning_s: float = 60.0  # a low-priority call waiting longer is reported
    twilio: TwilioSettings | None = None
    asterisk: AsteriskSettings | None = None
    voice_order: tuple[str, ...] = ("sandbox",)  # providers that place calls, in the order they are tried
    sms_order: tuple[str, ...] = ("sandbox",)  # providers that send SMS, likewise (may be empty)
    directories: dict[str, DirectorySettings] = field(default_factory=dict)  # people and groups (Keycloak)
    cache_url: str | None = None  # redis://...: the directory cache shared by several gateways; None: in-process
    cache_password: str | None = field(default=None, repr=False)  # from cache.password_env
    priority_rules: tuple[PriorityRule, ...] = ()  # gateway.priority_rules
    maintenance: tuple[MaintenanceWindow, ...] = ()
    heartbeats: dict[str, Heartbeat] = field(default_factory=dict)
    notices: dict[str, TeamNotices] = field(default_factory=dict)  # by team id: handoff notices, summaries
    kavenegar: KavenegarSettings | None = None
    email: EmailSettings | None = None  # SMTP for ``via: email`` (gateway.mailer)
    chat: dict[str, ChatDestination] = field(default_factory=dict)  # named chat webhooks (gateway.chat)
    action_links: ActionLinkSettings = field(default_factory=ActionLinkSettings)  # gateway.action_links

    @property
    def voice_provider(self) -> str:
        """The first provider calls go to."""
        return self.voice_order[0]

    @property
    def sms_provider(self) -> str | None:
        return self.sms_order[0] if self.sms_order else None


class ConfigError(Exception):
    """Every problem found, each as ``<file>: <key.path>: <what is wrong>``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems



# --------------------------------------------------------------------- loading

_MISSING: Any = object()
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_TOP_KEYS = (
    "server", "store", "defaults", "templates_dir", "api_tokens", "engineers",
    "teams", "policies", "routes", "default_route", "sandbox", "hotlines", "twilio", "asterisk", "dispatch",
    "providers", "time_windows",
    "directories", "cache",
    "priority_rules",
    "maintenance", "heartbeats",
    "kavenegar",
    "email", "chat", "action_links",
)  # fmt: skip
#: what each provider can carry (the provider classes declare the same as CHANNELS; a test keeps them equal)
PROVIDER_CHANNELS = {"sandbox": ("voice", "sms"), "twilio": ("voice", "sms"), "asterisk": ("voice",),
                     "kavenegar": ("sms",)}
_ROUTE_KEYS = ("team", "policy", "priority")
_SECRET_KEYS = ("routing_key", "routing_key_env")
_RULE_KEYS = ("receiver", "when", "unless", "expression")  # conditions besides the matchers (gateway.routing)


def load_config(path: str | Path) -> Config:
    """Read, validate and freeze the config file. Raises ConfigError listing every problem.

    The format is documented in ``examples/demo.yaml``. Relative paths in the
    file are relative to the file's folder; secrets may come from the
    environment (``token_env``, ``routing_key_env``).
    """
    source = Path(path)
    label = str(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{label}: cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{label}: not UTF-8 text: {exc.reason}"]) from None
    loader = _StrictLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise ConfigError([f"{label}: {where}: invalid YAML: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{label}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    reader = _Reader(label, source)
    for key, line in loader.duplicates:
        reader.problem(f"line {line}", f"duplicate key {key!r} (the later one would silently win)")
    config = reader.config(data)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that records duplicate keys instead of silently keeping the last one."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[str, int]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                if key_node.value in seen:
                    self.duplicates.append((key_node.value, key_node.start_mark.line + 1))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep)

    def construct_lenient_timestamp(self, node: yaml.ScalarNode) -> object:
        """An impossible date such as 2026-13-01 stays text, so the checker names its key."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError:
            return self.construct_scalar(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _StrictLoader.construct_lenient_timestamp)


# ------------------------------------------------------------ value converters
# Each takes the raw YAML value and returns the typed one, or raises ValueError
# with a message that completes "<file>: <key.path>: ".


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, datetime):
        return "a date and time"
    if isinstance(value, date):
        return "a date"
    return type(value).__name__


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _as_text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"expected text, got {_kind(raw)}")
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _as_bool(raw: object) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"expected true or false, got {_kind(raw)}")
    return raw


def _as_int(minimum: int, maximum: int | None = None) -> Callable[[object], int]:
    def convert(raw: object) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError(f"expected a whole number, got {_kind(raw)}")
        if maximum is not None and not minimum <= raw <= maximum:
            raise ValueError(f"{raw} is out of range ({minimum}..{maximum})")
        if raw < minimum:
            raise ValueError(f"must be at least {minimum}, got {raw}")
        return raw

    return convert


def _as_choice(*options: str) -> Callable[[object], str]:
    def convert(raw: object) -> str:
        if raw not in options:
            raise ValueError(f"{raw!r} is not one of: {', '.join(options)}")
        return str(raw)

    return convert


def _as_duration(minimum: timedelta) -> Callable[[object], timedelta]:
    def convert(raw: object) -> timedelta:
        value = parse_duration(raw)
        if value < minimum:
            raise ValueError(f"must be at least {format_duration(minimum)}, got {raw!r}")
        return value

    return convert


def _as_positive_duration(raw: object) -> timedelta:
    value = parse_duration(raw)
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {raw!r}")
    return value


def _as_whole_seconds(raw: object) -> int:
    value = _as_duration(timedelta(seconds=1))(raw)
    if value % timedelta(seconds=1):
        raise ValueError(f"must be a whole number of seconds, got {raw!r}")
    return int(value.total_seconds())


def _as_ring_seconds(raw: object) -> int:
    """A ring time: 5 s to 10 min (the range Twilio accepts for a call's Timeout)."""
    seconds = _as_whole_seconds(raw)
    if not 5 <= seconds <= 600:
        raise ValueError(f"must be between 5s and 10m (what Twilio and Asterisk accept), got {raw!r}")
    return seconds


def _as_zone(raw: object) -> str:
    name = _as_text(raw)
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin)") from None
    return name


def _as_region(raw: object) -> str:
    region = _as_text(raw).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{raw!r} is not a region code (two letters, e.g. US, GB, DE)")
    return region


def _as_language(raw: object) -> str:
    language = _as_text(raw)
    if not _LANGUAGE.fullmatch(language):
        raise ValueError(f"{language!r} is not a language tag (e.g. en-US, de-DE)")
    return language


def _as_phone(region: str) -> Callable[[object], str]:
    def convert(raw: object) -> str:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            raise ValueError(f"expected text, got {_kind(raw)}: quote phone numbers (YAML reads +1555... as a number)")
        if not isinstance(raw, str):
            raise ValueError(f"expected a phone number as text, got {_kind(raw)}")
        return normalize(raw, region)  # InvalidNumber is a ValueError: "'x' is not a phone number (why)"

    return convert


def _as_date(raw: object) -> date:
    if isinstance(raw, datetime):
        raise ValueError(f"expected a date like 2026-01-05, got {_kind(raw)}")
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date like 2026-01-05, got {_kind(raw)}")


def _as_clock(raw: object) -> time:
    if isinstance(raw, str):
        found = _CLOCK.fullmatch(raw.strip())
        if found:
            hour, minute, second = (int(part or 0) for part in found.groups())
            if hour < 24 and minute < 60 and second < 60:
                return time(hour, minute, second)
    hint = " (quote it: YAML reads 10:30 as a number)" if isinstance(raw, int) else ""
    raise ValueError(f"expected a time like \"09:00\", got {_kind(raw)}{hint}")


_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _as_days(raw: object) -> frozenset[int]:
    """Weekdays: ``mon-fri``, ``sat,sun``, ``[mon, wed]``, ``daily``; ranges may wrap (``fri-mon``)."""
    parts = raw if isinstance(raw, list) else raw.split(",") if isinstance(raw, str) else [raw]
    days: set[int] = set()
    for part in parts:
        text = part.strip().lower() if isinstance(part, str) else ""
        if text in ("daily", "all"):
            return frozenset(range(7))
        first, _, last = (_day_abbreviation(piece) for piece in text.partition("-"))
        if first in _DAY_NAMES and (last in _DAY_NAMES or not text.partition("-")[1]):
            start = _DAY_NAMES.index(first)
            end = _DAY_NAMES.index(last) if last in _DAY_NAMES else start
            days.update(day % 7 for day in range(start, end + (7 if end < start else 0) + 1))
            continue
        raise ValueError(f"{part!r} is not a weekday: use mon, tue, wed, thu, fri, sat, sun, a range like "
                         "mon-fri, or daily")
    if not days:
        raise ValueError("name at least one weekday, e.g. mon-fri")
    return frozenset(days)


def _day_abbreviation(piece: str) -> str:
    """``mon`` for mon, mond or monday (the start of a day's name, 3 letters at least); "?" for anything else."""
    text = piece.strip()
    full = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
    return next((name[:3] for name in full if len(text) >= 3 and name.startswith(text)), "?")


def _as_day_end_is_midnight(raw: object) -> bool:
    return isinstance(raw, str) and raw.strip() in ("24:00", "24:00:00")


def _as_day_end(raw: object) -> time | None:
    """A clock time that may also be ``24:00``, the end of the day (returned as None)."""
    return None if _as_day_end_is_midnight(raw) else _as_clock(raw)


def _as_moment(zone: str) -> Callable[[object], datetime]:
    """An instant: ISO 8601 date and time; without an offset it is read in ``zone``. Returned in UTC."""

    def convert(raw: object) -> datetime:
        moment: datetime | None = None
        if isinstance(raw, datetime):
            moment = raw
        elif isinstance(raw, date):
            moment = datetime.combine(raw, time(0))
        elif isinstance(raw, str):
            try:
                moment = datetime.fromisoformat(raw.strip())
            except ValueError:
                moment = None
        if moment is None:
            raise ValueError(f"expected a date and time like \"2026-12-24T09:00\", got {_kind(raw)}")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        return moment.astimezone(UTC)

    return convert


def _as_share(raw: object) -> float:
    """``20%`` or ``0.2``: a share from 0 up to (not including) 1."""
    text = str(raw).strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a share (use e.g. 20% or 0.2)") from None
    if not 0 <= share < 1 or isinstance(raw, bool):
        raise ValueError(f"{text!r} must be at least 0% and below 100%")
    return share


def _as_hosts(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(host, str) and host.strip() for host in raw):
        raise ValueError("expected a list of host names or addresses, e.g. [10.0.0.5, pbx.example.com]")
    return tuple(host.strip() for host in raw)


def _as_command(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(part, str) and part for part in raw):
        raise ValueError("expected a command as a list of strings, e.g. [espeak-ng, -w, \"{out}\", \"{text}\"]")
    return tuple(raw)


def _as_url(raw: object) -> str:
    url = _as_text(raw)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL like https://oncall.example.com")
    return url.rstrip("/")


def _as_digits(raw: object) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return str(raw)
    if isinstance(raw, str) and re.fullmatch(r"[0-9*#]*", raw):
        return raw
    raise ValueError(f"expected keypad digits like \"1\", got {_kind(raw)}")


def _as_label_value(raw: object) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return str(raw)
    raise ValueError(f"expected a label value as text, got {_kind(raw)}")


def _default_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------- reader


class _Reader:
    """Walks the parsed YAML, collecting every problem instead of stopping at the first."""

    def __init__(self, label: str, source: Path) -> None:
        self.label = label
        self.source = source
        self.problems: list[str] = []
        self.windows: dict[str, TimeWindow] = {}  # the config's time windows, once read (routes name them)

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{self.label}: {path}: {message}" if path else f"{self.label}: {message}")

    # generic shapes

    def mapping(self, raw: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """The keys of a mapping section; unknown keys are problems. Nothing counts as empty."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping, got {_kind(raw)}")
            return {}
        known: dict[str, Any] = {}
        for key, item in raw.items():
            if key in allowed:
                known[key] = item
            else:
                self.problem(_join(path, key), f"unknown key (expected one of: {', '.join(allowed)})")
        return known

    def entries(self, raw: object, path: str) -> Iterator[tuple[str, Any]]:
        """The ``id: {...}`` pairs of a section keyed by id (engineers, teams, policies)."""
        if raw is None:
            return
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping of ids, got {_kind(raw)}")
            return
        for key, item in raw.items():
            if not isinstance(key, str) or not _ID.fullmatch(key):
                self.problem(
                    _join(path, key),
                    "an id holds letters, digits, '_', '.' and '-', starting with a letter or digit",
                )
            yield str(key), item

    def items(self, raw: object, path: str, *, required: bool) -> list[tuple[str, Any]]:
        """The ``(key.path[i], item)`` pairs of a list; an absent or empty list is a problem if required."""
        if raw is None or raw == []:
            if required:
                self.problem(path, "at least one entry is required")
            return []
        if not isinstance(raw, list):
            self.problem(path, f"expected a list, got {_kind(raw)}")
            return []
        return [(f"{path}[{index}]", item) for index, item in enumerate(raw)]

    def value(
        self, section: dict[str, Any], key: str, path: str, convert: Callable[[Any], Any], default: Any = _MISSING
    ) -> Any:
        """``section[key]`` converted; a problem (and the default, or None) when missing or wrong."""
        where = _join(path, key)
        raw = section.get(key)
        if raw is None:
            if default is _MISSING:
                self.problem(where, "is required")
                return None
            return default
        try:
            return convert(raw)
        except ValueError as exc:
            self.problem(where, str(exc))
            return None if default is _MISSING else default

    def secret(self, section: dict[str, Any], key: str, path: str, *, required: bool) -> str | None:
        """``key`` given inline, or ``<key>_env`` naming an environment variable that holds it."""
        env_key = f"{key}_env"
        if key in section and env_key in section:
            self.problem(path, f"set either {key} or {env_key}, not both")
            return None
        if env_key in section:
            variable = self.value(section, env_key, path, _as_text)
            if variable is None:
                return None
            secret = os.environ.get(variable, "").strip()
            if not secret:
                self.problem(_join(path, env_key), f"environment variable {variable} is not set or empty")
                return None
            return secret
        if key not in section and required:
            self.problem(path, f"needs {key} (or {env_key}, the name of an environment variable)")
            return None
        value: str | None = self.value(section, key, path, _as_text, None)
        return value

    def relative(self, raw: str) -> Path:
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (self.source.parent / path).absolute()

    def duplicates(self, values: list[tuple[str, str]], what: str) -> None:
        seen: set[str] = set()
        for path, item in values:
            if item in seen:
                self.problem(path, f"{what} {item!r} is listed twice")
            seen.add(item)

    # sections

    def config(self, data: object) -> Config:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.problem("", f"expected a mapping of sections at the top level, got {_kind(data)}")
            return Config(source=self.source)
        top = self.mapping(data, "", _TOP_KEYS)

        defaults = self.mapping(top.get("defaults"), "defaults", ("region", "language", "time_zone"))
        region = self.value(defaults, "region", "defaults", _as_region, "US")
        language = self.value(defaults, "language", "defaults", _as_language, "en-US")
        zone = self.value(defaults, "time_zone", "defaults", _as_zone, "UTC")

        server = self.mapping(top.get("server"), "server", ("host", "port", "public_url", "max_body_bytes"))
        host = self.value(server, "host", "server", _as_text, "127.0.0.1")
        port = self.value(server, "port", "server", _as_int(0, 65535), 8080)
        public_url = self.value(server, "public_url", "server", _as_url, _default_url(host, port))
        max_body = self.value(server, "max_body_bytes", "server", _as_int(1), 1024 * 1024)

        store_path, store_url, store_password = self.store(top.get("store"))
        reserved_for_high, low_wait_warning_s = self.dispatch(top.get("dispatch"))

        templates_dir = None
        if top.get("templates_dir") is not None:
            raw_dir = self.value(top, "templates_dir", "", _as_text, None)
            if raw_dir is not None:
                templates_dir = self.relative(raw_dir)
                if not templates_dir.is_dir():
                    self.problem("templates_dir", f"folder does not exist: {templates_dir}")

        engineers = self.engineers(top.get("engineers"), region, language)
        time_windows = self.time_windows(top.get("time_windows"), zone)
        directories = self.directories(top.get("directories"))
        cache_url, cache_password = self.cache(top.get("cache"))
        teams = self.teams(top.get("teams"), engineers, zone)
        policies = self.policies(top.get("policies"), engineers)
        routes = self.routes(top.get("routes"), teams, policies)
        default_route = None
        if top.get("default_route") is not None:
            default_route = self.route(top["default_route"], "default_route", "default", _ROUTE_KEYS, teams, policies)
        elif teams:
            self.problem("default_route", "is required when teams are configured")

        config = Config(
            source=self.source,
            host=host,
            port=port,
            public_url=public_url,
            max_body_bytes=max_body,
            store_path=store_path,
            store_url=store_url,
            store_password=store_password,
            default_region=region,
            default_language=language,
            time_zone=zone,
            templates_dir=templates_dir,
            engineers=engineers,
            teams=teams,
            time_windows=time_windows,
            policies=policies,
            routes=routes,
            default_route=default_route,
            api_tokens=self.api_tokens(top.get("api_tokens")),
            priority_rules=self.priority_rules(top.get("priority_rules"),
                                               (*routes, *([default_route] if default_route else []))),
            sandbox=self.sandbox(top.get("sandbox"), region),
            hotlines=self.hotlines(top.get("hotlines"), region, teams, policies),
            reserved_for_high=reserved_for_high,
            low_wait_warning_s=low_wait_warning_s,
            twilio=self.twilio(top.get("twilio"), region),
            asterisk=self.asterisk(top.get("asterisk"), region),
            directories=directories,
            cache_url=cache_url,
            cache_password=cache_password,
            maintenance=self.maintenance(top.get("maintenance"), zone),
            heartbeats=self.heartbeats(top.get("heartbeats"), teams),
            email=self.email(top.get("email")),
            chat=self.chat(top.get("chat")),
            action_links=self.action_links(top.get("action_links")),
        )
        config = replace(config, notices=self.notices(top.get("teams"), teams, engineers, zone))
        self.message_channels(config)
        configured = {"twilio": "twilio" in top, "asterisk": "asterisk" in top,
                      "sandbox": config.sandbox.enabled and not ("twilio" in top or "asterisk" in top),
                      "kavenegar": "kavenegar" in top}
        voice, sms = self.providers(top.get("providers"), configured, config.sandbox.enabled)
        self.notice_channels(config.notices, sms, config.email)
        if not voice:
            self.problem("sandbox.enabled", "no phone provider: configure twilio or asterisk, or enable the sandbox")
            return config
        return replace(config, voice_order=voice, sms_order=sms, kavenegar=self.kavenegar(top.get("kavenegar")))

    def providers(self, raw: object, configured: dict[str, bool],
                  sandbox_enabled: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The providers per channel, in the operator's order (``providers: {voice: [...], sms: [...]}``).

        Without the section: Asterisk, else Twilio, else the sandbox for calls; Twilio, else the sandbox
        (when it carries the calls) for SMS. A provider named there must be configured and able to carry
        that channel; the sandbox counts as configured while ``sandbox.enabled``.
        """
        default_voice = tuple(n for n in ("asterisk", "twilio", "sandbox") if configured[n])[:1]
        default_sms = tuple(n for n in ("twilio", "sandbox") if configured[n])[:1]
        if configured.get("kavenegar"):  # it carries the SMS alone, or as the failover behind Twilio
            default_sms = (*(n for n in default_sms if n == "twilio"), "kavenegar")
        if raw is None:
            return default_voice, default_sms
        section = self.mapping(raw, "providers", ("voice", "sms"))
        available = {**configured, "sandbox": sandbox_enabled}
        chosen: list[tuple[str, ...]] = []
        for channel, default in (("voice", default_voice), ("sms", default_sms)):
            names: list[str] = []
            for path, name in self.items(section.get(channel), f"providers.{channel}", required=channel == "voice"):
                if not isinstance(name, str) or name not in PROVIDER_CHANNELS:
                    self.problem(path, f"{name!r} is not one of: {', '.join(PROVIDER_CHANNELS)}")
                elif channel not in PROVIDER_CHANNELS[name]:
                    self.problem(path, f"{name} cannot carry {channel}")
                elif not available[name]:
                    self.problem(path, f"{name} is named but not configured (add its '{name}:' section)")
                elif name in names:
                    self.problem(path, f"{name} is listed twice")
                else:
                    names.append(name)
            chosen.append(tuple(names) if channel in section else default)
        return chosen[0], chosen[1]

    def store(self, raw: object) -> tuple[Path, str | None, str | None]:
        """``path`` (a SQLite file, the default) or ``url`` (PostgreSQL) with ``password_env``."""
        store = self.mapping(raw, "store", ("path", "url", "password_env"))
        store_path = self.relative(self.value(store, "path", "store", _as_text, "gateway.db"))
        if "url" not in store:
            if "password_env" in store:
                self.problem("store.password_env", "is only used with store.url (PostgreSQL)")
            return store_path, None, None
        if "path" in store:
            self.problem("store", "set either path (a SQLite file) or url (PostgreSQL), not both")
        url = self.value(store, "url", "store", _as_text, None)
        problem = None if url is None else self._postgres_url_problem(url)
        if problem is not None:
            self.problem("store.url", problem)
            url = None
        password = self.secret(store, "password", "store", required=False)
        return store_path, url, password

    @staticmethod
    def _postgres_url_problem(url: str) -> str | None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises for a port that is not a number in range)
        except ValueError as exc:
            return f"not a valid URL: {exc}"
        if parts.scheme not in ("postgresql", "postgres"):
            return "expected a PostgreSQL URL like postgresql://gateway@db.example.com:5432/gateway"
        if parts.password is not None or "password" in parse_qs(parts.query):
            return "holds a password: put it in the environment variable named by store.password_env instead"
        return None

    def hotlines(
        self, raw: object, region: str, teams: dict[str, Team], policies: dict[str, Policy]
    ) -> tuple[Hotline, ...]:
        found: list[Hotline] = []
        keys = ("name", "number", "team", "policy", "greeting", "priority_menu", "priority", "voicemail",
                "max_voicemail")
        for path, item in self.items(raw, "hotlines", required=False):
            section = self.mapping(item, path, keys)
            if not isinstance(item, dict):
                continue
            team = self.value(section, "team", path, _as_text)
            if team is not None and team not in teams:
                self.problem(f"{path}.team", f"unknown team {team!r}")
            policy = self.value(section, "policy", path, _as_text)
            if policy is not None and policy not in policies:
                self.problem(f"{path}.policy", f"unknown policy {policy!r}")
            greeting = self.value(section, "greeting", path, _as_text,
                                  "You have reached the on-call hotline of team {{ team }}.")
            try:
                jinja2.Environment().parse(greeting or "")
            except jinja2.TemplateSyntaxError as exc:
                self.problem(f"{path}.greeting", f"not a valid template: {exc.message}")
            number = self.value(section, "number", path, _as_phone(region))
            if None in (team, policy, number):
                continue
            found.append(Hotline(
                name=self.value(section, "name", path, _as_text, f"hotline-{len(found)}"),
                number=number,
                team=team,
                policy=policy,
                greeting=greeting,
                priority_menu=self.value(section, "priority_menu", path, _as_bool, False),
                priority=Priority(self.value(section, "priority", path, _as_choice("high", "low"), "low")),
                voicemail=self.value(section, "voicemail", path, _as_bool, True),
                max_voicemail_s=self.value(section, "max_voicemail", path, _as_whole_seconds, 120),
            ))
        self.duplicates([(f"hotlines[{i}].number", h.number) for i, h in enumerate(found)], "hotline number")
        return tuple(found)

    def dispatch(self, raw: object) -> tuple[float, float]:
        """The share of lines reserved for high priority, and the low-priority wait bound in seconds."""
        section = self.mapping(raw, "dispatch", ("reserved_for_high", "low_wait_warning"))
        reserved: float = self.value(section, "reserved_for_high", "dispatch", _as_share, 0.2)
        bound: timedelta = self.value(section, "low_wait_warning", "dispatch", _as_duration(timedelta(seconds=1)),
                                      timedelta(seconds=60))
        return reserved, bound.total_seconds()

    def twilio(self, raw: object, region: str) -> TwilioSettings | None:
        if raw is None:
            return None
        keys = ("account_sid", "auth_token", "auth_token_env", "signing_key", "signing_key_env", "from_number",
                "api_base_url", "max_concurrent_calls", "calls_per_second", "machine_detection")
        section = self.mapping(raw, "twilio", keys)
        sid = self.value(section, "account_sid", "twilio", _as_text)
        token = self.secret(section, "auth_token", "twilio", required=True)
        number = self.value(section, "from_number", "twilio", _as_phone(region))
        if sid is None or token is None or number is None:
            return None
        return TwilioSettings(
            account_sid=sid,
            auth_token=token,
            signing_key=self.secret(section, "signing_key", "twilio", required=False),
            from_number=number,
            api_base_url=self.value(section, "api_base_url", "twilio", _as_url, "https://api.twilio.com"),
            max_concurrent_calls=self.value(section, "max_concurrent_calls", "twilio", _as_int(1, 10000), 10),
            calls_per_second=float(self.value(section, "calls_per_second", "twilio", _as_int(1, 1000), 1)),
            machine_detection=self.value(section, "machine_detection", "twilio", _as_bool, True),
        )

    def asterisk(self, raw: object, region: str) -> AsteriskSettings | None:
        if raw is None:
            return None
        keys = ("host", "port", "username", "secret", "secret_env", "dial_string", "caller_id", "agi_listen_host",
                "agi_listen_port", "agi_url", "agi_allowed_hosts", "max_channels", "tts_command", "tts_resample",
                "sounds_dir", "record_dir")
        p = "asterisk"
        section = self.mapping(raw, p, keys)
        username = self.value(section, "username", p, _as_text)
        secret = self.secret(section, "secret", p, required=True)
        caller_id = self.value(section, "caller_id", p, _as_phone(region))
        dial_string = self.value(section, "dial_string", p, _as_text, "PJSIP/{number}@trunk")
        if dial_string is not None and "{number}" not in dial_string and "{digits}" not in dial_string:
            self.problem(f"{p}.dial_string", "must contain {number} or {digits}")
        agi_url = self.value(section, "agi_url", p, _as_text, "agi://127.0.0.1:4573")
        if agi_url is not None and not agi_url.startswith("agi://"):
            self.problem(f"{p}.agi_url", "must start with agi://")
        elif agi_url is not None and urlsplit(agi_url).path.strip("/"):
            self.problem(f"{p}.agi_url", "must be agi://host:port with no path (the gateway adds its routes)")
        if username is None or secret is None or caller_id is None:
            return None
        return AsteriskSettings(
            host=self.value(section, "host", p, _as_text, "127.0.0.1"),
            port=self.value(section, "port", p, _as_int(1, 65535), 5038),
            username=username,
            secret=secret,
            dial_string=dial_string,
            caller_id=caller_id,
            agi_listen_host=self.value(section, "agi_listen_host", p, _as_text, "127.0.0.1"),
            agi_listen_port=self.value(section, "agi_listen_port", p, _as_int(0, 65535), 4573),
            agi_url=agi_url.rstrip("/"),
            max_channels=self.value(section, "max_channels", p, _as_int(1, 10000), 10),
            agi_allowed_hosts=self.value(section, "agi_allowed_hosts", p, _as_hosts, ()),
            tts_command=self.value(section, "tts_command", p, _as_command, ()),
            tts_resample=self.value(section, "tts_resample", p, _as_command, ()),
            sounds_dir=self.relative(self.value(section, "sounds_dir", p, _as_text,
                                                "/var/lib/asterisk/sounds/gateway")),
            record_dir=self.relative(self.value(section, "record_dir", p, _as_text, "/var/spool/asterisk/gateway")),
        )

    def api_tokens(self, raw: object) -> tuple[ApiToken, ...]:
        if raw is None or raw == []:
            self.problem("api_tokens", "at least one token is required: every API client must authenticate")
            return ()
        tokens: list[ApiToken] = []
        names: list[tuple[str, str]] = []
        secrets: dict[str, str] = {}  # token -> the path of the first entry with it
        for path, item in self.items(raw, "api_tokens", required=True):
            section = self.mapping(item, path, ("name", "token", "token_env", "role"))
            if not isinstance(item, dict):
                continue
            name = self.value(section, "name", path, _as_text)
            token = self.secret(section, "token", path, required=True)
            role = self.value(section, "role", path, _as_choice("viewer", "responder", "admin"), "admin")
            if name is not None:
                names.append((f"{path}.name", name))
            # A request with a shared secret would carry whichever entry's name and role: refused, naming the
            # paths, never the secret.
            if token is not None and token in secrets:
                key = "token" if "token" in section else "token_env"
                self.problem(f"{path}.{key}", f"the same secret as {secrets[token]}: each entry needs its own")
            elif token is not None:
                secrets[token] = path
            if name is not None and token is not None:
                tokens.append(ApiToken(name=name, token=token, role=role))
        self.duplicates(names, "token name")
        return tuple(tokens)

    def engineers(self, raw: object, region: str, language: str) -> dict[str, Engineer]:
        engineers: dict[str, Engineer] = {}
        for engineer_id, item in self.entries(raw, "engineers"):
            path = f"engineers.{engineer_id}"
            section = self.mapping(item, path, ("name", "phones", "language", "notification_rules", "email"))
            phones: list[tuple[str, str]] = []
            raw_phones = section.get("phones")
            if raw_phones is not None and not isinstance(raw_phones, list):  # one number
                number = self.value(section, "phones", path, _as_phone(region))
                phones = [(f"{path}.phones", number)] if number else []
            else:
                for phone_path, phone in self.items(raw_phones, f"{path}.phones", required=True):
                    try:
                        phones.append((phone_path, _as_phone(region)(phone)))
                    except ValueError as exc:
                        self.problem(phone_path, str(exc))
            self.duplicates(phones, "phone number")
            engineers[engineer_id] = Engineer(
                id=engineer_id,
                name=self.value(section, "name", path, _as_text, engineer_id),
                phones=tuple(dict.fromkeys(number for _, number in phones)),
                language=self.value(section, "language", path, _as_language, language),
                notification_rules=self.notification_rules(section.get("notification_rules"), path),
                email=self.value(section, "email", path, _as_email, None),
            )
        return engineers

    def notification_rules(self, raw: object, path: str) -> tuple[NotificationRule, ...]:
        if raw is None:
            return ()
        rules, problems = parse_rules(raw)
        for where, message in problems:
            self.problem(f"{path}.notification_rules{where}", message)
        return rules

    def teams(self, raw: object, engineers: dict[str, Engineer], zone: str) -> dict[str, Team]:
        teams: dict[str, Team] = {}
        for team_id, item in self.entries(raw, "teams"):
            path = f"teams.{team_id}"
            keys = ("members", "rotation", "overrides", "directory", "layers", *_NOTICE_KEYS)
            section = self.mapping(item, path, keys)
            if "directory" in section and "layers" in section:
                self.problem(path, "set either directory or layers, not both")
                continue
            if "directory" in section:
                team = self.directory_team(team_id, section, path, zone)
                if team is not None:
                    teams[team_id] = team
                continue
            if "layers" in section:
                teams[team_id] = self.layered_team(team_id, section, engineers, zone)
                continue
            members = self.members(section.get("members"), f"{path}.members", engineers)
            rotation = None
            if section.get("rotation") is not None:
                rotation = self.rotation(section["rotation"], f"{path}.rotation", zone)
            overrides = self.overrides(
                section.get("overrides"), f"{path}.overrides", rotation.time_zone if rotation else zone, engineers
            )
            teams[team_id] = Team(
                id=team_id,
                members=tuple(dict.fromkeys(member for _, member in members)),
                rotation=rotation,
                overrides=overrides,
            )
        return teams

    def members(self, raw: object, path: str, engineers: dict[str, Engineer]) -> list[tuple[str, str]]:
        """A team's or a layer's members: (key path, engineer id) of each known engineer, listed once."""
        members: list[tuple[str, str]] = []
        for member_path, member in self.items(raw, path, required=True):
            if not isinstance(member, str):
                self.problem(member_path, f"expected an engineer id, got {_kind(member)}")
            elif member not in engineers:
                self.problem(member_path, f"unknown engineer {member!r}")
            else:
                members.append((member_path, member))
        self.duplicates(members, "engineer")
        return members

    def rotation(self, raw: object, path: str, zone: str) -> Rotation | None:
        section = self.mapping(raw, path, ("kind", "shift", "start", "handoff", "time_zone"))
        if not isinstance(raw, dict):
            return None
        kind = self.value(section, "kind", path, _as_choice("daily", "weekly", "custom"))
        shift = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}.get(kind or "")
        if kind == "custom":
            shift = self.value(section, "shift", path, _as_positive_duration)
        elif "shift" in section and kind is not None:
            self.problem(f"{path}.shift", f"only allowed with kind: custom ({kind} shifts are fixed)")
        start = self.value(section, "start", path, _as_date)
        handoff = self.value(section, "handoff", path, _as_clock, time(9, 0))
        time_zone = self.value(section, "time_zone", path, _as_zone, zone)
        if kind is None or shift is None or start is None:
            return None
        return Rotation(kind=kind, shift=shift, start=start, handoff=handoff, time_zone=time_zone)

    def overrides(
        self, raw: object, path: str, zone: str, engineers: dict[str, Engineer]
    ) -> tuple[Override, ...]:
        overrides: list[Override] = []
        for item_path, item in self.items(raw, path, required=False):
            section = self.mapping(item, item_path, ("start", "end", "engineer", "role"))
            if not isinstance(item, dict):
                continue
            start = self.value(section, "start", item_path, _as_moment(zone))
            end = self.value(section, "end", item_path, _as_moment(zone))
            engineer = self.value(section, "engineer", item_path, _as_text)
            role = self.value(section, "role", item_path, _as_choice("primary", "secondary"), "primary")
            if engineer is not None and engineer not in engineers:
                self.problem(f"{item_path}.engineer", f"unknown engineer {engineer!r}")
            if start is not None and end is not None and end <= start:
                self.problem(f"{item_path}.end", "must be after start")
            if start is not None and end is not None and engineer is not None:
                overrides.append(Override(start=start, end=end, role=role, engineer=engineer))
        return tuple(overrides)

    def time_windows(self, raw: object, zone: str) -> dict[str, TimeWindow]:
        """Named windows; ``not:`` and ``except:`` may name other windows (in any order, no cycles)."""
        sections: dict[str, dict[str, Any]] = {}
        for name, item in self.entries(raw, "time_windows"):
            path = f"time_windows.{name}"
            sections[name] = self.mapping(item, path, ("time_zone", "weekly", "dates", "except_dates", "except", "not"))
            if not isinstance(item, dict) or not sections[name]:
                self.problem(path, "expected weekly ranges, dates, or not: <another window>")
        built: dict[str, TimeWindow] = {}
        for name in sections:
            window = self.time_window(name, sections, built, zone, ())
            if window is not None:
                built[name] = window
        self.windows = built
        return built

    def time_window(self, name: str, sections: dict[str, dict[str, Any]], built: dict[str, TimeWindow],
                    zone: str, within: tuple[str, ...]) -> TimeWindow | None:
        if name in built:
            return built[name]
        path, section = f"time_windows.{name}", sections[name]
        if name in within:
            self.problem(path, f"refers back to itself ({' -> '.join((*within, name))})")
            return None

        def other(ref_path: str, ref: object) -> TimeWindow | None:
            if not isinstance(ref, str) or ref not in sections:
                self.problem(ref_path, f"unknown time window {ref!r} (known: {', '.join(sections) or 'none'})")
                return None
            found = self.time_window(ref, sections, built, zone, (*within, name))
            if found is not None:
                built[ref] = found
            return found

        negated = other(f"{path}.not", section["not"]) if "not" in section else None
        if "not" in section and len(section) > 1:
            self.problem(f"{path}.not", "stands alone: a window is either not: <other> (in that window's time "
                                        "zone) or its own times")
        weekly: list[WeeklyRange] = []
        for range_path, item in self.items(section.get("weekly"), f"{path}.weekly", required=False):
            part = self.mapping(item, range_path, ("days", "from", "to"))
            if not isinstance(item, dict):
                continue
            days = self.value(part, "days", range_path, _as_days, frozenset(range(7)))
            start = self.value(part, "from", range_path, _as_clock)
            end = self.value(part, "to", range_path, _as_day_end)
            if start is not None and end == start:
                self.problem(f"{range_path}.to", "equals from: write from \"00:00\" to \"24:00\" for a whole day")
            elif start is not None and days is not None and part.get("to") is not None and (
                end is not None or _as_day_end_is_midnight(part["to"])
            ):
                weekly.append(WeeklyRange(days=days, start=start, end=end))
        dates = self.date_list(section.get("dates"), f"{path}.dates")
        except_dates = self.date_list(section.get("except_dates"), f"{path}.except_dates")
        excluded_raw = section.get("except")
        excluded_items = [(f"{path}.except", excluded_raw)] if isinstance(excluded_raw, str) else \
            self.items(excluded_raw, f"{path}.except", required=False)
        excluded = [window for ref_path, ref in excluded_items if (window := other(ref_path, ref)) is not None]
        return TimeWindow(
            name=name,
            time_zone=self.value(section, "time_zone", path, _as_zone, zone),
            weekly=tuple(weekly),
            dates=dates,
            except_dates=except_dates,
            excluded=tuple(excluded),
            negated=negated,
        )

    def date_list(self, raw: object, path: str) -> frozenset[date]:
        found: set[date] = set()
        for item_path, item in self.items(raw, path, required=False):
            try:
                found.add(_as_date(item))
            except ValueError as exc:
                self.problem(item_path, str(exc))
        return frozenset(found)

    def policies(self, raw: object, engineers: dict[str, Engineer]) -> dict[str, Policy]:
        policies: dict[str, Policy] = {}
        for policy_id, item in self.entries(raw, "policies"):
            path = f"policies.{policy_id}"
            section = self.mapping(item, path, ("repeat", "steps"))
            steps: list[PolicyStep] = []
            for step_path, step in self.items(section.get("steps"), f"{path}.steps", required=True):
                step_section = self.mapping(step, step_path, ("notify", "via", "timeout", "ring_timeout", "chat"))
                if not isinstance(step, dict):
                    continue
                notify = self.value(step_section, "notify", step_path, _as_text)
                target, engineer = self.notify_target(notify, f"{step_path}.notify", engineers)
                via = self.value(step_section, "via", step_path, _as_via, "call")
                chat = self.step_chat(step_section, step_path, via)
                timeout_s = self.value(step_section, "timeout", step_path, _as_whole_seconds, 300)
                ring_s = self.value(step_section, "ring_timeout", step_path, _as_ring_seconds, None)
                if ring_s is not None and timeout_s is not None and ring_s > timeout_s:
                    self.problem(f"{step_path}.ring_timeout",
                                 f"{ring_s} s is longer than the step's timeout ({timeout_s} s): the next step "
                                 "would page while this call still rings")
                steps.append(
                    PolicyStep(
                        target=target,
                        engineer=engineer,
                        via=via,
                        timeout_s=timeout_s,
                        ring_timeout_s=ring_s,
                        group=self.step_group(notify, f"{step_path}.notify") if target == "group" else None,
                        chat=chat,
                    )
                )
            policies[policy_id] = Policy(
                id=policy_id,
                steps=tuple(steps),
                repeat=self.value(section, "repeat", path, _as_int(0, 100), 0),
            )
        return policies

    def notify_target(self, notify: str | None, path: str, engineers: dict[str, Engineer]) -> tuple[str, str | None]:
        if notify is None:
            return "", None
        if notify in ("primary", "secondary", "team"):
            return notify, None
        if notify.startswith("engineer:"):
            engineer = notify.removeprefix("engineer:").strip()
            if engineer not in engineers:
                self.problem(path, f"unknown engineer {engineer!r}")
            return "engineer", engineer
        if notify.startswith("directory:"):
            return "group", None  # read by step_group
        self.problem(path, f"{notify!r} is not one of: primary, secondary, team, engineer:<id>")
        return "", None

    def routes(self, raw: object, teams: dict[str, Team], policies: dict[str, Policy]) -> tuple[Route, ...]:
        routes: list[Route] = []
        allowed = ("name", "matchers", *_ROUTE_KEYS, *_SECRET_KEYS, *_RULE_KEYS)
        for index, (path, item) in enumerate(self.items(raw, "routes", required=False)):
            route = self.route(item, path, f"route-{index}", allowed, teams, policies)
            if route is not None:
                routes.append(route)
        self.duplicates([(f"routes[{i}].name", r.name) for i, r in enumerate(routes)], "route name")
        keys = [(f"routes[{i}]", r.routing_key) for i, r in enumerate(routes) if r.routing_key is not None]
        seen: set[str] = set()
        for path, key in keys:  # the key is a secret: never echo it
            if key in seen:
                self.problem(path, "this routing_key is already used by an earlier route")
            seen.add(key)
        return tuple(routes)

    def route(
        self,
        raw: object,
        path: str,
        default_name: str,
        allowed: tuple[str, ...],
        teams: dict[str, Team],
        policies: dict[str, Policy],
    ) -> Route | None:
        section = self.mapping(raw, path, allowed)
        if not isinstance(raw, dict):
            return None
        team = self.value(section, "team", path, _as_text)
        if team is not None and team not in teams:
            self.problem(f"{path}.team", f"unknown team {team!r}")
        policy = self.value(section, "policy", path, _as_text)
        if policy is not None and policy not in policies:
            self.problem(f"{path}.policy", f"unknown policy {policy!r}")
        return Route(
            name=self.value(section, "name", path, _as_text, default_name),
            matchers=self.matchers(section.get("matchers"), f"{path}.matchers"),
            team=team or "",
            policy=policy or "",
            priority=Priority(self.value(section, "priority", path, _as_choice("high", "low"), "low")),
            routing_key=self.secret(section, "routing_key", path, required=False),
            **self.rule_conditions(section, path),
        )

    def matchers(self, raw: object, path: str) -> tuple[Matcher, ...]:
        from gateway.routing import parse_matcher  # routing imports this module's types

        found: list[Matcher] = []
        if isinstance(raw, dict):
            return self.equalities(raw, path)
        for item_path, item in self.items(raw, path, required=False):
            if isinstance(item, dict):
                found.extend(self.equalities(item, item_path))
                continue
            try:
                found.append(parse_matcher(item))
            except ValueError as exc:
                self.problem(item_path, str(exc))
        return tuple(found)

    def equalities(self, raw: dict[Any, Any], path: str) -> tuple[Matcher, ...]:
        """``{label: value}`` means ``label="value"``."""
        found: list[Matcher] = []
        for label, value in raw.items():
            if not isinstance(label, str) or not _LABEL.fullmatch(label):
                self.problem(_join(path, label), "not a label name (letters, digits and '_')")
                continue
            try:
                found.append(Matcher(label=label, op="=", value=_as_label_value(value)))
            except ValueError as exc:
                self.problem(_join(path, label), str(exc))
        return tuple(found)

    def sandbox(self, raw: object, region: str) -> SandboxSettings:
        section = self.mapping(raw, "sandbox", ("enabled", "caller_id", "lines", "phones"))
        phones: list[SandboxPhone] = []
        raw_phones = section.get("phones")
        if raw_phones is not None and not isinstance(raw_phones, dict):
            self.problem("sandbox.phones", f"expected a mapping of phone numbers, got {_kind(raw_phones)}")
        elif raw_phones:
            numbers: list[tuple[str, str]] = []
            for key, item in raw_phones.items():
                path = f"sandbox.phones.{key}"
                try:
                    number = _as_phone(region)(key)
                except ValueError as exc:
                    self.problem(path, str(exc))
                    number = None
                phone = self.mapping(item, path, ("behaviour", "after", "digits"))
                behaviour = self.value(
                    phone, "behaviour", path, _as_choice("answer", "never_answer", "busy", "reject")
                )
                after = self.value(phone, "after", path, _as_duration(timedelta(0)), timedelta(seconds=2))
                digits = self.value(phone, "digits", path, _as_digits, "")
                if digits and behaviour not in ("answer", None):
                    self.problem(f"{path}.digits", "only allowed with behaviour: answer")
                if number is not None and behaviour is not None:
                    numbers.append((path, number))
                    phones.append(
                        SandboxPhone(number=number, behaviour=behaviour, after_s=after.total_seconds(), digits=digits)
                    )
            self.duplicates(numbers, "phone number")
        return SandboxSettings(
            enabled=self.value(section, "enabled", "sandbox", _as_bool, True),
            caller_id=self.value(section, "caller_id", "sandbox", _as_phone(region), "+15559990000"),
            lines=self.value(section, "lines", "sandbox", _as_int(1, 10000), 10),
            phones=tuple(phones),
        )

    def maintenance(self, raw: object, zone: str) -> tuple[MaintenanceWindow, ...]:
        """Maintenance windows: matchers (at least one) and either start/end (one-off) or during (recurring)."""
        found: list[MaintenanceWindow] = []
        allowed = ("name", "matchers", "start", "end", "time_zone", "during", "action", "comment")
        for index, (path, item) in enumerate(self.items(raw, "maintenance", required=False)):
            section = self.mapping(item, path, allowed)
            if not isinstance(item, dict):
                continue
            matchers = self.matchers(section.get("matchers"), f"{path}.matchers")
            if not section.get("matchers"):
                self.problem(f"{path}.matchers", "at least one matcher is required (a window for every alert "
                             "would hide them all)")
            elif matchers and (problem := unlabelled_problem(matchers)):
                self.problem(f"{path}.matchers", problem)
            window_zone = self.value(section, "time_zone", path, _as_zone, zone)
            start = end = None
            during: tuple[TimeWindow, ...] = ()
            if "during" in section:
                if "start" in section or "end" in section:
                    self.problem(f"{path}.during", "either during (recurring) or start and end (one-off), not both")
                during = self.window_names(section["during"], f"{path}.during", required=True)
            else:
                start = self.value(section, "start", path, _as_moment(window_zone or zone))
                end = self.value(section, "end", path, _as_moment(window_zone or zone))
                if start is not None and end is not None and end <= start:
                    self.problem(f"{path}.end", "must be after start")
            found.append(MaintenanceWindow(
                name=self.value(section, "name", path, _as_text, f"maintenance-{index}"),
                matchers=matchers,
                action=self.value(section, "action", path, _as_choice("suppress", "low_priority"), "suppress"),
                start=start,
                end=end,
                during=during,
                comment=self.value(section, "comment", path, _as_text, ""),
            ))
        self.duplicates([(f"maintenance[{i}].name", w.name) for i, w in enumerate(found)], "maintenance window name")
        return tuple(found)

    def heartbeats(self, raw: object, teams: dict[str, Team]) -> dict[str, Heartbeat]:
        found: dict[str, Heartbeat] = {}
        for name, item in self.entries(raw, "heartbeats"):
            path = f"heartbeats.{name}"
            section = self.mapping(item, path, ("interval", "grace", "labels", "team", "summary", "priority"))
            if not isinstance(item, dict):
                self.problem(path, "expected a mapping with at least interval")
                continue
            interval = self.value(section, "interval", path, _as_duration(timedelta(seconds=1)))
            grace = self.value(section, "grace", path, _as_duration(timedelta(0)), timedelta(0))
            labels: dict[str, str] = {}
            raw_labels = section.get("labels")
            if raw_labels is not None and not isinstance(raw_labels, dict):
                self.problem(f"{path}.labels", f"expected a mapping of label names to values, got {_kind(raw_labels)}")
            elif raw_labels:
                labels = {m.label: m.value for m in self.equalities(raw_labels, f"{path}.labels")}
            labels.setdefault("heartbeat", name)
            team = self.value(section, "team", path, _as_text, None)
            if team is not None and team not in teams:
                self.problem(f"{path}.team", f"unknown team {team!r}")
            priority = self.value(section, "priority", path, _as_choice("high", "low"), None)
            if interval is not None:
                found[name] = Heartbeat(
                    name=name, interval_s=interval.total_seconds(), grace_s=(grace or timedelta(0)).total_seconds(),
                    labels=labels, team=team,
                    summary=self.value(section, "summary", path, _as_text, "") or f"heartbeat {name} is late",
                    priority=Priority(priority) if priority else None)
        return found
    def layered_team(self, team_id: str, section: dict[str, Any], engineers: dict[str, Engineer],
                     zone: str) -> Team:
        """A team as a stack of layers (``layers:``, bottom first) instead of one ``members`` + ``rotation``.

        ``Team.members`` is every engineer of every layer (first seen first); naive override times are read in
        the zone of the first layer with a rotation.
        """
        path = f"teams.{team_id}"
        for key in ("members", "rotation"):
            if key in section:
                self.problem(f"{path}.{key}", "set either layers or members and rotation, not both "
                                              "(members and rotation are a team of one layer)")
        layers: list[Layer] = []
        names: list[tuple[str, str]] = []
        for layer_path, item in self.items(section["layers"], f"{path}.layers", required=True):
            part = self.mapping(item, layer_path, ("name", "members", "rotation", "when"))
            if not isinstance(item, dict):
                continue
            name = self.value(part, "name", layer_path, _as_text)
            if name is not None:
                names.append((f"{layer_path}.name", name))
            members = self.members(part.get("members"), f"{layer_path}.members", engineers)
            rotation = None
            if part.get("rotation") is not None:
                rotation = self.rotation(part["rotation"], f"{layer_path}.rotation", zone)
            when = self.window_names(part["when"], f"{layer_path}.when", required=True) if "when" in part else ()
            if name is not None and members:
                layers.append(Layer(name=name, members=tuple(dict.fromkeys(m for _, m in members)),
                                    rotation=rotation, when=when))
        self.duplicates(names, "layer name")
        override_zone = next((layer.rotation.time_zone for layer in layers if layer.rotation is not None), zone)
        return Team(
            id=team_id,
            members=tuple(dict.fromkeys(member for layer in layers for member in layer.members)),
            rotation=None,
            overrides=self.overrides(section.get("overrides"), f"{path}.overrides", override_zone, engineers),
            layers=tuple(layers),
        )

    # directories (appended: directory-backed teams)

    def directories(self, raw: object) -> dict[str, DirectorySettings]:
        """``directories: {name: {kind: keycloak, url, realm, client_id, client_secret_env, ...}}``."""
        found: dict[str, DirectorySettings] = {}
        self.directory_names = [str(name) for name in raw] if isinstance(raw, dict) else []  # valid or not
        keys = ("kind", "url", "realm", "client_id", "client_secret", "client_secret_env", "phone_attribute",
                "email_attribute", "cache_ttl", "timeout")
        for name, item in self.entries(raw, "directories"):
            path = f"directories.{name}"
            if ":" in name:
                self.problem(path, "a directory name must not contain ':' (it prefixes its people's ids)")
            section = self.mapping(item, path, keys)
            if not isinstance(item, dict):
                continue
            self.value(section, "kind", path, _as_choice("keycloak"))
            url = self.value(section, "url", path, _as_url)
            realm = self.value(section, "realm", path, _as_text)
            client_id = self.value(section, "client_id", path, _as_text)
            secret = self.secret(section, "client_secret", path, required=True)
            ttl = self.value(section, "cache_ttl", path, _as_duration(timedelta(seconds=1)), timedelta(minutes=5))
            timeout = self.value(section, "timeout", path, _as_duration(timedelta(seconds=1)), timedelta(seconds=10))
            phone_attribute = self.value(section, "phone_attribute", path, _as_text, "phoneNumber")
            email_attribute = self.value(section, "email_attribute", path, _as_text, "email")
            if url is None or realm is None or client_id is None or secret is None:
                continue
            found[name] = DirectorySettings(
                name=name, kind="keycloak", url=url, realm=realm, client_id=client_id, client_secret=secret,
                phone_attribute=phone_attribute, email_attribute=email_attribute,
                cache_ttl_s=ttl.total_seconds(), timeout_s=timeout.total_seconds(),
            )
        return found

    def directory_team(self, team_id: str, section: dict[str, Any], path: str, zone: str) -> Team | None:
        """A team whose members are a directory group's (in username order), not listed in the file."""
        if "members" in section:
            self.problem(path, "set either members or directory, not both")
        where = f"{path}.directory"
        group = self.mapping(section["directory"], where, ("name", "group"))
        name = self.value(group, "name", where, _as_text)
        group_path = self.value(group, "group", where, _as_text)
        known = getattr(self, "directory_names", [])
        if name is not None and name not in known:
            self.problem(f"{where}.name", f"unknown directory {name!r} (directories: {', '.join(known) or 'none'})")
            name = None
        if group_path is not None and not group_path.startswith("/"):
            self.problem(f"{where}.group", f"a group path starts with '/', e.g. /sre/{group_path}")
            group_path = None
        if group_path is not None and _empty_segment(group_path):
            self.problem(f"{where}.group", f"{group_path!r} is not a group path like /sre/companyapp2")
            group_path = None
        if name is None or group_path is None:
            return None
        rotation = None
        if section.get("rotation") is not None:
            rotation = self.rotation(section["rotation"], f"{path}.rotation", zone)
        if section.get("overrides") is not None:
            self.problem(f"{path}.overrides", "not supported for a directory team (add them at run time)")
        return Team(id=team_id, members=(), rotation=rotation,
                    directory=DirectoryGroup(directory=name, group=group_path.rstrip("/") or "/"))

    def step_group(self, notify: str, path: str) -> DirectoryGroup | None:
        """``directory:<name>:<group path>``: a step that pages every member of a directory group."""
        _, _, rest = notify.partition(":")
        name, _, group = rest.partition(":")
        known = getattr(self, "directory_names", [])
        if name.strip() not in known:
            self.problem(path, f"unknown directory {name.strip()!r} (directories: {', '.join(known) or 'none'})")
            return None
        if not group.strip().startswith("/") or _empty_segment(group.strip()):
            self.problem(path, f"expected directory:{name.strip()}:/<group path>, e.g. directory:corp:/sre/dbas")
            return None
        return DirectoryGroup(directory=name.strip(), group=group.strip().rstrip("/") or "/")

    def cache(self, raw: object) -> tuple[str | None, str | None]:
        """``cache: {url: redis://host:6379/0, password_env: ...}``: shared by several gateways; absent: in-process."""
        section = self.mapping(raw, "cache", ("url", "password_env"))
        url: str | None = self.value(section, "url", "cache", _as_text, None)
        password = self.secret(section, "password", "cache", required=False)
        if url is None:
            if "password_env" in section:
                self.problem("cache.password_env", "is only used with cache.url")
            return None, None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises for a port that is not a number in range)
        except ValueError as exc:
            self.problem("cache.url", f"not a valid URL: {exc}")
            return None, None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            self.problem("cache.url", f"{url!r} is not a Redis URL like redis://127.0.0.1:6379/0")
            return None, None
        if parts.password is not None or "password" in parse_qs(parts.query):
            self.problem("cache.url", "holds a password: put it in the environment variable named by "
                         "cache.password_env instead")
            return None, None
        if not re.fullmatch(r"/?|/[0-9]+", parts.path):  # redis-py would quietly use database 0
            self.problem("cache.url", f"the path must be a database number like /0, not {parts.path!r}")
            return None, None
        return url, password


    # ------------------------------------------------ route conditions, priority rules

    def rule_conditions(self, section: dict[str, Any], path: str) -> dict[str, Any]:
        """``receiver``, ``when``, ``unless`` and ``expression`` of a route or priority rule, as Route fields."""
        from gateway.routing import parse_receiver  # routing imports this module's types

        receiver = None
        if section.get("receiver") is not None:
            try:
                receiver = parse_receiver(section["receiver"])
            except ValueError as exc:
                self.problem(f"{path}.receiver", str(exc))
        expression = self.value(section, "expression", path, lambda raw: compile_expression(_as_text(raw)), None)
        return {
            "receiver": receiver,
            "when": self.window_names(section.get("when"), f"{path}.when"),
            "unless": self.window_names(section.get("unless"), f"{path}.unless"),
            "expression": expression,
        }

    def window_names(self, raw: object, path: str, *, required: bool = False) -> tuple[TimeWindow, ...]:
        """A time window's name, or a list of them, each one of ``time_windows``."""
        items = [(path, raw)] if isinstance(raw, str) else self.items(raw, path, required=required)
        found: list[TimeWindow] = []
        for item_path, name in items:
            window = self.windows.get(name) if isinstance(name, str) else None
            if window is None:
                known = ", ".join(self.windows) or "none: add them under time_windows"
                self.problem(item_path, f"unknown time window {name!r} (known: {known})")
            elif window not in found:
                found.append(window)
        return tuple(found)

    def priority_rules(self, raw: object, routes: tuple[Route, ...]) -> tuple[PriorityRule, ...]:
        rules: list[PriorityRule] = []
        names = {route.name for route in routes}
        for index, (path, item) in enumerate(self.items(raw, "priority_rules", required=False)):
            section = self.mapping(item, path, ("name", "matchers", "routes", *_RULE_KEYS))
            if not isinstance(item, dict):
                continue
            if not set(section) - {"name", "routes"}:
                self.problem(path, "needs a condition (matchers, receiver, when, unless or expression): "
                                   "a rule without one would raise every alert")
            only: list[str] = []
            for route_path, name in ([(f"{path}.routes", section["routes"])] if isinstance(section.get("routes"), str)
                                     else self.items(section.get("routes"), f"{path}.routes", required=False)):
                if not isinstance(name, str) or name not in names:
                    self.problem(route_path, f"unknown route {name!r} (routes are named by their name:)")
                else:
                    only.append(name)
            rules.append(PriorityRule(
                name=self.value(section, "name", path, _as_text, f"rule-{index}"),
                matchers=self.matchers(section.get("matchers"), f"{path}.matchers"),
                routes=frozenset(only),
                **self.rule_conditions(section, path),
            ))
        self.duplicates([(f"priority_rules[{i}].name", r.name) for i, r in enumerate(rules)], "rule name")
        return tuple(rules)

    # handoff notices and on-call summaries (gateway/notices.py)

    def notices(self, raw: object, teams: dict[str, Team], engineers: dict[str, Engineer],
                zone: str) -> dict[str, TeamNotices]:
        """Each team's ``handoff_notice`` and ``summary`` (the team's other keys are read by ``teams``)."""
        found: dict[str, TeamNotices] = {}
        if not isinstance(raw, dict):
            return found
        for team_id, item in raw.items():
            team = teams.get(str(team_id))
            if team is None or not isinstance(item, dict) or not any(key in item for key in _NOTICE_KEYS):
                continue
            path = f"teams.{team_id}"
            rotations = [team.rotation] if team.rotation else [each.rotation for each in team.layers if each.rotation]
            team_zone = rotations[0].time_zone if rotations else zone  # as gateway.layers.time_zone
            handoff = None
            if item.get("handoff_notice") is not None:
                handoff = self.handoff_notice(item["handoff_notice"], f"{path}.handoff_notice", team_zone)
            summary = None
            if item.get("summary") is not None:
                summary = self.summary(item["summary"], f"{path}.summary", team_zone, engineers)
            if handoff is not None or summary is not None:
                found[team.id] = TeamNotices(handoff=handoff, summary=summary)
        return found

    def handoff_notice(self, raw: object, path: str, zone: str) -> HandoffNotice | None:
        section = self.mapping(raw, path, ("lead", "roles", "via", "time_zone"))
        if not isinstance(raw, dict):
            return None
        lead = self.value(section, "lead", path, _as_lead, timedelta(minutes=30))
        roles = self.choices(section, "roles", path, ("primary", "secondary"), ("primary", "secondary"))
        via = self.choices(section, "via", path, NOTICE_CHANNELS, ("sms",))
        time_zone = self.value(section, "time_zone", path, _as_zone, zone)
        if lead is None or not roles or not via:
            return None
        return HandoffNotice(lead=lead, roles=roles, via=via, time_zone=time_zone)

    def summary(self, raw: object, path: str, zone: str, engineers: dict[str, Engineer]) -> OnCallSummary | None:
        section = self.mapping(raw, path, ("every", "at", "day", "to", "via", "time_zone"))
        if not isinstance(raw, dict):
            return None
        every = self.value(section, "every", path, _as_choice("daily", "weekly"))
        at = self.value(section, "at", path, _as_clock, time(9, 0))
        day = None
        if every == "weekly":
            day = self.value(section, "day", path, _as_weekday)
        elif "day" in section and every is not None:
            self.problem(f"{path}.day", "only allowed with every: weekly")
        to: list[tuple[str, str]] = []
        for item_path, item in self.items(section.get("to"), f"{path}.to", required=True):
            if not isinstance(item, str):
                self.problem(item_path, f"expected an engineer id, got {_kind(item)}")
            elif item not in engineers and not self.directory_person(item):
                self.problem(item_path, f"unknown engineer {item!r} (an engineer under engineers:, or a directory "
                                        "person as <directory>:<username>)")
            else:
                to.append((item_path, item))
        self.duplicates(to, "engineer")
        via = self.choices(section, "via", path, NOTICE_CHANNELS, ("sms",))
        time_zone = self.value(section, "time_zone", path, _as_zone, zone)
        if every is None or at is None or (every == "weekly" and day is None) or not to or not via:
            return None
        return OnCallSummary(every=every, at=at, day=day, to=tuple(dict.fromkeys(e for _, e in to)), via=via,
                             time_zone=time_zone)

    def choices(self, section: dict[str, Any], key: str, path: str, allowed: tuple[str, ...],
                default: tuple[str, ...]) -> tuple[str, ...]:
        """A list of distinct values out of ``allowed`` (``default`` when absent)."""
        if section.get(key) is None:
            return default
        chosen: list[tuple[str, str]] = []
        for item_path, item in self.items(section[key], _join(path, key), required=True):
            try:
                chosen.append((item_path, _as_choice(*allowed)(item)))
            except ValueError as exc:
                self.problem(item_path, str(exc))
        self.duplicates(chosen, "value")
        return tuple(dict.fromkeys(value for _, value in chosen))

    def directory_person(self, engineer_id: str) -> bool:
        """``<directory>:<username>`` of a configured directory (found, or not, when the directory is read)."""
        name, colon, username = engineer_id.partition(":")
        return bool(colon and username.strip()) and name in getattr(self, "directory_names", [])

    def notice_channels(self, notices: dict[str, TeamNotices], sms_order: tuple[str, ...],
                        email: EmailSettings | None) -> None:
        """Notices by SMS need a provider that sends SMS; by email, an email: section."""
        for team_id, settings in notices.items():
            for key, item in (("handoff_notice", settings.handoff), ("summary", settings.summary)):
                if item is not None and "sms" in item.via and not sms_order:
                    self.problem(f"teams.{team_id}.{key}.via", "sms needs a provider that sends SMS (providers.sms)")
                if item is not None and "email" in item.via and email is None:
                    self.problem(f"teams.{team_id}.{key}.via", "email needs an email: section (the SMTP server)")

    def kavenegar(self, raw: object) -> KavenegarSettings | None:
        """Kavenegar's SMS gateway: an API key, the sender line, and the secret of the inbound URL."""
        if raw is None:
            return None
        p = "kavenegar"
        keys = ("api_key", "api_key_env", "sender", "api_url", "inbound_secret", "inbound_secret_env",
                "status_poll_interval", "receive_poll_interval")
        section = self.mapping(raw, p, keys)
        api_key = self.secret(section, "api_key", p, required=True)
        sender = self.value(section, "sender", p, _as_line_number)
        inbound_secret = self.secret(section, "inbound_secret", p, required=False)
        if inbound_secret is not None and len(inbound_secret) < 16:
            self.problem(f"{p}.inbound_secret", "is too short: use at least 16 random characters "
                                                "(e.g. openssl rand -hex 16)")
        api_url = self.value(section, "api_url", p, _as_url, KAVENEGAR_API_URL)
        if api_url is not None and (urlsplit(api_url).query or urlsplit(api_url).fragment):
            self.problem(f"{p}.api_url", "must be a base URL without ?query or #fragment (methods are added to its "
                                         "path)")
        interval: timedelta = self.value(section, "status_poll_interval", p, _as_duration(timedelta(seconds=1)),
                                         timedelta(seconds=30))
        receive: timedelta | None = self.value(section, "receive_poll_interval", p,
                                               _as_duration(timedelta(seconds=1)), None)
        if api_key is None or sender is None:
            return None
        return KavenegarSettings(api_key=api_key, sender=sender, api_url=api_url, inbound_secret=inbound_secret,
                                 status_poll_interval_s=interval.total_seconds(),
                                 receive_poll_interval_s=receive.total_seconds() if receive is not None else None)

    # message channels (gateway.message_settings): email, chat webhooks, signed action links

    def step_chat(self, section: dict[str, Any], path: str, via: str | None) -> tuple[str, ...]:
        """A step's ``chat:`` destinations: required when ``via`` includes chat, refused otherwise."""
        wants_chat = via is not None and "chat" in via.split("+")
        names: list[tuple[str, str]] = []
        for item_path, name in self.items(section.get("chat"), f"{path}.chat", required=wants_chat):
            if not isinstance(name, str) or not _ID.fullmatch(name):
                self.problem(item_path, f"expected the name of a chat destination, got {_kind(name)}")
            else:
                names.append((item_path, name))
        self.duplicates(names, "chat destination")
        if names and via is not None and not wants_chat:
            self.problem(f"{path}.chat", "only used when via includes chat (e.g. via: [call, chat])")
        return tuple(dict.fromkeys(name for _, name in names))

    def email(self, raw: object) -> EmailSettings | None:
        if raw is None:
            return None
        p = "email"
        keys = ("host", "port", "starttls", "implicit_tls", "username", "password", "password_env", "from",
                "ca_file", "timeout")
        section = self.mapping(raw, p, keys)
        host = self.value(section, "host", p, _as_text)
        sender = self.value(section, "from", p, _as_sender)
        starttls = self.value(section, "starttls", p, _as_bool, True)
        implicit_tls = self.value(section, "implicit_tls", p, _as_bool, False)
        if starttls and implicit_tls and "starttls" in section:
            self.problem(p, "set starttls or implicit_tls, not both (implicit TLS is encrypted from the start)")
        username = self.value(section, "username", p, _as_text, None)
        password = self.secret(section, "password", p, required=username is not None)
        if password is not None and username is None:
            self.problem(f"{p}.username", "is required with a password")
        if username is not None and not starttls and not implicit_tls and not _is_loopback(host):
            self.problem(f"{p}.starttls", "is off, so AUTH would send the password unencrypted: use starttls or "
                                          "implicit_tls (a relay on this host, 127.0.0.1 or localhost, may do without)")
        ca_file = None
        raw_ca = self.value(section, "ca_file", p, _as_text, None)
        if raw_ca is not None:
            ca_file = self.relative(raw_ca)
            if not ca_file.is_file():
                self.problem(f"{p}.ca_file", f"file does not exist: {ca_file}")
        timeout: timedelta = self.value(section, "timeout", p, _as_duration(timedelta(seconds=1)),
                                        timedelta(seconds=30))
        if host is None or sender is None:
            return None
        return EmailSettings(
            host=host,
            port=self.value(section, "port", p, _as_int(1, 65535), 465 if implicit_tls else 587),
            sender=sender,
            starttls=bool(starttls) and not implicit_tls,
            implicit_tls=bool(implicit_tls),
            username=username,
            password=password,
            ca_file=ca_file,
            timeout_s=timeout.total_seconds(),
        )

    def chat(self, raw: object) -> dict[str, ChatDestination]:
        found: dict[str, ChatDestination] = {}
        for name, item in self.entries(raw, "chat"):
            path = f"chat.{name}"
            section = self.mapping(item, path, ("kind", "url", "url_env", "secret", "secret_env", "timeout"))
            if not isinstance(item, dict):
                continue
            kind = self.value(section, "kind", path, _as_choice(*CHAT_KINDS))
            url = self.secret(section, "url", path, required=True)
            if url is not None:
                try:
                    url = _as_url(url)
                except ValueError as exc:
                    key = "url" if "url" in section else "url_env"
                    self.problem(f"{path}.{key}", str(exc).replace(repr(url), "the URL"))  # never echo a secret
                    url = None
            secret = self.secret(section, "secret", path, required=kind == "webhook")
            if secret is not None and kind in ("slack", "teams"):
                self.problem(path, f"a {kind} webhook is not signed: secret is only for kind: webhook")
            timeout: timedelta = self.value(section, "timeout", path, _as_duration(timedelta(seconds=1)),
                                            timedelta(seconds=10))
            if kind is not None and url is not None:
                found[name] = ChatDestination(name=name, kind=kind, url=url, secret=secret,
                                              timeout_s=timeout.total_seconds())
        return found

    def action_links(self, raw: object) -> ActionLinkSettings:
        p = "action_links"
        section = self.mapping(raw, p, ("secret_env", "previous_secret_env", "expires_after"))
        if "secret_env" in section:
            secret = self.secret(section, "secret", p, required=False)
        else:  # the default variable, read here so that a bad value stops the start, not a link at 3 a.m.
            secret = os.environ.get(LINK_SECRET_ENV, "").strip() or None
        previous = self.secret(section, "previous_secret", p, required=False) if "previous_secret_env" in section \
            else None
        for key, value in (("secret_env", secret), ("previous_secret_env", previous)):
            if value is not None and len(value) < MIN_LINK_SECRET_CHARS:
                variable = section.get(key, LINK_SECRET_ENV)
                self.problem(f"{p}.{key}" if key in section else p,
                             f"the key in {variable} has {len(value)} characters; use at least "
                             f"{MIN_LINK_SECRET_CHARS} (a short one can be guessed from any link)")
        if previous is not None and secret is None:
            self.problem(f"{p}.previous_secret_env", f"needs a current key (secret_env, or {LINK_SECRET_ENV})")
        expires: timedelta = self.value(section, "expires_after", "action_links",
                                        _as_duration(timedelta(minutes=5)), timedelta(hours=24))
        if expires > timedelta(days=30):
            self.problem("action_links.expires_after", "must be at most 30d (a link in an old email must die)")
        return ActionLinkSettings(secret=secret, previous_secret=previous, expires_after_s=int(expires.total_seconds()))

    def message_channels(self, config: Config) -> None:
        """Steps that email need ``email:``; steps that post to chat name configured destinations."""
        for policy in config.policies.values():
            for index, step in enumerate(policy.steps):
                path = f"policies.{policy.id}.steps[{index}]"
                if "email" in step.channels and config.email is None:
                    self.problem(f"{path}.via", "sends email, but there is no email: section (SMTP server)")
                for position, name in enumerate(step.chat):
                    if name not in config.chat:
                        self.problem(f"{path}.chat[{position}]", f"unknown chat destination {name!r}")


def _empty_segment(group_path: str) -> bool:
    """``/``, ``//sre`` or ``/sre//x``: no group has that path (a trailing ``/`` is allowed and dropped)."""
    return any(not part for part in group_path.rstrip("/").split("/")[1:]) or group_path.strip("/") == ""


@dataclass(frozen=True, kw_only=True)
class DirectorySettings:
    """A directory of people and groups (Keycloak's admin REST API)."""

    name: str
    kind: str  # "keycloak"
    url: str  # base URL, e.g. https://sso.example.com or https://sso.example.com/auth (before Keycloak 17)
    realm: str
    client_id: str
    client_secret: str = field(repr=False)
    phone_attribute: str = "phoneNumber"  # the user attribute holding the number(s)
    email_attribute: str = "email"  # "email" is Keycloak's own field; anything else is a user attribute
    cache_ttl_s: float = 300.0
    timeout_s: float = 10.0  # each request to the directory


@dataclass(frozen=True, kw_only=True)
class DirectoryGroup:
    directory: str  # a key of Config.directories
    group: str  # the group's path, e.g. /sre/companyapp2


#: a team's keys read by ``_Reader.notices``
_NOTICE_KEYS = ("handoff_notice", "summary")
#: how a handoff notice or summary can reach an engineer (an email notifier adds "email")
NOTICE_CHANNELS = ("sms", "email")
_WEEKDAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _as_lead(raw: object) -> timedelta:
    value = _as_duration(timedelta(0))(raw)
    if value > timedelta(days=7):
        raise ValueError(f"must be at most 7d, got {raw!r}")
    return value


def _as_weekday(raw: object) -> int:
    """``mon`` ... ``sun`` (or the day's full name): 0 = Monday."""
    text = raw.strip().lower() if isinstance(raw, str) else None
    for index, name in enumerate(_WEEKDAY_NAMES):
        if text in (name, name[:3]):
            return index
    raise ValueError(f"expected a day of the week ({', '.join(name[:3] for name in _WEEKDAY_NAMES)}), got {raw!r}")


# ------------------------------------------- handoff notices and on-call summaries


@dataclass(frozen=True, kw_only=True)
class HandoffNotice:
    """Tell whoever takes over a role of the team ``lead`` before the handoff (gateway/notices.py)."""

    lead: timedelta
    roles: tuple[str, ...]  # "primary", "secondary"
    via: tuple[str, ...]  # notifier channels (NOTICE_CHANNELS)
    time_zone: str  # IANA name the message's times are written in


@dataclass(frozen=True, kw_only=True)
class OnCallSummary:
    """Who is on call now and the coming handoffs, sent to ``to`` every day or week at ``at``."""

    every: str  # "daily" | "weekly"
    at: time  # local time in ``time_zone``
    day: int | None  # weekly: 0 = Monday ... 6 = Sunday; None for daily
    to: tuple[str, ...]  # engineer ids
    via: tuple[str, ...]
    time_zone: str


@dataclass(frozen=True, kw_only=True)
class TeamNotices:
    """A team's ``handoff_notice`` and ``summary`` settings (either may be absent)."""

    handoff: HandoffNotice | None = None
    summary: OnCallSummary | None = None


def _as_line_number(raw: object) -> str:
    """A Kavenegar sender line: digits, like 10004346 or 0018018949161."""
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if isinstance(text, str) and re.fullmatch(r"[0-9]{4,20}", text.strip()):
        return text.strip()
    raise ValueError(f"expected a sender line number of 4 to 20 digits, like \"10004346\", got {_kind(raw)}")


_VIA = ("call", "sms", "email", "chat")
_EMAIL = re.compile(r"[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+")


def _as_via(raw: object) -> str:
    """``call``, ``sms``, ``both``, ``email``, ``chat``, or a list of channels: stored joined by '+'."""
    if isinstance(raw, str) and raw in ("both", *_VIA):
        return raw
    if not isinstance(raw, list) or not raw:
        shown = repr(raw) if isinstance(raw, str) else _kind(raw)
        raise ValueError(f"{shown} is not one of: call, sms, both, email, chat (or a list of channels)")
    channels: list[str] = []
    for item in raw:
        if item not in _VIA:
            raise ValueError(f"{item!r} is not one of: {', '.join(_VIA)}")
        if item in channels:
            raise ValueError(f"{item!r} is listed twice")
        channels.append(item)
    return "+".join(channels)


def _as_email(raw: object) -> str:
    address = _as_text(raw)
    if not is_address(address):  # the mailer's own check: what loads is what it sends to
        raise ValueError(f"{address!r} is not an email address like alice@example.com")
    return address


def _as_sender(raw: object) -> str:
    """A From header: ``oncall@example.com`` or ``On-call <oncall@example.com>``."""
    from email.errors import HeaderParseError
    from email.headerregistry import Address
    from email.utils import parseaddr

    text = _as_text(raw)
    name, address = parseaddr(text)
    problem = ValueError(f"{text!r} is not a sender like \"On-call <oncall@example.com>\"")
    if not _EMAIL.fullmatch(address) or address not in text or any(c in text for c in "\r\n"):
        raise problem  # (parseaddr glues "a@b.c extra" into "a@b.cextra": the address must be as written)
    try:
        return str(Address(display_name=name, addr_spec=address))
    except (HeaderParseError, ValueError, IndexError):
        raise problem from None


def _is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address) is this machine, where a plaintext hop stays on the host."""
    import ipaddress

    if host is None or host.lower() in ("localhost", "localhost.localdomain"):
        return host is not None
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def unlabelled_problem(matchers: tuple[Matcher, ...]) -> str | None:
    """Why a maintenance window with ``matchers`` would hold nearly every alert, or None. Like Alertmanager's
    silences (at least one matcher must not match the empty string), and stricter: ``env!="dev"`` alone
    also holds every alert without an env label."""
    from gateway.routing import matches  # routing imports this module's types

    if any(not matches(matcher, {}) for matcher in matchers):
        return None
    return ("every matcher also matches an alert without that label, so the window would hold nearly every "
            'alert: add one that needs a value, like service="db"')
