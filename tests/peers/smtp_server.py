"""A real SMTP server on loopback (aiosmtpd, in its own thread): STARTTLS or implicit TLS with a certificate
from a test CA (trustme), AUTH with one user, and every accepted message kept for the test to read."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "gateway@example.com", "smtp-secret"


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool  # the session was encrypted when the mail was sent
    login: str | None  # who authenticated


@dataclass
class _Handler:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_with: str | None = None  # e.g. "451 4.3.0 try again later": refuse the next DATA

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.fail_with is not None:
            answer, self.fail_with = self.fail_with, None
            return answer
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.lock:
            self.received.append(Received(sender=str(envelope.mail_from), recipients=list(envelope.rcpt_tos),
                                          message=parsed, tls=_encrypted(server), login=login))
        return "250 OK"


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login.decode() == USER and data.password.decode() == PASSWORD
    return AuthResult(success=ok, handled=False, auth_data=data if ok else None)


def _encrypted(server: SMTP) -> bool:
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpServer:
    """``mode``: "starttls" (plain, STARTTLS required before AUTH and mail), "implicit" (TLS from the first
    byte) or "plain" (no TLS offered at all: a client that insists on TLS must refuse it)."""

    def __init__(self, folder: Path, *, mode: str = "starttls") -> None:
        self.ca = trustme.CA()
        self.ca_file = folder / "smtp-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
        self.handler = _Handler()
        self.port = _free_port()
        options: dict[str, Any] = {"authenticator": _authenticate, "auth_required": mode != "plain"}
        if mode == "starttls":
            options.update(tls_context=context, require_starttls=True, auth_require_tls=True)
        elif mode == "implicit":
            # TLS from the first byte: aiosmtpd counts only STARTTLS as TLS, so AUTH is offered, not required
            options.update(ssl_context=context, auth_required=False, auth_require_tls=False)
        else:
            options.update(auth_required=False)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **options)

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
