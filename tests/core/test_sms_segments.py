"""SMS segments as carriers count them: GSM 7-bit (160, 153 per part; extension characters count two), else
UCS-2 (70, 67 per part; a character outside the BMP counts two)."""

from __future__ import annotations

import pytest

from core.sms_segments import GSM_BASIC, segments, septets


def test_the_gsm_basic_set_has_its_127_printable_characters_and_line_breaks() -> None:
    assert len(GSM_BASIC) == 127  # 128 codes, one of them the escape to the extension table


@pytest.mark.parametrize(("text", "expected"), [
    ("", 1),
    ("a" * 160, 1),
    ("a" * 161, 2),
    ("a" * 306, 2),
    ("a" * 307, 3),
    ("é" * 160, 1),  # é, Ä, ñ ... are GSM characters
    ("€" * 80, 1),  # 160 septets
    ("€" * 81, 2),
    ("[" * 80, 1),
    ("[" * 80 + "a", 2),
    ("a" * 69 + "’", 1),  # a typographic apostrophe makes it UCS-2
    ("a" * 70 + "’", 2),
    ("سلام" * 33 + "ab", 2),  # 134 units
    ("سلام" * 33 + "abc", 3),
    ("🔥" * 35, 1),  # 70 UTF-16 units
    ("🔥" * 36, 2),
])
def test_segments(text: str, expected: int) -> None:
    assert segments(text) == expected


def test_septets() -> None:
    assert septets("On call: {db} ~ok") == 20  # 17 characters, three of them from the extension
    assert septets("Disk full ’db’") is None
