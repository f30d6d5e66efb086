"""The email:, chat: and action_links: sections, a step's via/chat, check-config's email warnings, and the
signed action link tokens themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.action_links import ActionLinks, LinkRefused
from gateway.cli import main
from gateway.config import ConfigError, load_config
from tests.support import ALICE, BOB

HEAD = f"""
api_tokens: [{{name: tests, token: test-token}}]
engineers:
  alice: {{name: Alice, phones: ["{ALICE}"], email: alice@example.com}}
  bob: {{name: Bob, phones: ["{BOB}"]}}
teams:
  sre: {{members: [alice, bob]}}
default_route: {{team: sre, policy: p}}
"""


def load(tmp_path: Path, text: str) -> tuple[Path, list[str]]:
    path = tmp_path / "g.yaml"
    path.write_text(HEAD + text)
    try:
        load_config(path)
    except ConfigError as exc:
        return path, [problem.removeprefix(f"{path}: ") for problem in exc.problems]
    return path, []


def test_a_full_setup_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMTP", "pw")
    monkeypatch.setenv("T_SLACK", "https://hooks.slack.com/services/T/B/x")
    monkeypatch.setenv("T_HOOK", "hook-secret")
    monkeypatch.setenv("T_LINKS", "link-secret, long enough")
    path = tmp_path / "g.yaml"
    path.write_text(HEAD + """
policies:
  p:
    steps:
      - {notify: primary, via: [call, email, chat], chat: [ops, hook], timeout: 1m}
      - {notify: team, via: email}
      - {notify: secondary, via: both}
email: {host: smtp.example.com, username: u, password_env: T_SMTP, from: "On-call <oncall@example.com>"}
chat:
  ops: {kind: slack, url_env: T_SLACK}
  hook: {kind: webhook, url: "https://hooks.example.com/x", secret_env: T_HOOK, timeout: 3s}
action_links: {secret_env: T_LINKS, expires_after: 2h}
""")
    config = load_config(path)
    steps = config.policies["p"].steps
    assert [(s.via, s.channels, s.chat) for s in steps] == [
        ("call+email+chat", ("call", "email", "chat"), ("ops", "hook")), ("email", ("email",), ()),
        ("both", ("call", "sms"), ())]
    assert config.engineers["alice"].email == "alice@example.com" and config.engineers["bob"].email is None
    assert config.email is not None
    assert (config.email.port, config.email.starttls, config.email.implicit_tls, config.email.password,
            config.email.sender) == (587, True, False, "pw", "On-call <oncall@example.com>")
    assert config.chat["ops"].url == "https://hooks.slack.com/services/T/B/x"
    assert (config.chat["hook"].secret, config.chat["hook"].timeout_s) == ("hook-secret", 3.0)
    assert (config.action_links.secret, config.action_links.expires_after_s) == ("link-secret, long enough", 7200)
    assert "hooks.slack.com" not in repr(config) and "link-secret" not in repr(config)  # secrets stay out of logs


@pytest.mark.parametrize(("host", "refused"), [("smtp.example.com", True), ("10.0.0.5", True), ("127.0.0.1", False),
                                              ("localhost", False), ("::1", False)])
def test_auth_without_tls_is_refused_unless_the_relay_is_on_this_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, refused: bool) -> None:
    monkeypatch.setenv("T_SMTP", "pw")
    _, problems = load(tmp_path, f"""policies: {{p: {{steps: [{{notify: primary, via: email}}]}}}}
email: {{host: "{host}", starttls: false, username: u, password_env: T_SMTP, from: oncall@example.com}}""")
    expected = ["email.starttls: is off, so AUTH would send the password unencrypted: use starttls or implicit_tls "
                "(a relay on this host, 127.0.0.1 or localhost, may do without)"]
    assert problems == (expected if refused else [])
    _, problems = load(tmp_path, f"""policies: {{p: {{steps: [{{notify: primary, via: email}}]}}}}
email: {{host: "{host}", starttls: false, from: oncall@example.com}}""")
    assert problems == []  # no AUTH: no password to leak (the operator's choice)


def test_implicit_tls_defaults_to_port_465(tmp_path: Path) -> None:
    path, problems = load(tmp_path, """
