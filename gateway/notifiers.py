"""How a handoff notice or on-call summary reaches an engineer: one notifier per channel ("sms", "email").
A notifier sends one message and says whether it went; once-only is the caller's job."""

from __future__ import annotations

import logging
from typing import Protocol

from core.phone import mask
from gateway.config import Engineer
from gateway.mailer import Mailer, MailError
from providers.base import ProviderError, SmsProvider, SmsRequest

log = logging.getLogger(__name__)


class NoticeNotSent(Exception):
    """The message did not go out; the text says why (for the log and the notice's record)."""


class Notifier(Protocol):
    @property
    def channel(self) -> str:
        """The ``via`` value that selects this notifier (config.NOTICE_CHANNELS)."""
        ...

    async def send(self, *, notice_id: str, engineer: Engineer, subject: str, text: str) -> None:
        """Send ``text`` (``subject``: a one-line title, for channels that have one). Raises NoticeNotSent."""
        ...


class SmsNotifier:
    """Through the gateway's SMS providers (the provider manager: order, failover), to the first phone."""

    channel = "sms"

    def __init__(self, sms: SmsProvider | None) -> None:
        self.sms = sms

    async def send(self, *, notice_id: str, engineer: Engineer, subject: str, text: str) -> None:
        if self.sms is None:
            raise NoticeNotSent("no SMS provider configured")
        if not engineer.phones:
            raise NoticeNotSent(f"{engineer.id} has no phone number")
        number = engineer.phones[0]
        try:
            await self.sms.send_sms(SmsRequest(sms_id=notice_id, to=number, body=text))
        except ProviderError as exc:
            raise NoticeNotSent(f"SMS to {mask(number)} not sent: {exc}") from exc
        log.info("SMS %s to %s (%s) sent", notice_id, mask(number), engineer.id)


class EmailNotifier:
    """Through the SMTP server of the config's email: section, to the engineer's address."""

    channel = "email"

    def __init__(self, mailer: Mailer | None) -> None:
        self.mailer = mailer

    async def send(self, *, notice_id: str, engineer: Engineer, subject: str, text: str) -> None:
        if self.mailer is None:
            raise NoticeNotSent("no email: section configured")
        if not engineer.email:
            raise NoticeNotSent(f"{engineer.id} has no email address")
        try:
            await self.mailer.send(engineer.email, subject, text)
        except MailError as exc:
            raise NoticeNotSent(f"email to {engineer.id} not sent: {exc}") from exc
        log.info("email %s to %s sent", notice_id, engineer.id)
