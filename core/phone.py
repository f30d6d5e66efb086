"""Phone numbers, for every package: normalized to E.164 when they enter, masked in logs, spoken on calls."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult


class InvalidNumber(ValueError):
    """``number`` (as given) is not a usable phone number; ``reason`` says why, in plain words."""

    def __init__(self, number: str, reason: str) -> None:
        super().__init__(f"{number!r} is not a phone number ({reason})")
        self.number = number
        self.reason = reason


_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "local number only: add the area code",
}


def normalize(number: str, default_region: str = "US") -> str:
    """Return ``number`` (national or international format) in E.164.

    National formats are read in ``default_region``. A number is accepted when
    phonenumbers calls it *valid* OR merely *possible* (the right length for its
    country): fictional and test numbers such as the 555-01xx range or
    ``+15550000001`` are possible but not valid, and demos, tests and the
    sandbox rely on them. Anything that is not even possible is rejected.
    """
    if not isinstance(number, str):
        raise InvalidNumber(str(number), "expected text")
    text = number.strip()
    if not text:
        raise InvalidNumber(number, "empty")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        message = re.sub(r"^\(\d+\)\s*", "", str(exc)).rstrip(".")
        raise InvalidNumber(number, f"could not parse: {message[:1].lower()}{message[1:]}") from None
    if not phonenumbers.is_valid_number(parsed):
        possible = phonenumbers.is_possible_number_with_reason(parsed)
        if possible != ValidationResult.IS_POSSIBLE:
            region = phonenumbers.region_code_for_number(parsed) or default_region
            reason = _REASONS.get(possible, f"not a valid number for region {region}")
            raise InvalidNumber(number, reason)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str) -> str:
    """Hide the middle of a number for logs: ``+15550000001`` -> ``+1555***0001``; "" stays ""."""
    if not e164:
        return ""
    if len(e164) < 6:
        return "***"
    if len(e164) < 10:
        return f"{e164[:3]}***{e164[-2:]}"
    return f"{e164[:5]}***{e164[-4:]}"


# A phone number inside a URL path or other text: an optional '+' (or its escape %2B), then digits that may be
# grouped by spaces (or %20), dots, dashes and parentheses. Only runs of 7 or more digits are masked.
_NUMBER_IN_TEXT = re.compile(r"(?<![\w%+])(%2B|\+)?\(?\d(?:[\d().\- ]|%20)*\d")


def mask_numbers_in(text: str) -> str:
    """``text`` (a request path, a log message) with every phone number in it masked.

    ``/api/v1/sandbox/phones/+15550000101/reply`` -> ``/api/v1/sandbox/phones/+1555***0101/reply``;
    national forms (``5550000101``) are masked too. Used by the access log and the error log alike.
    """

    def hide(found: re.Match[str]) -> str:
        plus = "+" if found.group(1) else ""
        digits = re.sub(r"\D", "", found.group(0)[len(found.group(1) or ""):].replace("%20", ""))
        return mask(plus + digits) if len(digits) >= 7 else found.group(0)

    return _NUMBER_IN_TEXT.sub(hide, text)


def spoken(e164: str) -> str:
    """The number as a person reads it out (international format), or "an unknown number"."""
    if not e164:
        return "an unknown number"
    try:
        parsed = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


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