policies: {p: {steps: [{notify: primary}]}}
email: {host: smtp.example.com, implicit_tls: true, from: oncall@example.com}
""")
    assert problems == []
    email = load_config(path).email
    assert email is not None and (email.port, email.starttls, email.implicit_tls) == (465, False, True)


@pytest.mark.parametrize(("text", "expected"), [
    ("policies: {p: {steps: [{notify: primary, via: email}]}}",
     ["policies.p.steps[0].via: sends email, but there is no email: section (SMTP server)"]),
    ("policies: {p: {steps: [{notify: primary, via: [call, pigeon]}]}}",
     ["policies.p.steps[0].via: 'pigeon' is not one of: call, sms, email, chat"]),
    ("policies: {p: {steps: [{notify: primary, via: [call, call]}]}}",
     ["policies.p.steps[0].via: 'call' is listed twice"]),
    ("policies: {p: {steps: [{notify: primary, via: chat}]}}",
     ["policies.p.steps[0].chat: at least one entry is required"]),
    ("policies: {p: {steps: [{notify: primary, via: call, chat: [ops]}]}}",
     ["policies.p.steps[0].chat: only used when via includes chat (e.g. via: [call, chat])",
      "policies.p.steps[0].chat[0]: unknown chat destination 'ops'"]),
    ("policies: {p: {steps: [{notify: primary, via: chat, chat: [nope, nope]}]}}",
     ["policies.p.steps[0].chat[1]: chat destination 'nope' is listed twice",
      "policies.p.steps[0].chat[0]: unknown chat destination 'nope'"]),
    ("""policies: {p: {steps: [{notify: primary}]}}
chat:
  a: {kind: discord, url: "https://x.example.com"}
  b: {kind: webhook, url: "https://x.example.com"}
  c: {kind: slack, url: "ftp://secret.example.com/token"}
  d: {kind: teams, url_env: T_MISSING_URL}
  e: {kind: slack, url: "https://x.example.com", secret: s}""",
     ["chat.a.kind: 'discord' is not one of: slack, teams, webhook",
      "chat.b: needs secret (or secret_env, the name of an environment variable)",
      "chat.c.url: the URL is not an http(s) URL like https://oncall.example.com",
      "chat.d.url_env: environment variable T_MISSING_URL is not set or empty",
      "chat.e: a slack webhook is not signed: secret is only for kind: webhook"]),
    ("""policies: {p: {steps: [{notify: primary}]}}
email: {host: smtp.example.com, from: "not an address", starttls: true, implicit_tls: true, username: u,
        ca_file: nope.pem, timeout: 0s}""",
     ["email.from: 'not an address' is not a sender like \"On-call <oncall@example.com>\"",
      "email: set starttls or implicit_tls, not both (implicit TLS is encrypted from the start)",
      "email: needs password (or password_env, the name of an environment variable)",
      "email.timeout: must be at least 1s, got '0s'"]),
    ("""policies: {p: {steps: [{notify: primary}]}}
