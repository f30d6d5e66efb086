"""compose.yaml and deploy/ as an operator needs them: two gateways on one PostgreSQL behind HAProxy.

No Docker engine runs in CI, so the shape is checked here: every file compose names exists, the gateways'
configs load with the gateway's own loader (the Twilio and Asterisk alternatives in their comments too),
both gateways share the store and the public address, and the load balancer checks and targets both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import Config, load_config

ROOT = Path(__file__).parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
GATEWAYS = ["gateway-1", "gateway-2"]
CONFIG_IN_CONTAINER = "/etc/gateway/gateway.yaml"
HAPROXY_IN_CONTAINER = "/usr/local/etc/haproxy/haproxy.cfg"
SECRETS = {"GATEWAY_DB_PASSWORD": "db-secret", "GATEWAY_API_TOKEN": "api-secret",
           "TWILIO_AUTH_TOKEN": "twilio-secret", "ASTERISK_AMI_SECRET": "ami-secret"}
_INTERPOLATION = re.compile(r"\$\{(\w+):\?[^}]+\}")


def mounts(service: str) -> dict[str, Path]:
    """Where each bind-mounted file of ``service`` lands in the container -> the file in the repository."""
    found: dict[str, Path] = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            found[target] = ROOT / source
    return found


def published(service: str) -> dict[int, int]:
    """host port -> container port, for every port ``service`` publishes."""
    ports: dict[int, int] = {}
    for entry in SERVICES[service].get("ports", []):
        *host, container = str(entry).split(":")
        ports[int(host[-1])] = int(container)
    return ports


def uncommented(text: str, block: str) -> str:
    """``text`` with a commented-out section (``# twilio:`` and its indented lines) made live."""
    lines = text.splitlines()
    start = lines.index(f"# {block}:")
    end = start + 1
    while end < len(lines) and lines[end].startswith("#   "):
        end += 1
    return "\n".join([*lines[:start], *(line[2:] for line in lines[start:end]), *lines[end:]]) + "\n"


def commented_variable(variable: str) -> bool:
    """compose.yaml passes ``variable`` to the gateways once its line is uncommented."""
    return f"    # {variable}: ${{{variable}:?" in (ROOT / "compose.yaml").read_text()


def load(text: str, tmp_path: Path, name: str) -> Config:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_every_file_compose_mounts_or_builds_from_exists() -> None:
    for service in SERVICES:
        for target, source in mounts(service).items():
            assert source.is_file(), f"{service}: {source} (mounted at {target}) is missing"
    for name in GATEWAYS:
        assert SERVICES[name]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


def test_postgres_keeps_its_data_in_a_named_volume_and_says_when_it_is_ready() -> None:
    postgres = SERVICES["postgres"]
    assert postgres["image"] == "postgres:16"
    volume, target = postgres["volumes"][0].split(":")
    assert volume in COMPOSE["volumes"] and target == "/var/lib/postgresql/data"
    assert "pg_isready" in postgres["healthcheck"]["test"]
    for name in GATEWAYS:
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_no_secret_is_committed_every_one_must_be_set_in_the_environment() -> None:
    password = SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert _INTERPOLATION.fullmatch(password), password
    for name in GATEWAYS:
        for variable, value in SERVICES[name]["environment"].items():
            match = _INTERPOLATION.fullmatch(value)
            assert match is not None and match.group(1) == variable, (name, variable, value)


def test_each_gateway_runs_its_own_config_from_deploy() -> None:
    configs = {name: mounts(name)[CONFIG_IN_CONTAINER] for name in GATEWAYS}
    assert len(set(configs.values())) == len(GATEWAYS)
    assert all(path.parent == ROOT / "deploy" for path in configs.values())
    for name in GATEWAYS:
        assert SERVICES[name]["command"][:3] == ["gateway", "serve", CONFIG_IN_CONTAINER]
        assert SERVICES[name]["hostname"] == name


def test_the_gateways_share_the_database_tokens_and_public_address(secrets: None) -> None:
    configs = [load_config(mounts(name)[CONFIG_IN_CONTAINER]) for name in GATEWAYS]
    first = configs[0]
    assert first.store_url is not None
    store = urlsplit(first.store_url)
    environment = SERVICES["postgres"]["environment"]
    assert store.hostname == "postgres" and store.port == 5432
    assert store.username == environment["POSTGRES_USER"] and store.path == f"/{environment['POSTGRES_DB']}"
    for config in configs:
        assert config.store_url == first.store_url
        assert config.store_password == SECRETS["GATEWAY_DB_PASSWORD"]
        assert config.api_tokens == first.api_tokens
        assert config.public_url == first.public_url == "http://127.0.0.1:8080"
        assert config.voice_order == ("sandbox",)  # `docker compose up` needs no account
        assert config.host == "0.0.0.0" and config.port == 8080


def test_every_environment_variable_a_config_names_is_passed_to_its_gateway() -> None:
    for name in GATEWAYS:
        text = mounts(name)[CONFIG_IN_CONTAINER].read_text()
        live = {line.split("#")[0] for line in text.splitlines()}
        wanted = {m.group(1) for line in live for m in [re.search(r"_env:\s*(\w+)", line)] if m}
        assert wanted and wanted <= set(SERVICES[name]["environment"]), (name, wanted)


def test_the_twilio_alternative_is_valid_and_the_same_on_both(secrets: None, tmp_path: Path) -> None:
    twilio = []
    for name in GATEWAYS:
        text = uncommented(mounts(name)[CONFIG_IN_CONTAINER].read_text(), "twilio")
        text = re.sub(r"(?m)^  public_url: .*\n", "", text).replace("  # public_url:", "  public_url:")
        config = load(text, tmp_path, f"{name}.yaml")
        assert config.voice_order == ("twilio",) and config.public_url.startswith("https://")
        twilio.append((config.twilio, config.public_url))
    assert twilio[0] == twilio[1]
    assert commented_variable("TWILIO_AUTH_TOKEN")


def test_the_asterisk_alternative_gives_each_gateway_its_own_fastagi_address(secrets: None, tmp_path: Path) -> None:
    urls = []
    for name in GATEWAYS:
        config = load(uncommented(mounts(name)[CONFIG_IN_CONTAINER].read_text(), "asterisk"), tmp_path, f"{name}.yaml")
        assert config.asterisk is not None and config.voice_order == ("asterisk",)
        urls.append(urlsplit(config.asterisk.agi_url))
        # the FastAGI port compose publishes for this gateway (commented out with the rest) is its agi_url's
        compose_text = (ROOT / "compose.yaml").read_text()
        section = compose_text.split(f"  {name}:\n")[1].split("\n\n")[0]
        assert f'# - "{urls[-1].port}:{config.asterisk.agi_listen_port}"' in section
    assert len({url.netloc for url in urls}) == len(GATEWAYS)
    assert commented_variable("ASTERISK_AMI_SECRET")


def test_the_load_balancer_checks_and_targets_both_gateways() -> None:
    config = mounts("loadbalancer")[HAPROXY_IN_CONTAINER].read_text()
    lines = [line.split("#")[0].strip() for line in config.splitlines()]
    assert "option httpchk GET /healthz" in lines
    servers = {parts[1]: parts[2] for parts in (line.split() for line in lines) if parts[:1] == ["server"]}
    assert servers == {name: f"{name}:8080" for name in GATEWAYS}
    assert all(line.endswith(" check") for line in lines if line.startswith("server "))
    assert "option redispatch" in lines  # a request a dead gateway never got goes to the other
    binds = [line.split()[1] for line in lines if line.startswith("bind ")]
    assert binds == [":8080"] and published("loadbalancer") == {8080: 8080}


def test_the_gateways_are_reachable_apart_on_distinct_loopback_ports() -> None:
    ports = [published(name) for name in GATEWAYS]
    assert all(list(p.values()) == [8080] for p in ports)
    hosts = [port for p in ports for port in p]
    assert len(set(hosts)) == len(hosts) and 8080 not in hosts
    for name in GATEWAYS:
        assert all(str(entry).startswith("127.0.0.1:") for entry in SERVICES[name]["ports"])
