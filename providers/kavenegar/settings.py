"""The Kavenegar provider's settings: the ``kavenegar:`` section of the config file, read and checked by the
gateway's config reader (one file, validated at start)."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_API_URL = "https://api.kavenegar.com"


@dataclass(frozen=True, kw_only=True)
class KavenegarSettings:
    api_key: str = field(repr=False)  # part of every request's path: /v1/{API-KEY}/sms/send.json
    sender: str  # the line SMS go out from and replies come back to, e.g. "10004346"
    api_url: str = DEFAULT_API_URL
    # The secret in the inbound URL (?secret=...) Kavenegar forwards received SMS to; None: one-way SMS only.
    inbound_secret: str | None = field(default=None, repr=False)
    status_poll_interval_s: float = 30.0  # how often sms/status.json is asked about messages not final yet
    # How often sms/receive.json is read for replies (None: not read; replies come to the inbound URL).
    receive_poll_interval_s: float | None = None
