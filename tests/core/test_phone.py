from __future__ import annotations

import pytest

from core.phone import InvalidNumber, mask, mask_numbers_in, normalize


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("(555) 000-0001", "US", "+15550000001"),  # national format, fictional (possible, not valid)
        ("+1 555 000 0001", "US", "+15550000001"),
        ("+15550000001", "DE", "+15550000001"),  # international ignores the region
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("  +1 (202) 555-0143 ", "US", "+12025550143"),
        ("030 901820", "DE", "+4930901820"),
    ],
)
def test_normalize_to_e164(text: str, region: str, expected: str) -> None:
    assert normalize(text, region) == expected


def test_normalize_defaults_to_us() -> None:
    assert normalize("555-000-0002") == "+15550000002"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("+1 555", "too short"),
        ("12", "too short"),
        ("+1 555 000 0001 2345", "too long"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_normalize_rejects_impossible_numbers(text: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalize(text, "US")
    assert caught.value.number == text
    assert caught.value.reason == reason
    assert str(caught.value) == f"{text!r} is not a phone number ({reason})"


@pytest.mark.parametrize("text", ["hello", "not a number", "+999 1234567"])
def test_normalize_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        normalize(text, "US")
    assert caught.value.reason.startswith("could not parse: ")
    assert isinstance(caught.value, ValueError)


def test_normalize_rejects_local_only_number() -> None:
    with pytest.raises(InvalidNumber, match="area code"):
        normalize("555-0123", "US")


def test_normalize_rejects_non_text() -> None:
    with pytest.raises(InvalidNumber, match="expected text"):
        normalize(15550000001, "US")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15550000001", "+1555***0001"),
        ("+442079460958", "+4420***0958"),
        ("+4930901820", "+4930***1820"),
        ("+4912345", "+49***45"),
        ("+123", "***"),
    ],
)
def test_mask(number: str, masked: str) -> None:
    assert mask(number) == masked


def test_one_mask_for_every_log_line() -> None:
    assert mask("+15550000001") == "+1555***0001"
    assert mask("") == ""
    assert mask("+12345678") == "+12***78"  # a 9-digit number keeps 4 of its digits, never all of them
    assert "0001" not in mask("0001")
    assert mask_numbers_in("Local/+15550000001@sim-phones") == "Local/+1555***0001@sim-phones"
