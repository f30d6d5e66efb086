"""A real PostgreSQL for the tests and the benchmark: the one named by GATEWAY_TEST_POSTGRES_URL, or a
throwaway cluster started from the machine's server binaries and deleted afterwards.

initdb and postgres refuse to run as root (CI and sessions run as root), so the throwaway cluster runs as
the ``postgres`` user (``runuser``) in a temporary folder that user owns. It listens on a free loopback
port with password (SCRAM) authentication, so the tests connect the way a gateway does. Nothing here
skips: when no server can be had, starting one raises and says why.
"""

from __future__ import annotations

import getpass
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]

ENV_URL = "GATEWAY_TEST_POSTGRES_URL"
_SUPERUSER = "gateway_test"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL for the tests; the message says what to do."""


@dataclass(frozen=True, kw_only=True)
class PgServer:
    """Where the server is: ``url`` names its maintenance database (no password in it)."""

    url: str
    user: str
    password: str | None

    def database_url(self, database: str, *, user: str | None = None) -> str:
        """The URL of ``database`` on this server (the password stays out of URLs, as in a config)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{quote(user or self.user, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, "/" + quote(database, safe=""), parts.query, ""))


@dataclass(frozen=True, kw_only=True)
class Postgres:
    """The session's server, and a database already migrated that each test's database is copied from."""

    server: PgServer
    template: str


@dataclass(frozen=True, kw_only=True)
class PgDatabase:
    """A fresh, migrated database for one test."""

    server: PgServer
    name: str
    url: str  # without the password, as a config file names it

    @property
    def password(self) -> str | None:
        return self.server.password


def binaries() -> Path | None:
    """The folder of the newest PostgreSQL server binaries: PATH first, then Debian's versioned folders."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


def from_environment() -> PgServer | None:
    """The server named by GATEWAY_TEST_POSTGRES_URL (it may carry a password), or None.

    Its user must be allowed to create databases: every test gets a fresh one.
    """
    raw = os.environ.get(ENV_URL, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise PostgresUnavailable(f"{ENV_URL} must look like postgresql://user:password@host:5432/postgres")
    user = unquote(parts.username) if parts.username else getpass.getuser()
    password = unquote(parts.password) if parts.password is not None else os.environ.get("PGPASSWORD")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{quote(user, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    url = urlunsplit((parts.scheme, netloc, parts.path or "/postgres", parts.query, ""))
    return PgServer(url=url, user=user, password=password)


class ThrowawayCluster:
    """initdb into a temporary folder, run the server on a free loopback port, delete it all on stop()."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable  # fsync on (a benchmark); off for tests, which never crash the server
        self.folder: Path | None = None
        self._bin: Path | None = None
        self._runas: list[str] = []

    def start(self) -> PgServer:
        self._bin = binaries()
        if self._bin is None:
            raise PostgresUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin: "
                "run 'sudo apt-get install postgresql' (or ./scripts/test, which installs it when run as root), "
                f"or set {ENV_URL} to a server the tests may create databases on"
            )
        self.folder = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
        owner = self._owner()
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._runas = ["runuser", "-u", owner.pw_name, "--"]
        password = secrets.token_urlsafe(18)
        pwfile = self.folder / "pwfile"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.folder / "data"), "-U", _SUPERUSER, f"--pwfile={pwfile}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        pwfile.unlink()
        port = self._start_server()
        return PgServer(url=f"postgresql://{_SUPERUSER}@127.0.0.1:{port}/postgres", user=_SUPERUSER,
                        password=password)

    def stop(self) -> None:
        if self.folder is None:
            return
        try:
            if (self.folder / "data" / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    @staticmethod
    def _owner() -> pwd.struct_passwd | None:
        """Who runs the server: ourselves unless we are root, then ``postgres`` (or ``nobody``)."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise PostgresUnavailable("running as root and there is no 'postgres' or 'nobody' user to run initdb as")

    def _start_server(self) -> int:
        assert self.folder is not None
        options = " ".join((
            "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={self.folder}",
            "-c max_connections=200", "-c shared_buffers=64MB",
            *(() if self.durable else ("-c fsync=off", "-c full_page_writes=off")),
        ))  # the gateway's own settings (synchronous_commit) are never touched here
        last = ""
        for _ in range(5):  # another process may take the free port before the server binds it
            port = free_port()
            result = self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "server.log"),
                               "-o", f"{options} -p {port}", "-w", "-t", "60", "start", check=False)
            if result.returncode == 0:
                return port
            last = result.stdout + result.stderr + _tail(self.folder / "server.log")
        raise PostgresUnavailable(f"the throwaway PostgreSQL did not start: {last.strip()}")

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None
        command = [*self._runas, str(self._bin / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/", timeout=120, check=False)
        if check and result.returncode != 0:
            raise PostgresUnavailable(f"{program} failed: {(result.stdout + result.stderr).strip()}")
        return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-5:])
    except OSError:
        return ""


@contextmanager
def running_server(*, durable: bool = False) -> Iterator[PgServer]:
    """The server for this run: GATEWAY_TEST_POSTGRES_URL's, else a throwaway cluster deleted afterwards."""
    server = from_environment()
    if server is not None:
        yield server
        return
    cluster = ThrowawayCluster(durable=durable)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def admin(server: PgServer) -> asyncpg.Connection:
    """A connection to the server's maintenance database, to create and drop databases."""
    return await asyncpg.connect(server.url, password=server.password, timeout=30)


async def create_database(server: PgServer, *, template: str = "template0") -> str:
    """A fresh database (a copy of ``template``, which must have no connections); returns its name."""
    name = f"gateway_test_{secrets.token_hex(6)}"
    db = await admin(server)
    try:
        await db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await db.close()
    return name


async def drop_database(server: PgServer, name: str) -> None:
    db = await admin(server)
    try:
        await db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await db.close()
