"""Phone numbers as Kavenegar writes them, and back to E.164.

Kavenegar's documentation and every example use Iran's national mobile format (``09123456789``) for
``receptor``; numbers abroad go in the international dialling form (``00`` and the country code). Inbound
SMS name the sender the same ways (and sometimes as ``98912...`` or ``+98912...``), so all of them are read.
"""

from __future__ import annotations

import phonenumbers

from core.phone import caller_number

IRAN = 98


def to_receptor(e164: str) -> str:
    """``+989121234567`` -> ``09121234567``; ``+15550000001`` -> ``0015550000001``."""
    parsed = phonenumbers.parse(e164, None)
    if parsed.country_code == IRAN:
        return "0" + str(parsed.national_number)
    return "00" + e164.removeprefix("+")


def from_kavenegar(raw: str) -> str:
    """A number as Kavenegar sends it, in E.164; "" when it is not a phone number."""
    text = raw.strip().replace(" ", "")
    if text.startswith("00"):
        text = "+" + text[2:]
    elif text.isdigit() and text.startswith("98") and len(text) == 12:  # 989121234567: Iran, without '+'
        text = "+" + text
    return caller_number(text, "IR")
