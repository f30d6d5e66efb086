"""Request paths as they may be logged: phone numbers masked, calendar feed secrets and action link tokens
redacted.

A calendar feed is authenticated by the secret in its URL alone (``/calendar/<secret>.ics``): logged in
clear, anyone reading the log could fetch the feed.
"""

from __future__ import annotations

import re

from core.phone import mask_numbers_in

_CALENDAR_SECRET = re.compile(r"(/calendar/)[^/]+?(\.ics)?(?=/|$)")
_ACTION_LINK = re.compile(r"^(/a/)[^/]+")  # a signed acknowledge/resolve link: whoever reads it could use it


def loggable(path: str) -> str:
    """``/calendar/Jq3Z...8.ics`` -> ``/calendar/<redacted>.ics``; phone numbers masked."""
    return mask_numbers_in(_ACTION_LINK.sub(r"\1<redacted>", _CALENDAR_SECRET.sub(r"\1<redacted>\2", path)))
