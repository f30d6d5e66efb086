"""The tests' own PostgreSQL (tests/postgres.py): a server named in the environment, or a throwaway cluster;
without either the run fails and says what to do (nothing is skipped)."""

from __future__ import annotations

import pytest

from tests import postgres
from tests.postgres import PgServer, PostgresUnavailable, ThrowawayCluster, from_environment


def test_the_server_named_in_the_environment_keeps_its_password_out_of_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_POSTGRES_URL", "postgresql://ci:p%40ss@db.internal:5433/postgres?sslmode=disable")
    server = from_environment()
    assert server == PgServer(url="postgresql://ci@db.internal:5433/postgres?sslmode=disable", user="ci",
                              password="p@ss")
    assert server.database_url("gateway_test_1") == "postgresql://ci@db.internal:5433/gateway_test_1?sslmode=disable"
    assert server.database_url("x", user="other") == "postgresql://other@db.internal:5433/x?sslmode=disable"


def test_a_malformed_server_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_POSTGRES_URL", "mysql://root@db/x")
    with pytest.raises(PostgresUnavailable, match="must look like postgresql://"):
        from_environment()
    monkeypatch.setenv("GATEWAY_TEST_POSTGRES_URL", "")
    assert from_environment() is None


def test_without_server_binaries_the_run_fails_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "binaries", lambda: None)
    with pytest.raises(PostgresUnavailable, match=r"apt-get install postgresql.*GATEWAY_TEST_POSTGRES_URL"):
        ThrowawayCluster().start()

