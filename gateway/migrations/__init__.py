"""The schema's one numbered history, written once per engine: ``NNN_name.sqlite.sql`` and
``NNN_name.postgres.sql`` carry the same change under the same number (see README.md here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

ENGINES = ("sqlite", "postgres")
_NAME = re.compile(r"(\d{3})_([a-z0-9_]+)\.(sqlite|postgres)\.sql")


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def scripts(engine: str, folder: Traversable | None = None) -> list[Migration]:
    """``engine``'s migrations in order (from this folder, or ``folder``).

    Raises when the history is not one numbered list for both engines.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    found: dict[int, dict[str, tuple[str, str]]] = {}
    for entry in (folder or resources.files(__name__)).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.fullmatch(entry.name)
        if match is None:
            raise RuntimeError(f"migration {entry.name}: expected NNN_name.<{'|'.join(ENGINES)}>.sql")
        version, name, its_engine = int(match[1]), match[2], match[3]
        if its_engine in found.get(version, {}):  # two branches took one number: never pick one silently
            raise RuntimeError(f"migration {version:03d} has two {its_engine} scripts: every number needs one")
        found.setdefault(version, {})[its_engine] = (name, entry.read_text(encoding="utf-8"))
    history: list[Migration] = []
    for expected, version in enumerate(sorted(found), start=1):
        if version != expected:
            raise RuntimeError(f"migration {expected:03d} is missing: the numbers must run 001, 002, ...")
        engines = found[version]
        if set(engines) != set(ENGINES):
            missing = sorted(set(ENGINES) - set(engines))
            raise RuntimeError(f"migration {version:03d} has no {' or '.join(missing)} script: every number needs both")
        if len({name for name, _ in engines.values()}) != 1:
            raise RuntimeError(f"migration {version:03d} is named differently for each engine")
        name, sql = engines[engine]
        history.append(Migration(version=version, name=name, sql=sql))
    return history
