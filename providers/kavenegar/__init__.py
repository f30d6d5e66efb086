"""Kavenegar (kavenegar.com): an SMS gateway common in Iran, as an SMS-only provider with two-way replies."""

from __future__ import annotations

from providers.kavenegar.numbers import from_kavenegar, to_receptor
from providers.kavenegar.provider import CHECKING, INBOUND_PATH, KavenegarProvider
from providers.kavenegar.rest import KavenegarError, KavenegarRest, RetryPolicy
from providers.kavenegar.settings import DEFAULT_API_URL, KavenegarSettings

__all__ = [
    "CHECKING",
    "DEFAULT_API_URL",
    "INBOUND_PATH",
    "KavenegarError",
    "KavenegarProvider",
    "KavenegarRest",
    "KavenegarSettings",
    "RetryPolicy",
    "from_kavenegar",
    "to_receptor",
]
