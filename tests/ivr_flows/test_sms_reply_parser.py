from __future__ import annotations

import pytest

from ivr_flows.sms_reply import SMS_HELP, SmsCommand, parse_sms_reply


def ack(alert_id: int | None = None) -> SmsCommand:
    return SmsCommand(action="acknowledge", alert_id=alert_id)


def resolve(alert_id: int | None = None) -> SmsCommand:
    return SmsCommand(action="resolve", alert_id=alert_id)


def esc(alert_id: int | None = None) -> SmsCommand:
    return SmsCommand(action="escalate", alert_id=alert_id)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # acknowledge keywords
        ("1", ack()),
        ("ack", ack()),
        ("a", ack()),
        ("acknowledge", ack()),
        ("ok", ack()),
        ("OK", ack()),
        ("Ack", ack()),
        ("ACKNOWLEDGE", ack()),
        # resolve keywords
        ("resolve", resolve()),
        ("res", resolve()),
        ("r", resolve()),
        ("close", resolve()),
        ("Close", resolve()),
        # escalate keywords
        ("2", esc()),
        ("esc", esc()),
        ("escalate", esc()),
        ("e", esc()),
        ("ESC", esc()),
        # with an alert number, before or after
        ("ack 42", ack(42)),
        ("42 ack", ack(42)),
        ("ACK #42", ack(42)),
        ("#42 ack", ack(42)),
        ("resolve 42", resolve(42)),
        ("42 close", resolve(42)),
        ("esc 42", esc(42)),
        ("42 e", esc(42)),
        ("1 42", ack(42)),
        ("2 42", esc(42)),
        ("42 1", ack(42)),
        ("ok 007", ack(7)),
        # whitespace and trailing punctuation
        ("  ack  ", ack()),
        ("\tack\n42\n", ack(42)),
        ("ack.", ack()),
        ("Ack!", ack()),
        ("ack 42.", ack(42)),
        ("ok!!", ack()),
        ("resolve #42 .", resolve(42)),
        # not commands
        ("", None),
        ("   ", None),
        (".", None),
        ("42", None),
        ("#42", None),
        ("3", None),
        ("yes", None),
        ("okay", None),
        ("acked", None),
        ("ack42", None),
        ("ack # 42", None),
        ("ack 42 43", None),
        ("please ack 42", None),
        ("ack ack", None),
        ("42 43", None),
        ("ack -42", None),
        ("ack 4.2", None),
        ("ack 1234567890123456789", None),
        ("ack ²", None),
        ("ack \u0664\u0662", None),  # Arabic-Indic "42"
        ("?ack", None),
        ("ack?", None),
        ("stop", None),
        ("help", None),
    ],
)
def test_grammar(text: str, expected: SmsCommand | None) -> None:
    assert parse_sms_reply(text) == expected


def test_bare_keyword_names_no_alert() -> None:
    command = parse_sms_reply("ack")
    assert command is not None
    assert command.alert_id is None


def test_help_fits_one_sms_and_names_the_commands() -> None:
    assert len(SMS_HELP) <= 160
    for word in ("1", "ACK", "RESOLVE", "ESC", "42"):
        assert word in SMS_HELP


@pytest.mark.parametrize("example", ["1", "ACK", "RESOLVE", "ESC", "ACK 42"])
def test_commands_in_the_help_text_parse(example: str) -> None:
    assert parse_sms_reply(example) is not None
