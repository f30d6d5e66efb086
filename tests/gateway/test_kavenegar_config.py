"""The ``kavenegar:`` section: read, checked with key paths (``gateway check-config``), and its place in the
SMS order; its webhook in /openapi.json."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.cli import main
from gateway.config import ConfigError, load_config
from gateway.provider_setup import build_providers
from gateway.web.json_body import read_json
from gateway.web.openapi import document
from providers.kavenegar import KavenegarProvider
from tests.gateway.test_openapi import operations_of, routes_of
from tests.support import BASE_CONFIG, write_config

TWILIO = 'twilio: {account_sid: AC1, auth_token: t, from_number: "+15559990000"}\n'


def _load(tmp_path: Path, extra: str) -> object:
    return load_config(write_config(tmp_path, BASE_CONFIG + extra))


def test_the_section_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAVENEGAR_API_KEY", "key-from-env")
    monkeypatch.setenv("KAVENEGAR_INBOUND_SECRET", "0123456789abcdef-secret")
    config = load_config(write_config(tmp_path, BASE_CONFIG + """
kavenegar:
  api_key_env: KAVENEGAR_API_KEY
  sender: 10004346
  inbound_secret_env: KAVENEGAR_INBOUND_SECRET
  status_poll_interval: 1m
"""))
    settings = config.kavenegar
    assert settings is not None
    assert (settings.api_key, settings.sender, settings.api_url) == ("key-from-env", "10004346",
                                                                     "https://api.kavenegar.com")
    assert settings.inbound_secret == "0123456789abcdef-secret" and settings.status_poll_interval_s == 60
    assert "key-from-env" not in repr(settings) and "secret" not in repr(settings).replace("inbound_secret", "")
    assert (config.voice_order, config.sms_order) == (("sandbox",), ("kavenegar",))


def test_with_twilio_kavenegar_is_the_failover_behind_it_unless_the_order_is_given(tmp_path: Path) -> None:
    """Adding a kavenegar section to a Twilio gateway adds a failover; it does not move the SMS off Twilio."""
    config = load_config(write_config(tmp_path, BASE_CONFIG + TWILIO + 'kavenegar: {api_key: k, sender: "1000"}\n'))
    assert (config.voice_order, config.sms_order) == (("twilio",), ("twilio", "kavenegar"))
    providers = build_providers(config, FakeClock(), read_json=read_json)
    assert providers.manager.sms_order == ["twilio", "kavenegar"]
    config = load_config(write_config(tmp_path, BASE_CONFIG + TWILIO + 'kavenegar: {api_key: k, sender: "1000"}\n'
                                      "providers: {voice: [twilio], sms: [kavenegar, twilio]}\n"))
    assert config.sms_order == ("kavenegar", "twilio")
    providers = build_providers(config, FakeClock(), read_json=read_json)
    assert providers.manager.sms_order == ["kavenegar", "twilio"]
    assert any(isinstance(p, KavenegarProvider) for p in providers.plugins)
    assert providers.webhook_routes and not any(r.path.startswith("/kavenegar") for r in providers.webhook_routes)


@pytest.mark.parametrize(("extra", "expected"), [
    ("kavenegar: {sender: '10004346'}\n",
     "kavenegar: needs api_key (or api_key_env, the name of an environment variable)"),
    ("kavenegar: {api_key_env: NOT_SET_ANYWHERE_1234, sender: '10004346'}\n",
     "kavenegar.api_key_env: environment variable NOT_SET_ANYWHERE_1234 is not set or empty"),
    ("kavenegar: {api_key: k}\n", "kavenegar.sender: is required"),
    ("kavenegar: {api_key: k, sender: '+98 912'}\n",
     "kavenegar.sender: expected a sender line number of 4 to 20 digits, like \"10004346\", got the text "),
    ("kavenegar: {api_key: k, sender: '1000', inbound_secret: short}\n",
     "kavenegar.inbound_secret: is too short: use at least 16 random characters (e.g. openssl rand -hex 16)"),
    ("kavenegar: {api_key: k, sender: '1000', api_url: 'ftp://x'}\n",
     "kavenegar.api_url: 'ftp://x' is not an http(s) URL like https://oncall.example.com"),
    ("kavenegar: {api_key: k, sender: '1000', api_url: 'https://api.kavenegar.com/?v=1'}\n",
     "kavenegar.api_url: must be a base URL without ?query or #fragment"),
    ("kavenegar: {api_key: k, sender: '1000', status_poll_interval: 0s}\n",
     "kavenegar.status_poll_interval: "),
    ("kavenegar: {api_key: k, sender: '1000', voice: true}\n",
     "kavenegar.voice: unknown key (expected one of: api_key, api_key_env, sender, api_url, inbound_secret, "
     "inbound_secret_env, status_poll_interval, receive_poll_interval)"),
    ("kavenegar: {api_key: k, sender: '1000'}\nproviders: {voice: [kavenegar]}\n",
     "providers.voice[0]: kavenegar cannot carry voice"),
    ("providers: {voice: [sandbox], sms: [kavenegar]}\n",
     "providers.sms[0]: kavenegar is named but not configured (add its 'kavenegar:' section)"),
])
def test_problems_name_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    path = write_config(tmp_path, BASE_CONFIG + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert any(problem.startswith(f"{path}: {expected}") for problem in caught.value.problems), caught.value.problems


def test_check_config_reports_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(tmp_path, BASE_CONFIG + "kavenegar: {api_key: k, sender: x}\n")
    assert main(["check-config", str(path)]) == 1
    assert "kavenegar.sender: expected a sender line number" in capsys.readouterr().out


def test_the_inbound_url_is_in_the_document_only_with_a_secret(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, BASE_CONFIG + """
kavenegar: {api_key: k, sender: "10004346", inbound_secret: 0123456789abcdef0123}
"""))
    app = create_app(config, clock=FakeClock())
    doc = document(app)
    assert operations_of(doc) == routes_of(app)
    assert {("GET", "/kavenegar/sms/inbound"), ("POST", "/kavenegar/sms/inbound")} <= operations_of(doc)
    post = doc["paths"]["/kavenegar/sms/inbound"]["post"]
    get = doc["paths"]["/kavenegar/sms/inbound"]["get"]
    assert post["security"] == get["security"] == [{"kavenegarSecret": []}]
    assert "requestBody" in post and {p["name"] for p in get["parameters"]} == {"from", "to", "message", "messageid"}
    assert doc["components"]["securitySchemes"]["kavenegarSecret"]["in"] == "query"

    one_way = load_config(write_config(tmp_path, BASE_CONFIG + 'kavenegar: {api_key: k, sender: "10004346"}\n'))
    assert not any(path.startswith("/kavenegar") for _, path in routes_of(create_app(one_way, clock=FakeClock())))
