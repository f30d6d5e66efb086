"""The ``gateway`` command: serve, check-config, oncall, check-directory."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from core.phone import mask
from gateway.config import Config, ConfigError, Engineer, Team, load_config
from gateway.layers import active_layer, layer_gaps, time_zone
from gateway.notification_rules import never_fire
from gateway.oncall import who_is_on_call
from gateway.overrides import merged, read_stored_overrides
from gateway.store import StoredOverride

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Self-hosted on-call telephony gateway: alerts in over HTTP, "
        "calls and SMS out to the engineers on call.",
        epilog="Run 'gateway <command> --help' for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the HTTP server",
        description="Load and check CONFIG, then run the gateway's HTTP server until interrupted.",
    )
    serve.add_argument("config", metavar="CONFIG", help="path of the YAML config file")
    serve.add_argument("--host", help="address to listen on (default: server.host from the config)")
    serve.add_argument("--port", type=int, help="port to listen on (default: server.port from the config)")
    serve.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=_LOG_LEVELS, help="logging level (default: INFO)"
    )
    serve.set_defaults(handler=_serve)

    check = commands.add_parser(
        "check-config",
        help="validate a config file",
        description="Load CONFIG and report every problem, one per line (exit 1), "
        "or a short summary when it is valid (exit 0).",
    )
    check.add_argument("config", metavar="CONFIG", help="path of the YAML config file")
    check.set_defaults(handler=_check_config)

    oncall = commands.add_parser(
        "oncall",
        help="show who is on call",
        description="Show each team's primary and secondary engineer (numbers masked) "
        "and until when that holds, with the overrides of the config and those added at run time "
        "(read from the config's store when it exists; --config-only skips it).",
    )
    oncall.add_argument("config", metavar="CONFIG", help="path of the YAML config file")
    oncall.add_argument("--team", help="only this team")
    oncall.add_argument(
        "--at",
        metavar="ISO8601",
        help="the moment to ask about, e.g. 2026-03-01T10:00+01:00 "
        "(default: now; without an offset it is read in defaults.time_zone)",
    )
    oncall.add_argument("--config-only", action="store_true",
                        help="ignore the overrides added at run time (do not read the store)")
    oncall.set_defaults(handler=_oncall)

    directory = commands.add_parser(
        "check-directory",
        help="fetch the directory teams' members",
        description="Fetch each directory team's group (Keycloak) once and list its members (numbers masked), "
        "who cannot be paged and why (exit 0), or the error of a group that could not be fetched (exit 1).",
    )
    directory.add_argument("config", metavar="CONFIG", help="path of the YAML config file")
    directory.set_defaults(handler=_check_directory)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.handler(args))


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    problem = store_problem(config)
    if problem is not None:
        print(f"gateway serve: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gateway.app import run_server  # the heavy part: only when serving

    run_server(
        config,
        host=args.host if args.host is not None else config.host,
        port=args.port if args.port is not None else config.port,
    )
    return 0


def store_problem(config: Config) -> str | None:
    """Why the configured store cannot be opened for writing, or None.

    Checked before serving so that a folder the gateway's user cannot write (a Docker volume owned by
    another uid, say), or a PostgreSQL that cannot be reached or refuses the login, is one line naming
    the store, not a traceback from deep inside the start.
    """
    if config.store_url is not None:
        return _postgres_problem(config.store_url, config.store_password)
    path = config.store_path
    try:
        db = sqlite3.connect(path, timeout=5)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # WAL needs the folder writable too (its -wal and -shm files)
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        folder = path.parent
        hint = ""
        if not folder.exists():
            hint = f" (the folder {folder} does not exist)"
        elif not folder.is_dir():
            hint = f" ({folder} is not a folder)"
        elif not os.access(folder, os.W_OK):
            hint = f" (the folder {folder} is not writable by uid {os.getuid()})"
        return f"cannot open the store {path}: {exc}{hint}"
    return None


_PG_CONNECT_TIMEOUT_S = 10.0


def _postgres_problem(url: str, password: str | None) -> str | None:
    """Connect and log in once; a first start also needs the right to create the tables."""
    import asyncio

    import asyncpg

    from gateway.store_factory import masked_url

    async def check() -> str | None:
        db = await asyncpg.connect(url, password=password, timeout=_PG_CONNECT_TIMEOUT_S)
        try:
            row = await db.fetchrow(
                "SELECT to_regclass('schema_version') IS NOT NULL, current_user, current_schema(),"
                " COALESCE(has_schema_privilege(current_schema(), 'CREATE'), false)"
            )
        finally:
            await db.close()
        migrated, user, schema, may_create = row
        if migrated or may_create:
            return None
        if schema is None:
            return f"user {user} has no schema to create the tables in (check its search_path)"
        return (f"user {user} may not create the tables in schema {schema} "
                f"(GRANT CREATE ON SCHEMA {schema} TO {user}, or make {user} the database's owner)")

    try:
        reason = asyncio.run(asyncio.wait_for(check(), timeout=2 * _PG_CONNECT_TIMEOUT_S))
    except TimeoutError:
        reason = f"no answer within {_PG_CONNECT_TIMEOUT_S:g} s"
    except Exception as exc:  # any driver, network or server error: the reason is what the operator needs
        reason = " ".join(str(exc).split()) or type(exc).__name__
    return None if reason is None else f"cannot open the store {masked_url(url)}: {reason}"


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _extras(config: Config) -> str:
    """The optional parts a config uses, counted (nothing when it uses none)."""
    counts = [
        _count(len(config.time_windows), "time window"),
        _count(len(config.priority_rules), "priority rule"),
        _count(len(config.maintenance), "maintenance window"),
        _count(len(config.heartbeats), "heartbeat"),
        _count(sum(1 for team in config.teams.values() if team.layers), "layered team"),
        _count(len(config.notices), "team", "teams") + " with notices",
        _count(len(config.directories), "directory", "directories"),
        _count(len(config.chat), "chat destination"),
    ]
    used = [text for text in counts if not text.startswith("0 ")]
    return f"; {', '.join(used)}" if used else ""


def _check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        return 1
    routes = len(config.routes) + (config.default_route is not None)
    print(
        f"ok: {_count(len(config.engineers), 'engineer')}, {_count(len(config.teams), 'team')}, "
        f"{_count(len(config.policies), 'policy', 'policies')}, {_count(routes, 'route')}, "
        f"{_count(len(config.hotlines), 'hotline')}; voice via {config.voice_provider}, "
        f"SMS via {config.sms_provider or 'nothing'}{_extras(config)}"
    )
    if config.twilio is not None:  # warnings only: the exit code stays 0
        from providers.twilio.public_url import public_url_problems

        for problem in public_url_problems(config.public_url):
            print(f"warning: {config.source}: {problem}", file=sys.stderr)
    from gateway.message_pages import email_gaps, link_warnings

    warnings = [*layer_gaps(config, datetime.now(UTC)), *never_fire(config), *link_warnings(config),
                *email_gaps(config)]  # the steps still page: warnings, not errors
    for problem in warnings:
        print(f"warning: {config.source}: {problem}", file=sys.stderr)
    return 0


def _person(engineer: Engineer | None) -> str:
    if engineer is None:
        return "-"
    phone = f" ({mask(engineer.phones[0])})" if engineer.phones else ""
    return f"{engineer.name}{phone}"


def _stored_overrides(config: Config) -> list[StoredOverride]:
    """The overrides added at run time; none (with a warning) when the store cannot be read."""
    try:
        return read_stored_overrides(config)
    except Exception as exc:  # any driver or file error: the YAML's answer is still worth showing
        reason = " ".join(str(exc).split()) or type(exc).__name__
        print(f"gateway oncall: warning: overrides added at run time not read ({reason})", file=sys.stderr)
        return []


def _oncall(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    if args.at is None:
        at = datetime.now(UTC)
    else:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            print(f"gateway oncall: --at {args.at!r} is not an ISO 8601 date and time", file=sys.stderr)
            return 2
        if at.tzinfo is None:
            at = at.replace(tzinfo=ZoneInfo(config.time_zone))
    if args.team is not None and args.team not in config.teams:
        known = ", ".join(config.teams) or "none"
        print(f"gateway oncall: unknown team {args.team!r} (teams: {known})", file=sys.stderr)
        return 2
    team_ids = [args.team] if args.team is not None else list(config.teams)
    if not team_ids:
        print("no teams configured")
        return 0
    stored = [] if args.config_only else _stored_overrides(config)
    engineer, members = _directory_people(config, team_ids)
    layered = any(config.teams[team_id].layers for team_id in team_ids)  # then a LAYER column
    rows: list[tuple[str, ...]] = [("TEAM", "PRIMARY", "SECONDARY", "UNTIL", *(("LAYER",) if layered else ()))]
    for team_id in team_ids:
        team = merged(members(config.teams[team_id]), stored)
        answer = who_is_on_call(team, at)
        zone = ZoneInfo(time_zone(team, config.time_zone))
        until = answer.until.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if answer.until else "-"
        layer = active_layer(team, at)
        rows.append(
            (
                team_id,
                _person(engineer(answer.primary or "")),
                _person(engineer(answer.secondary or "")),
                until,
                *((layer.name if layer else "-",) if layered else ()),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _directory_people(
    config: Config, team_ids: list[str]
) -> tuple[Callable[[str], Engineer | None], Callable[[Team], Team]]:
    """Engineer by id and a team with its members, fetching directory teams' groups once when there are any."""
    if not any(config.teams[team_id].directory is not None for team_id in team_ids):
        return config.engineers.get, lambda team: team
    from gateway.directory.check import fetched

    roster = asyncio.run(fetched(config))
    for detail in roster.details():
        if detail["error"] is not None:
            print(f"gateway oncall: warning: directory {detail['directory']} group {detail['group']}: "
                  f"{detail['error']}", file=sys.stderr)
    return roster.engineer, lambda team: replace(team, members=roster.members(team.id)) if team.directory else team


def _check_directory(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    from gateway.directory.check import check_directory

    return check_directory(config)
