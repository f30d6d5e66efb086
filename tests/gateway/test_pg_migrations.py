"""One numbered history of migrations for both engines (gateway/migrations/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.migrations import ENGINES, scripts


def test_both_engines_share_one_numbered_history() -> None:
    sqlite, postgres = scripts("sqlite"), scripts("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    assert [m.version for m in sqlite] == list(range(1, len(sqlite) + 1))
    assert sqlite[0].name == "initial" and "AUTOINCREMENT" in sqlite[0].sql and "IDENTITY" in postgres[0].sql


def _folder(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    return tmp_path


@pytest.mark.parametrize(("names", "problem"), [
    (("001_a.sqlite.sql", "001_a.postgres.sql", "002_b.sqlite.sql"), "migration 002 has no postgres script"),
    (("001_a.sqlite.sql", "001_a.postgres.sql", "003_c.sqlite.sql", "003_c.postgres.sql"), "migration 002 is missing"),
    (("001_a.sqlite.sql", "001_b.postgres.sql"), "migration 001 is named differently for each engine"),
    (("001_a.sqlite.sql", "001_a.postgres.sql", "002_b.sql"),
     "migration 002_b.sql: expected NNN_name.<sqlite|postgres>.sql"),
    # two branches that took one number, merged: never one of them dropped silently
    (("001_a.sqlite.sql", "001_a.postgres.sql", "001_b.sqlite.sql", "001_b.postgres.sql"),
     "migration 001 has two "),
])
def test_a_history_that_drifts_apart_is_refused(tmp_path: Path, names: tuple[str, ...], problem: str) -> None:
    folder = _folder(tmp_path, *names)
    for engine in ENGINES:
        with pytest.raises(RuntimeError, match=problem.replace("|", r"\|").replace(".", r"\.")):
            scripts(engine, folder)


def test_a_consistent_folder_loads_in_order(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "002_b.sqlite.sql", "001_a.postgres.sql", "001_a.sqlite.sql", "002_b.postgres.sql")
    assert [(m.version, m.name) for m in scripts("postgres", folder)] == [(1, "a"), (2, "b")]
    with pytest.raises(ValueError, match="unknown engine 'mysql'"):
        scripts("mysql", folder)
