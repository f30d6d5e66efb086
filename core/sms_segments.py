"""How many SMS segments a text takes (3GPP TS 23.038 / 23.040), as carriers count and bill them.

A text of GSM 03.38 characters is sent in 7-bit: 160 per SMS, or 153 per segment of a longer one; the extension
characters (``^{}\\[~]|€`` and form feed) take two (an escape first). Any other character (a typographic
apostrophe, an emoji, Persian or Cyrillic letters) makes the whole text UCS-2: 70 UTF-16 units per SMS, 67 per
segment.
"""

from __future__ import annotations

import math

GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("\f^{}\\[~]|€")


def septets(text: str) -> int | None:
    """The text's length in GSM 7-bit septets, or None when a character is not in the GSM alphabet."""
    count = 0
    for char in text:
        if char in GSM_BASIC:
            count += 1
        elif char in GSM_EXTENSION:
            count += 2
        else:
            return None
    return count


def segments(text: str) -> int:
    """The SMS segments ``text`` is sent in (1 for an empty text)."""
    length = septets(text)
    if length is not None:
        return 1 if length <= 160 else math.ceil(length / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)
