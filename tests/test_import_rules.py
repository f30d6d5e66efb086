"""The import rules of DESIGN.md, checked on the source: who may import whom, and one direction between
the gateway's services (alerts -> scheduler -> paging; the hotline beside alerts)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
OURS = ("core", "ivr_flows", "asterisk", "providers", "gateway")
MAY_IMPORT = {
    "core": set(),
    "ivr_flows": {"core"},
    "asterisk": {"core", "ivr_flows"},
    "providers": {"core", "ivr_flows"},  # and asterisk, from the asterisk adapter only
    "gateway": {"core", "ivr_flows", "asterisk", "providers"},
}
#: gateway service -> gateway modules it must not import (they sit above it)
SERVICES_BELOW = {
    "gateway/paging.py": {"gateway.scheduler", "gateway.alerts", "gateway.hotline", "gateway.sms_replies"},
    "gateway/scheduler.py": {"gateway.alerts", "gateway.hotline", "gateway.sms_replies"},
    "gateway/alerts.py": {"gateway.hotline", "gateway.sms_replies"},
    "gateway/dispatch.py": {"gateway.paging", "gateway.scheduler", "gateway.alerts", "gateway.hotline"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", OURS)
def test_each_package_imports_only_what_it_may(package: str) -> None:
    wrong = []
    for path in _sources(package):
        allowed = MAY_IMPORT[package] | {package}
        if path == ROOT / "providers" / "asterisk.py":
            allowed = allowed | {"asterisk"}
        for name in _imports(path):
            top = name.split(".")[0]
            if top in OURS and top not in allowed:
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, wrong


def test_the_services_point_one_way() -> None:
    wrong = []
    for module, above in SERVICES_BELOW.items():
        imported = _imports(ROOT / module)
        wrong += [f"{module} imports {name}" for name in sorted(imported) if any(
            name == a or name.startswith(a + ".") for a in above)]
    assert not wrong, wrong


def test_the_kernel_has_one_clock_and_one_masking_function() -> None:
    copies = []
    for package in OURS:
        for path in _sources(package):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name.endswith("Clock") and package != "core":
                    copies.append(f"{path.relative_to(ROOT)}: class {node.name}")
                phone_masking = node.name == "mask" or node.name.startswith("mask_number") \
                    if isinstance(node, ast.FunctionDef) else False
                if phone_masking and package != "core":
                    copies.append(f"{path.relative_to(ROOT)}: def {getattr(node, 'name', '')}")
    assert not copies, copies
