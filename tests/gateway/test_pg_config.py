"""The store section: SQLite by ``path`` (the default), PostgreSQL by ``url`` with its password from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.pg_store import PgStore
from gateway.sqlite_store import SqliteStore
from gateway.store_factory import describe, make_store, masked_url

MINIMAL = "api_tokens: [{name: t, token: t0k3n}]\n"


def _write(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(MINIMAL + store)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value.problems


def test_url_with_the_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_DB_PASSWORD", "s3cret")
    path = _write(tmp_path, "store: {url: 'postgresql://gateway@db.example.com:5432/oncall', "
                            "password_env: GATEWAY_DB_PASSWORD}\n")
    config = load_config(path)
    assert config.store_url == "postgresql://gateway@db.example.com:5432/oncall"
    assert config.store_password == "s3cret"
    assert "s3cret" not in repr(config)
    store = make_store(config)
    assert isinstance(store, PgStore) and store.url == config.store_url
    assert describe(config) == "postgresql://gateway@db.example.com:5432/oncall"


def test_url_without_password_env_leaves_the_password_to_libpq_conventions(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "store: {url: 'postgres://gateway@/oncall?host=/run/postgresql'}\n"))
    assert config.store_url == "postgres://gateway@/oncall?host=/run/postgresql" and config.store_password is None


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    assert config.store_url is None and config.store_password is None
    store = make_store(config)
    assert isinstance(store, SqliteStore) and store.path == tmp_path / "gateway.db"
    assert describe(config) == str(tmp_path / "gateway.db")


@pytest.mark.parametrize(("store", "problem"), [
    ("store: {path: g.db, url: 'postgresql://gateway@db/oncall'}",
     "store: set either path (a SQLite file) or url (PostgreSQL), not both"),
    ("store: {url: 'postgresql://gateway:hunter2@db/oncall'}",
     "store.url: holds a password: put it in the environment variable named by store.password_env instead"),
    ("store: {url: 'postgresql://gateway@db/oncall?password=hunter2'}",
     "store.url: holds a password: put it in the environment variable named by store.password_env instead"),
    ("store: {url: 'mysql://gateway@db/oncall'}",
     "store.url: expected a PostgreSQL URL like postgresql://gateway@db.example.com:5432/gateway"),
    ("store: {url: 'postgresql://gateway@db:99999/oncall'}",
     "store.url: not a valid URL: Port out of range 0-65535"),
    ("store: {url: 'postgresql://gateway@[::1/oncall'}", "store.url: not a valid URL: Invalid IPv6 URL"),
    ("store: {url: ''}", "store.url: must not be empty"),
    ("store: {url: 'postgresql://gateway@db/oncall', password_env: GATEWAY_TEST_UNSET_VARIABLE}",
     "store.password_env: environment variable GATEWAY_TEST_UNSET_VARIABLE is not set or empty"),
    ("store: {path: g.db, password_env: GATEWAY_DB_PASSWORD}",
     "store.password_env: is only used with store.url (PostgreSQL)"),
    ("store: {url: 'postgresql://gateway@db/oncall', password: hunter2}",
     "store.password: unknown key (expected one of: path, url, password_env)"),
])
def test_store_problems_name_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: str,
                                     problem: str) -> None:
    monkeypatch.delenv("GATEWAY_TEST_UNSET_VARIABLE", raising=False)
    path = _write(tmp_path, store + "\n")
    assert _problems(path) == [f"{path}: {problem}"]


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("postgresql://gateway:hunter2@db:5432/oncall") == "postgresql://gateway:***@db:5432/oncall"
    assert masked_url("postgresql://gateway@db/oncall") == "postgresql://gateway@db/oncall"
    assert masked_url("postgresql://db/oncall") == "postgresql://db/oncall"
