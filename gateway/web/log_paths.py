"""Request paths as they may be logged: phone numbers masked, calendar feed secrets redacted.

A calendar feed is authenticated by the secret in its URL alone (``/calendar/<secret>.ics``): logged in
clear, anyone reading the log could fetch the feed.
"""

from __future__ import annotations

import re

from core.phone import mask_numbers_in

_CALENDAR_SECRET = re.compile(r"(/calendar/)[^/]+?(\.ics)?(?=/|$)")


def loggable(path: str) -> str:
    """``/calendar/Jq3Z...8.ics`` -> ``/calendar/<redacted>.ics``; phone numbers masked."""
    return mask_numbers_in(_CALENDAR_SECRET.sub(r"\1<redacted>\2", path))
