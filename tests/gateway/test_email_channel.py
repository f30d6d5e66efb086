"""Email pages through the real app, a real SQLite file and a real SMTP server on loopback (STARTTLS with a
test CA's certificate, AUTH), and the signed one-time links in them."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import load_config
from gateway.mailer import Mailer, MailError
from gateway.message_settings import EmailSettings
from tests.peers.smtp_server import PASSWORD, USER, Received, SmtpServer
from tests.postgres import PgDatabase
from tests.support import ALICE, BOB, Gateway, eventually, write_config

PUBLIC = "https://oncall.example.com"


def config_text(server: SmtpServer, *, steps: str) -> str:
    return f"""
server: {{public_url: "{PUBLIC}"}}
store: {{path: gateway.db}}
api_tokens: [{{name: tests, token: test-token}}]
engineers:
  alice: {{name: Alice, phones: ["{ALICE}"], email: alice@example.com}}
  bob: {{name: Bob, phones: ["{BOB}"]}}
teams:
  sre: {{members: [alice, bob]}}
policies:
  default:
    steps:
{steps}
default_route: {{team: sre, policy: default, priority: high}}
email:
  host: 127.0.0.1
  port: {server.port}
  starttls: true
  username: {USER}
  password_env: GATEWAY_TEST_SMTP_PASSWORD
  from: "On-call <oncall@example.com>"
  ca_file: {server.ca_file}
  timeout: 10s
