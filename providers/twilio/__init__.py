"""Twilio: the provider, and its building blocks (REST client, TwiML rendering, webhooks and signatures)."""

from __future__ import annotations

from core.phone import mask as mask_number
from providers.twilio.provider import TwilioProvider
from providers.twilio.public_url import public_url_problems
from providers.twilio.rest import (
    DEFAULT_API_BASE_URL,
    RetryPolicy,
    TwilioRest,
    TwilioRestError,
)
from providers.twilio.settings import TwilioSettings
from providers.twilio.signature import SIGNATURE_HEADER, check_signature, public_request_url
from providers.twilio.twiml import conference_name, render, render_hangup, render_message

__all__ = [
    "DEFAULT_API_BASE_URL",
    "SIGNATURE_HEADER",
    "RetryPolicy",
    "TwilioProvider",
    "TwilioRest",
    "TwilioRestError",
    "TwilioSettings",
    "check_signature",
    "conference_name",
    "mask_number",
    "public_request_url",
    "public_url_problems",
    "render",
    "render_hangup",
    "render_message",
]
