"""Console session cookies: signed, expiring, tied to the token's secret, the key from the environment."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from gateway.config import Config, load_config
from gateway.console import sessions
from tests.support import write_config

NOW = 1_767_787_200.0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_config(tmp_path))


def test_a_cookie_reads_back_until_it_expires(config: Config) -> None:
    value, issued = sessions.issue(config, config.api_tokens[0], now=NOW)
    read = sessions.read(config, value, now=NOW + sessions.SESSION_S - 1)
    assert read is not None and read.token == config.api_tokens[0] and read.csrf == issued.csrf
    assert sessions.read(config, value, now=NOW + sessions.SESSION_S) is None
    assert sessions.csrf_matches(read, issued.csrf) and not sessions.csrf_matches(read, issued.csrf + "x")


def test_a_tampered_or_foreign_cookie_is_refused(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    value, _ = sessions.issue(config, config.api_tokens[0], now=NOW)
    payload, _, signature = value.partition(".")
    for forged in (f"{payload}x.{signature}", f"{payload}.{signature[:-2]}AA", payload, "", ".", "\udcff.\udcff"):
        assert sessions.read(config, forged, now=NOW) is None, forged
    monkeypatch.setenv(sessions.SECRET_ENV, "another deployment's secret")
    assert sessions.read(config, value, now=NOW) is None


def test_changing_the_token_ends_its_sessions(config: Config) -> None:
    value, _ = sessions.issue(config, config.api_tokens[0], now=NOW)
    rotated = dataclasses.replace(config, api_tokens=(dataclasses.replace(config.api_tokens[0], token="new-secret"),))
    assert sessions.read(rotated, value, now=NOW) is None
    gone = dataclasses.replace(config, api_tokens=(dataclasses.replace(config.api_tokens[0], name="other"),))
    assert sessions.read(gone, value, now=NOW) is None


def test_gateways_sharing_the_environment_secret_accept_each_others_cookies(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sessions.SECRET_ENV, "shared by every gateway")
    value, _ = sessions.issue(config, config.api_tokens[0], now=NOW)
    same_tokens_elsewhere = dataclasses.replace(config, port=9999)
    assert sessions.read(same_tokens_elsewhere, value, now=NOW) is not None


def test_the_tokens_fingerprint_is_keyed_not_a_bare_hash(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = config.api_tokens[0].token.encode()

    def fingerprint() -> str:
        value, _ = sessions.issue(config, config.api_tokens[0], now=NOW)
        return str(json.loads(base64.urlsafe_b64decode(value.partition(".")[0] + "==="))["f"])

    derived = fingerprint()
    assert not hashlib.sha256(secret).hexdigest().startswith(derived[:16])
    monkeypatch.setenv(sessions.SECRET_ENV, "one deployment")
    assert fingerprint() != derived  # under another key, another fingerprint


def test_with_the_key_derived_from_the_tokens_adding_any_token_signs_everyone_out(config: Config) -> None:
    value, _ = sessions.issue(config, config.api_tokens[0], now=NOW)
    extra = dataclasses.replace(config.api_tokens[0], name="new-one", token="another-secret")
    added = dataclasses.replace(config, api_tokens=(*config.api_tokens, extra))
    assert sessions.read(added, value, now=NOW) is None