"""


CALL_AND_EMAIL = """      - {notify: primary, via: [call, email], timeout: 20s}
      - {notify: secondary, via: call, timeout: 20s}"""


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def gateway_for(aiohttp_client: Callable[..., Any], tmp_path: Path, smtp: SmtpServer,
                monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    monkeypatch.setenv("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)

    async def start(steps: str) -> Gateway:
        path = write_config(tmp_path, config_text(smtp, steps=steps))
        clock = FakeClock()
        return Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)

    return start


@pytest.fixture
async def gateway(gateway_for: Callable[[str], Any]) -> AsyncIterator[Gateway]:
    yield await gateway_for(CALL_AND_EMAIL)


async def mails(smtp: SmtpServer, count: int = 1) -> list[Received]:
    async def check() -> list[Received] | None:
        received = smtp.received
        return received if len(received) >= count else None

    found: list[Received] = await eventually(check)
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def link(text: str, label: str) -> str:
    """The path of the signed link under ``label`` in the plain-text mail."""
    found = re.search(rf"{label}.*?\n\s+{re.escape(PUBLIC)}(/a/[A-Za-z0-9_.-]+)", text)
    assert found, text
    return found.group(1)


async def page(gateway: Gateway, method: str, path: str) -> tuple[int, str]:
    async with gateway.client.request(method, path) as response:
        assert response.content_type == "text/html"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"  # never framed, old browsers and new
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        return response.status, await response.text()


async def trigger(gateway: Gateway, summary: str = "disk <full> & slow", **labels: str) -> int:
    status, answer = await gateway.post("/api/v1/alerts", {"summary": summary, "team": "sre",
                                                           "labels": {"host": "db-1", **labels}})
    assert status == 202, answer
    alert_id: int = answer["id"]
    return alert_id


async def test_an_email_step_mails_the_alert_over_starttls_with_auth(gateway: Gateway, smtp: SmtpServer) -> None:
    alert_id = await trigger(gateway)
    await gateway.ringing(ALICE)  # the call goes out beside the email
    [mail] = await mails(smtp)
    assert mail.tls and mail.login == USER
    assert mail.recipients == ["alice@example.com"]
    message = mail.message
    assert message["From"] == "On-call <oncall@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == f"[sre] URGENT Alert #{alert_id}: disk <full> & slow"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"  # Exchange's out-of-office replies
    text, html = parts(message)
    assert "disk <full> & slow" in text and "host = db-1" in text and "Priority: high" in text
    assert f"{PUBLIC}/console/alerts/{alert_id}" in text
    assert "disk &lt;full&gt; &amp; slow" in html and "<full>" not in html  # autoescaped
    assert f'href="{PUBLIC}/console/alerts/{alert_id}"' in html
    acknowledge, resolve = link(text, "Acknowledge"), link(text, "Resolve")
    assert acknowledge != resolve
    assert f'href="{PUBLIC}{acknowledge}"' in html and f'href="{PUBLIC}{resolve}"' in html

    alert = await gateway.alert_where(alert_id, lambda a: any(p["channel"] == "email" and p["status"] == "done"
                                                              for p in a["pages"]))
    [email_page] = [p for p in alert["pages"] if p["channel"] == "email"]
    assert (email_page["engineer"], email_page["outcome"]) == ("alice", "sent")
    assert email_page["number"] != "alice@example.com"  # masked like a number
    assert any(t["message"] == "email to Alice: sent" for t in alert["timeline"])
    assert alert["status"] == "triggered"  # an email is not an answer


async def test_a_link_asks_on_get_and_acknowledges_once_on_post(gateway: Gateway, smtp: SmtpServer) -> None:
    alert_id = await trigger(gateway)
    await gateway.ringing(ALICE)
    [mail] = await mails(smtp)
    text, _ = parts(mail.message)
    acknowledge = link(text, "Acknowledge")

    # A mail scanner fetches the link: it sees a question and a button, and nothing changes.
    for _ in range(3):
        status, body = await page(gateway, "GET", acknowledge)
        assert status == 200
        assert '<form method="post">' in body and "Acknowledge</button>" in body
        assert "disk &lt;full&gt; &amp; slow" in body
    assert (await gateway.alert(alert_id))["status"] == "triggered"

    status, body = await page(gateway, "POST", acknowledge)
    assert status == 200 and "acknowledged" in body and "Alice" in body
    alert = await gateway.alert(alert_id)
    assert (alert["status"], alert["acknowledged_by"]) == ("acknowledged", "alice")
    assert any(t["message"] == "acknowledged by Alice (email link)" for t in alert["timeline"])
    # The call still ringing is hung up, as with any acknowledgement.
    await eventually(lambda: _call_over(gateway, ALICE))

    status, body = await page(gateway, "POST", acknowledge)
    assert status == 410 and "used already" in body
    status, _ = await page(gateway, "GET", acknowledge)  # acknowledged already: nothing to ask
    assert status == 409

    # The resolve link of the same mail still works (once).
    resolve = link(text, "Resolve")
    assert (await page(gateway, "POST", resolve))[0] == 200
    alert = await gateway.alert(alert_id)
    assert alert["status"] == "resolved"
    assert any(t["message"] == "resolved by Alice (email link)" for t in alert["timeline"])


async def _call_over(gateway: Gateway, number: str) -> bool:
    call = (await gateway.phone(number))["call"]
    return call is None or call["state"] == "ended"


async def test_tampered_expired_and_closed_links_are_refused_and_change_nothing(gateway: Gateway,
                                                                                 smtp: SmtpServer) -> None:
    alert_id = await trigger(gateway)
    [mail] = await mails(smtp)
    text, _ = parts(mail.message)
    acknowledge, resolve = link(text, "Acknowledge"), link(text, "Resolve")

    payload, signature = acknowledge.removeprefix("/a/").split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    resolve_payload = resolve.removeprefix("/a/").split(".")[0]
    for forged in (f"/a/{payload}.{flipped}", f"/a/{resolve_payload}.{signature}", f"/a/{payload}",
                   f"/a/{payload}x.{signature}", "/a/" + "A" * 2000, "/a/%00.%ff"):
        for method in ("GET", "POST"):
            status, body = await page(gateway, method, forged)
            assert status == 403, (forged, body)
            assert "not valid" in body
    assert (await gateway.alert(alert_id))["status"] == "triggered"

    await gateway.clock.advance(24 * 3600 + 1)  # links work for 24 h (action_links.expires_after)
    for method in ("GET", "POST"):
        status, body = await page(gateway, method, acknowledge)
        assert status == 410 and "expired" in body
    alert = await gateway.alert(alert_id)
    assert alert["status"] == "triggered"
    assert not any("email link" in t["message"] for t in alert["timeline"])


async def test_a_link_for_an_alert_closed_meanwhile_is_a_conflict(gateway: Gateway, smtp: SmtpServer) -> None:
    alert_id = await trigger(gateway)
    [mail] = await mails(smtp)
    text, _ = parts(mail.message)
    status, _ = await gateway.post(f"/api/v1/alerts/{alert_id}/resolve")
    assert status == 200
    for method in ("GET", "POST"):
        status, body = await page(gateway, method, link(text, "Acknowledge"))
        assert status == 409 and "already resolved" in body
    alert = await gateway.alert(alert_id)
    assert alert["acknowledged_by"] is None


async def test_an_email_never_stops_escalation(gateway_for: Callable[[str], Any], smtp: SmtpServer) -> None:
    gateway: Gateway = await gateway_for("""      - {notify: primary, via: email, timeout: 20s}
      - {notify: secondary, via: call, timeout: 20s}""")
    alert_id = await trigger(gateway)
    await mails(smtp)
    await gateway.alert_where(alert_id, lambda a: a["pages"][0]["outcome"] == "sent")
    assert (await gateway.phone(ALICE))["call"] is None  # email only
    await gateway.clock.advance(20)
    await gateway.ringing(BOB)
    assert (await gateway.alert(alert_id))["status"] == "triggered"


async def test_an_engineer_without_an_address_is_noted_on_the_timeline(gateway_for: Callable[[str], Any],
                                                                         smtp: SmtpServer) -> None:
    gateway: Gateway = await gateway_for("""      - {notify: team, via: [call, email], timeout: 20s}""")
    alert_id = await trigger(gateway)
    await gateway.ringing(BOB)
    await mails(smtp)
    alert = await gateway.alert(alert_id)
    assert any(t["message"] == "step 1 of 1: Bob has no email address; not emailed" for t in alert["timeline"])
    assert sorted((p["engineer"], p["channel"]) for p in alert["pages"]) == [
        ("alice", "call"), ("alice", "email"), ("bob", "call")]


async def test_a_refused_delivery_is_tried_again_and_recorded(gateway: Gateway, smtp: SmtpServer) -> None:
    smtp.handler.fail_with = "451 4.3.0 try again later"
    alert_id = await trigger(gateway)
    await gateway.alert_where(alert_id, lambda a: any("trying again in 5 s" in t["message"] for t in a["timeline"]))
    assert smtp.received == []
    await gateway.clock.advance(5)
    [mail] = await mails(smtp)
    assert mail.recipients == ["alice@example.com"]
    alert = await gateway.alert_where(alert_id, lambda a: any(p["outcome"] == "sent" for p in a["pages"]))
    assert any(t["message"] == "email to Alice: sent (on try 2)" for t in alert["timeline"])
    assert (await gateway.phone(ALICE))["call"]["state"] == "ringing"  # the call never waited for the mail


def mailer(server: SmtpServer, **overrides: Any) -> Mailer:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "sender": "oncall@example.com",
                                "username": USER, "password": PASSWORD, "ca_file": server.ca_file, "timeout_s": 10}
    return Mailer(EmailSettings(**{**settings, **overrides}))


async def test_the_mailer_sends_over_implicit_tls(tmp_path: Path) -> None:
    server = SmtpServer(tmp_path, mode="implicit").start()
    try:
        await mailer(server, starttls=False, implicit_tls=True).send(["a@example.com", "b@example.com"], "Hi\nthere",
                                                                      "plain", "<p>html</p>")
        [mail] = await mails(server)
        assert mail.tls and mail.login == USER and mail.recipients == ["a@example.com", "b@example.com"]
        assert mail.message["Subject"] == "Hi there"
        assert [part.strip() for part in parts(mail.message)] == ["plain", "<p>html</p>"]
    finally:
        server.stop()


async def test_the_mailer_refuses_a_server_without_starttls_a_wrong_password_and_an_unknown_ca(
        tmp_path: Path, smtp: SmtpServer) -> None:
    plain = SmtpServer(tmp_path / "..", mode="plain").start()
    try:
        with pytest.raises(MailError, match="STARTTLS") as refused:
            await mailer(plain, ca_file=None).send("a@example.com", "s", "t")
        assert not refused.value.transient
        assert plain.received == []
    finally:
        plain.stop()
    with pytest.raises(MailError, match="535") as wrong:
        await mailer(smtp, password="nope").send("a@example.com", "s", "t")
    assert not wrong.value.transient
    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED") as untrusted:
        await mailer(smtp, ca_file=None).send("a@example.com", "s", "t")
    assert not untrusted.value.transient
    with pytest.raises(MailError, match="cannot be built") as injected:  # no header injection through an address
        await mailer(smtp).send("a@example.com\nBcc: b@example.com", "s", "t")
    assert not injected.value.transient
    for smuggled in ("a@example.com, mallory@example.net", "A <a@example.com>", "a@example.com;b@example.net",
                     "a@example.com\r\nBcc: b@example.com", "@example.com", ""):
        with pytest.raises(MailError, match="cannot be built") as extra:  # e.g. a directory's user-edited field
            await mailer(smtp).send(["b@example.com", smuggled], "s", "t")
        assert not extra.value.transient
    smtp.handler.fail_with = "451 4.3.0 try again later"
    with pytest.raises(MailError, match="451") as later:
        await mailer(smtp).send("a@example.com", "s", "t")
    assert later.value.transient
    assert smtp.received == []


async def test_two_gateways_on_one_postgres_accept_a_link_once(
        aiohttp_client: Callable[..., Any], tmp_path: Path, smtp: SmtpServer, pg_database: PgDatabase,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)
    store = f'store: {{url: "{pg_database.url}"'
    if pg_database.password is not None:
        monkeypatch.setenv("GATEWAY_TEST_DB_PASSWORD", pg_database.password)
        store += ", password_env: GATEWAY_TEST_DB_PASSWORD"
    text = config_text(smtp, steps=CALL_AND_EMAIL).replace("store: {path: gateway.db}", store + "}")
    clock = FakeClock()
    config = load_config(write_config(tmp_path, text))
    assert config.store_url is not None
    first = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)
    second = Gateway(await aiohttp_client(create_app(config, clock=clock)), clock)

    alert_id = await trigger(first)
    [mail] = await mails(smtp)
    text, _ = parts(mail.message)
    acknowledge = link(text, "Acknowledge")
    assert (await page(second, "GET", acknowledge))[0] == 200  # the other gateway reads the same alert

    async def use(gateway: Gateway) -> int:
        status, _ = await page(gateway, "POST", acknowledge)
        return status

    assert sorted(await asyncio.gather(use(first), use(second), use(first), use(second))) == [200, 410, 410, 410]
    alert = await second.alert(alert_id)
    assert (alert["status"], alert["acknowledged_by"]) == ("acknowledged", "alice")
    assert sum(t["message"] == "acknowledged by Alice (email link)" for t in alert["timeline"]) == 1


async def test_an_email_not_delivered_before_a_stop_is_sent_after_the_restart(
        aiohttp_client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)
    smtp = SmtpServer(tmp_path)  # not listening yet: the first gateway cannot deliver
    path = write_config(tmp_path, config_text(smtp, steps="""      - {notify: primary, via: email, timeout: 5m}"""))
    clock = FakeClock()
    first = Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)
    alert_id = await trigger(first)
    alert = await first.alert_where(alert_id, lambda a: any("trying again" in t["message"] for t in a["timeline"]))
    assert alert["timeline"][-1]["message"].startswith(
        f"email to Alice failed (SMTP 127.0.0.1:{smtp.port}: Error connecting to 127.0.0.1")
    await first.client.close()  # the gateway stops; the page is still due (written, never sent)

    smtp.start()
    try:
        second = Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)
        [mail] = await mails(smtp)
        assert mail.recipients == ["alice@example.com"]
        alert = await second.alert_where(alert_id, lambda a: a["pages"][0]["outcome"] == "sent")
        assert len(alert["pages"]) == 1  # the same page, sent once
    finally:
        smtp.stop()


async def test_genuine_links_are_never_rate_limited_but_guessing_is(gateway: Gateway, smtp: SmtpServer) -> None:
    # Every request comes from one address here, as it does behind the reverse proxy of deploy/ (HAProxy):
    # mail scanners and everyone's clicks on genuine links must not use up a limit meant for guessers.
    alert_id = await trigger(gateway)
    [mail] = await mails(smtp)
    text, _ = parts(mail.message)
    acknowledge, resolve = link(text, "Acknowledge"), link(text, "Resolve")
    for _ in range(40):
        assert (await page(gateway, "GET", acknowledge))[0] == 200
        assert (await page(gateway, "GET", resolve))[0] == 200
    made_up = acknowledge[:-3] + ("AAA" if not acknowledge.endswith("AAA") else "BBB")
    for _ in range(30):
        assert (await page(gateway, "GET", made_up))[0] == 403
    status, body = await page(gateway, "POST", acknowledge)  # after 30 guesses in a minute: a minute's pause
    assert status == 429 and "Too many" in body
    assert (await gateway.alert(alert_id))["status"] == "triggered"
    await gateway.clock.advance(61)
    assert (await page(gateway, "POST", acknowledge))[0] == 200
    assert (await gateway.alert(alert_id))["status"] == "acknowledged"


async def test_the_mailer_reads_its_ca_bundle_once_not_on_every_send(smtp: SmtpServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    made: list[object] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(kwargs.get("cafile"))
        return create(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    sender = mailer(smtp)
    for _ in range(3):  # reading the bundle is disk I/O on the event loop: once is enough
        await sender.send("a@example.com", "s", "t")
    assert len(await mails(smtp, 3)) == 3
    assert made == [str(smtp.ca_file)]


async def test_a_label_cannot_lay_out_a_look_alike_link_in_the_plain_text_mail(gateway: Gateway,
                                                                                smtp: SmtpServer) -> None:
    fake = "x\n\nAcknowledge (you take it; escalation stops):\n  https://evil.example/a/x\n"
    await trigger(gateway, **{"note": fake, "multi\nline": "y"})
    [mail] = await mails(smtp)
    text, html = parts(mail.message)
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("Acknowledge")] == [
        "Acknowledge (you take it; escalation stops):"]
    assert not any(line.strip().startswith("https://evil.example") for line in lines), text
    assert "  note = x Acknowledge (you take it; escalation stops): https://evil.example/a/x" in lines
    assert "  multi line = y" in lines
    assert "<code>x Acknowledge (you take it; escalation stops): https://evil.example/a/x</code>" in html


async def test_an_email_template_that_does_not_render_fails_the_page_and_the_step_moves_on(
        aiohttp_client: Callable[..., Any], tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "alert_email.txt.j2").write_text("Alert {{ m.alert.no_such_field }}\n")
    steps = """      - {notify: primary, via: email, timeout: 5m}
      - {notify: secondary, via: call, timeout: 20s}"""
    path = write_config(tmp_path, config_text(smtp, steps=steps) + "templates_dir: tpl\n")
    clock = FakeClock()
    gateway = Gateway(await aiohttp_client(create_app(load_config(path), clock=clock)), clock)
    alert_id = await trigger(gateway)
    await gateway.ringing(BOB)  # nobody could be mailed: the next step now, not in 5 minutes
    alert = await gateway.alert(alert_id)
    [email_page] = [p for p in alert["pages"] if p["channel"] == "email"]
    assert email_page["outcome"] == "failed" and "do not render" in email_page["detail"], email_page
    assert smtp.received == []


async def test_an_email_only_step_to_someone_without_an_address_is_skipped_saying_why(
        gateway_for: Callable[[str], Any], smtp: SmtpServer) -> None:
    gateway: Gateway = await gateway_for("""      - {notify: secondary, via: email, timeout: 5m}
      - {notify: primary, via: call, timeout: 20s}""")
    alert_id = await trigger(gateway)
    await gateway.ringing(ALICE)  # at once: Bob (secondary) has no address
    messages = [t["message"] for t in (await gateway.alert(alert_id))["timeline"]]
    assert "step 1 of 2: Bob has no email address; not emailed" in messages
    assert "step 1 of 2: nobody it emails has an address; skipped" in messages, messages
