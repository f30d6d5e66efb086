"""The Dockerfile as an operator needs it (no Docker engine runs in CI, so its shape is checked here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

DOCKERFILE = (Path(__file__).parents[2] / "Dockerfile").read_text()
LINES = [line.strip() for line in DOCKERFILE.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_base_image_is_pinned_by_digest() -> None:
    base = re.search(r"^ARG BASE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11-slim[-\w]*@sha256:[0-9a-f]{64}", base.group(1))
    froms = [line for line in LINES if line.startswith("FROM")]
    assert all(line == "FROM ${BASE}" or line.startswith("FROM ${BASE} AS ") for line in froms)


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    install_deps = next(i for i, line in enumerate(LINES) if ("requirements.txt" in line and "pip install" in line)
                        or line.startswith("&& /opt/gateway/bin/pip install -r"))
    first_code = next(i for i, line in enumerate(LINES) if line.startswith("COPY gateway"))
    copies_before = [line for line in LINES[:install_deps] if line.startswith("COPY")]
    assert install_deps < first_code
    assert copies_before == ["COPY pyproject.toml ./"]
    assert any(line.endswith("pip install --no-deps .") for line in LINES[first_code:])


def test_every_package_the_project_ships_is_copied_into_the_build() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    packages = [name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    copied = {line.split()[1] for line in LINES if line.startswith("COPY ") and not line.startswith("COPY --")}
    assert set(packages) <= copied, set(packages) - copied


def test_the_runtime_image_carries_no_build_leftovers_and_exposes_both_ports() -> None:
    runtime = LINES[max(i for i, line in enumerate(LINES) if line.startswith("FROM")):]
    assert not any(line.startswith(("COPY gateway", "COPY README", "COPY pyproject")) for line in runtime)
    assert "COPY --from=build /opt/gateway /opt/gateway" in runtime
    assert "EXPOSE 8080 4573" in runtime
    assert "USER gateway" in runtime
