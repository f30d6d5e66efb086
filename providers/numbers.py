"""Phone numbers as providers receive them: caller IDs and dialled numbers, to E.164 or "" (withheld)."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException

#: how networks say "no number": words, and Twilio's keypad spellings of them (+266696687 is ANONYMOUS)
WITHHELD = frozenset({
    "", "unknown", "<unknown>", "anonymous", "restricted", "private", "withheld", "unavailable", "blocked",
    "+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253",
})  # fmt: skip


def caller_number(raw: str, region: str) -> str:
    """``raw`` in E.164, or "" when withheld or not a phone number (a SIP URI, a client name).

    Possible numbers count (the right length for their country), as everywhere in the gateway:
    test and fictional ranges are possible without being valid.
    """
    text = raw.strip()
    if text.lower() in WITHHELD:
        return ""
    try:
        parsed = phonenumbers.parse(text, region)
    except NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(parsed):
        return ""
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
