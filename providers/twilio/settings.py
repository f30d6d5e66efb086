"""The Twilio provider's settings: the ``twilio:`` section of the config file, read and checked by the
gateway's config reader (one file, validated at start)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class TwilioSettings:
    account_sid: str
    auth_token: str = field(repr=False)
    signing_key: str | None = field(default=None, repr=False)  # when webhooks are not signed with the auth token
    from_number: str  # E.164: caller id of alert calls and sender of SMS
    api_base_url: str = "https://api.twilio.com"
    max_concurrent_calls: int = 10
    calls_per_second: float = 1.0
    machine_detection: bool = True
