"""The sample PBX configuration in ``asterisk/conf`` agrees with the README's Asterisk example."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_asterisk_yaml() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Asterisk\n"):]
    block = section[section.index("```yaml\n") + 8:]
    block = block[:block.index("```")]
    pairs = (re.match(r"\s*(\w+):\s*(\S+)", line) for line in block.splitlines())
    return {m[1]: m[2] for m in pairs if m}


def _conf_value(name: str, key: str) -> str:
    for line in (ROOT / "asterisk" / "conf" / name).read_text().splitlines():
        if m := re.match(rf"\s*{key}\s*=\s*(\S+)", line):
            return m[1]
    raise AssertionError(f"{key} not set in {name}")


def test_manager_conf_and_dialplan_use_the_readme_addresses() -> None:
    readme = _readme_asterisk_yaml()
    gateway_host = re.fullmatch(r"agi://([^:/]+):\d+", readme["agi_url"])
    assert gateway_host is not None
    assert _conf_value("manager.conf", "bindaddr") == readme["host"]  # the gateway connects there
    assert _conf_value("manager.conf", "permit") == f"{gateway_host[1]}/255.255.255.255"  # and only it
    assert _conf_value("manager.conf", "port") == readme["port"]
    assert _conf_value("extensions.conf", "GATEWAY_AGI") == readme["agi_url"]


def test_the_sample_dialplan_binds_the_hotline_by_name() -> None:
    dialplan = (ROOT / "asterisk" / "conf" / "extensions.conf").read_text()
    active = "\n".join(line for line in dialplan.splitlines() if not line.lstrip().startswith(";"))
    assert "AGI(${GATEWAY_AGI}/hotline/ops)" in active  # by name, as a path
    assert re.search(r"exten => s,1,AGI\(\$\{GATEWAY_AGI\}/hotline,ops\)", active)  # from an s extension
