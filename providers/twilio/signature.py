"""Is this webhook really from Twilio? (``X-Twilio-Signature``, HMAC-SHA1 of URL and params.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from twilio.request_validator import RequestValidator

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"


def check_signature(
    *, auth_token: str, public_url: str, params: Mapping[str, str], signature: str | None
) -> bool:
    """True when ``signature`` matches; a missing or malformed one is simply False.

    ``public_url`` must be the URL Twilio called (see :func:`public_request_url`);
    ``params`` the POST form fields (a multidict with repeated keys works too).
    """
    try:
        return bool(RequestValidator(auth_token).validate(public_url, params, signature or ""))
    except Exception:  # a garbled URL or params must never turn into a 500
        log.warning("twilio signature check failed on a malformed request", exc_info=True)
        return False


def public_request_url(public_base_url: str, path_qs: str) -> str:
    """The URL Twilio called: the configured public base joined with the request's path and query.

    Behind a reverse proxy ``request.url`` names the internal host, so it cannot
    be signed against. The public base is where the app's root is reachable
    (``https://oncall.example.com`` or ``https://example.com/oncall``).
    """
    return public_base_url.rstrip("/") + "/" + path_qs.lstrip("/")