action_links: {expires_after: 90d, secret: inline}""",
     ["action_links.secret: unknown key (expected one of: secret_env, previous_secret_env, expires_after)",
      "action_links.expires_after: must be at most 30d (a link in an old email must die)"]),
])
def test_problems_name_the_key(tmp_path: Path, text: str, expected: list[str]) -> None:
    _, problems = load(tmp_path, text)
    problems = [p for p in problems if not p.startswith("email.ca_file")]
    assert problems == expected


def test_a_bad_engineer_address_is_named(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    policies = "policies: {p: {steps: [{notify: primary}]}}"
    path.write_text(HEAD.replace("alice@example.com", "alice at example") + policies)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        f"{path}: engineers.alice.email: 'alice at example' is not an email address like alice@example.com"]


def test_check_config_warns_of_engineers_a_step_would_email_without_an_address(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(HEAD + """
policies: {p: {steps: [{notify: primary, via: [call, email]}, {notify: "engineer:alice", via: email}]}}
email: {host: smtp.example.com, from: oncall@example.com}
""")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path}: server.public_url is http://127.0.0.1:8080: the console and action links in emails "
        "and chat posts point there; set it to the address people reach the gateway at",
        f"warning: {path}: route default: policies.p.steps[0] emails, but Bob of team sre has no email address"]
    path.write_text(path.read_text() + 'server: {public_url: "https://oncall.example.com"}\n')
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: {path}: route default: policies.p.steps[0] emails, but Bob of team sre has no email address"]


# ------------------------------------------------------------------ tokens


def links(tmp_path: Path, extra: str = "") -> ActionLinks:
    path, problems = load(tmp_path, "policies: {p: {steps: [{notify: primary}]}}\n" + extra)
    assert problems == []
    return ActionLinks(load_config(path))


def test_a_token_says_what_it_was_issued_for_until_it_expires(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_LINK_SECRET", raising=False)
    issuer = links(tmp_path)
    token = issuer.issue(alert_id=7, action="resolve", engineer="alice", now=1000.0)
    assert issuer.url(token) == f"http://127.0.0.1:8080/a/{token}"
    link = issuer.read(token, now=1000.0 + 24 * 3600 - 1)
    assert (link.alert_id, link.action, link.engineer, link.expires) == (7, "resolve", "alice", 1000.0 + 24 * 3600)
    assert issuer.issue(alert_id=7, action="resolve", engineer="alice", now=1000.0) != token  # each one of a kind
    with pytest.raises(LinkRefused) as expired:
        issuer.read(token, now=1000.0 + 24 * 3600)
    assert expired.value.status == 410
    with pytest.raises(ValueError):
        issuer.issue(alert_id=7, action="delete", engineer="alice", now=1.0)


ONE, TWO, THREE = "key one, long enough", "key two, long enough", "key three, long enough"


def test_a_token_from_another_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LINK_SECRET", ONE)
    token = links(tmp_path).issue(alert_id=1, action="acknowledge", engineer="alice", now=0.0)
    assert links(tmp_path).read(token, now=1.0).alert_id == 1
    monkeypatch.setenv("GATEWAY_LINK_SECRET", TWO)
    with pytest.raises(LinkRefused) as refused:
        links(tmp_path).read(token, now=1.0)
    assert refused.value.status == 403
    monkeypatch.setenv("T_KEY", THREE)  # action_links.secret_env wins over the default variable
    keyed = links(tmp_path, "action_links: {secret_env: T_KEY}")
    with pytest.raises(LinkRefused):
        keyed.read(token, now=1.0)
    assert keyed.read(keyed.issue(alert_id=2, action="resolve", engineer="bob", now=0.0), now=1.0).engineer == "bob"


def test_after_a_rotation_links_signed_with_the_previous_key_work_until_they_expire(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KEY", ONE)
    before = links(tmp_path, "action_links: {secret_env: T_KEY}")
    old = before.issue(alert_id=1, action="acknowledge", engineer="alice", now=0.0)
    monkeypatch.setenv("T_KEY", TWO)
    monkeypatch.setenv("T_OLD", ONE)
    after = links(tmp_path, "action_links: {secret_env: T_KEY, previous_secret_env: T_OLD}")
    assert after.read(old, now=1.0).engineer == "alice"
    new = after.issue(alert_id=2, action="resolve", engineer="bob", now=0.0)
    with pytest.raises(LinkRefused):  # new links are signed with the new key only
        before.read(new, now=1.0)
    with pytest.raises(LinkRefused) as expired:
        after.read(old, now=24 * 3600.0)
    assert expired.value.status == 410
    monkeypatch.setenv("T_OLD", THREE)  # a key that signed neither
    with pytest.raises(LinkRefused):
        links(tmp_path, "action_links: {secret_env: T_KEY, previous_secret_env: T_OLD}").read(old, now=1.0)


def test_a_short_or_unpaired_link_key_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LINK_SECRET", "short")
    monkeypatch.setenv("T_OLD", "tiny")
    _, problems = load(tmp_path, "policies: {p: {steps: [{notify: primary}]}}\n"
                                 "action_links: {previous_secret_env: T_OLD}")
    assert problems == [
        "action_links: the key in GATEWAY_LINK_SECRET has 5 characters; use at least 16 (a short one can be "
        "guessed from any link)",
        "action_links.previous_secret_env: the key in T_OLD has 4 characters; use at least 16 (a short one can be "
        "guessed from any link)"]
    monkeypatch.delenv("GATEWAY_LINK_SECRET")
    monkeypatch.setenv("T_OLD", ONE)
    _, problems = load(tmp_path, "policies: {p: {steps: [{notify: primary}]}}\n"
                                 "action_links: {previous_secret_env: T_OLD}")
    assert problems == ["action_links.previous_secret_env: needs a current key (secret_env, or GATEWAY_LINK_SECRET)"]


def test_access_logs_never_hold_a_usable_link() -> None:
    from gateway.web.log_paths import loggable

    assert loggable("/a/eyJhIjoxfQ.c2lnbmF0dXJl") == "/a/<redacted>"
    assert loggable("/api/v1/alerts/1") == "/api/v1/alerts/1"


@pytest.mark.parametrize("address", ["alice at example", "a@b..c", "a@b.c extra", 'x"y@b.c', "a@@b.c"])
def test_an_address_that_mail_could_not_carry_is_refused(tmp_path: Path, address: str) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(HEAD.replace("alice@example.com", f"'{address}'")
                    + f"policies: {{p: {{steps: [{{notify: primary}}]}}}}\nemail: {{host: h, from: '{address}'}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.split(": ")[1] for p in caught.value.problems] == ["engineers.alice.email", "email.from"]


@pytest.mark.parametrize("address", ["o'brien@example.com", "alice+oncall@mail.example.co.uk"])
def test_an_address_mail_can_carry_loads(tmp_path: Path, address: str) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(HEAD.replace("alice@example.com", f'"{address}"') + "policies: {p: {steps: [{notify: primary}]}}\n")
    assert load_config(path).engineers["alice"].email == address
