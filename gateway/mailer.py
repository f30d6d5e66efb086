"""Email over SMTP (aiosmtplib): STARTTLS or implicit TLS, certificates checked, AUTH from the environment.

``Mailer.send(to, subject, text, html)`` is the one way the gateway sends mail (alert pages, and any other
notice that wants a mailbox). Failures come back as ``MailError``, marked transient (a 4xx reply, a timeout,
a connection refused: worth another try) or permanent (a 5xx reply: the same mail would fail again).
"""

from __future__ import annotations

import email.errors
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from gateway.message_settings import EmailSettings, is_address


class MailError(Exception):
    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Mailer:
    def __init__(self, settings: EmailSettings) -> None:
        self.settings = settings
        self._tls: ssl.SSLContext | None = None  # made on the first send, then kept

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS context, made once: making it reads the CA bundle from disk (blocking the event loop)."""
        if self._tls is None:
            ca_file = self.settings.ca_file
            self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        return self._tls

    def message(self, to: Sequence[str], subject: str, text: str, html: str | None = None) -> EmailMessage:
        """The MIME message: plain text, with an HTML alternative when ``html`` is given."""
        message = EmailMessage()
        message["From"] = self.settings.sender
        message["To"] = ", ".join(to)
        message["Subject"] = " ".join(subject.split())  # one line: a header cannot hold a newline
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=self.settings.sender.rpartition("@")[2].rstrip(">") or None)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to an alert
        message["X-Auto-Response-Suppress"] = "OOF, AutoReply"  # the same for Exchange and Outlook
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        return message

    async def send(self, to: str | Sequence[str], subject: str, text: str, html: str | None = None) -> None:
        """Send one message to ``to`` (one address or several); MailError when the server did not take it."""
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients:
            raise MailError("no recipient", transient=False)
        if not all(is_address(recipient) for recipient in recipients):
            raise MailError("the message cannot be built: a recipient is not one plain email address",
                            transient=False)
        settings = self.settings
        try:
            message = self.message(recipients, subject, text, html)
            context = self._tls_context()
        except (ValueError, IndexError, OSError, email.errors.MessageError) as exc:  # a header it cannot write
            raise MailError(f"the message cannot be built: {exc}", transient=False) from None
        try:
            await aiosmtplib.send(
                message,
                recipients=recipients,  # as checked, not as a header parser reads the To line back
                hostname=settings.host,
                port=settings.port,
                username=settings.username,
                password=settings.password,
                use_tls=settings.implicit_tls,
                start_tls=settings.starttls,  # required when set: a server without STARTTLS is refused
                tls_context=context,
                timeout=settings.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            raise MailError(f"recipient refused ({', '.join(map(str, codes))})",
                            transient=all(400 <= code < 500 for code in codes)) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise MailError(f"SMTP server answered {exc.code} {exc.message}".strip(),
                            transient=400 <= exc.code < 500) from None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError,
                TimeoutError, ConnectionError) as exc:
            raise MailError(f"SMTP {settings.host}:{settings.port}: {exc}", transient=True) from None
        except (aiosmtplib.SMTPException, ssl.SSLError) as exc:
            # No STARTTLS or AUTH offered (a downgrade is refused), a certificate that does not verify: the same
            # mail would fail the same way
            raise MailError(f"SMTP {settings.host}:{settings.port}: {exc}", transient=False) from None
        except OSError as exc:
            raise MailError(f"SMTP {settings.host}:{settings.port}: {exc}", transient=True) from None
