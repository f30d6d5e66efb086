"""Handoff notices by email: the incoming engineer's mailbox gets the notice at the lead time (a real SMTP server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import ConfigError, load_config
from tests.peers.smtp_server import PASSWORD, USER, SmtpServer
from tests.support import BASE_CONFIG, eventually, write_config

# The clock starts on Wed 2026-01-07 12:00 UTC; team sre hands over on Mon 12 Jan 09:00 UTC (bob takes primary).
NOTICE_TIME = 4 * 86400 + 20 * 3600 + 30 * 60  # to Mon 12 Jan 08:30 UTC: 30 minutes before the handoff


def config_text(server: SmtpServer, via: str = "[sms, email]") -> str:
    return BASE_CONFIG.replace(
        '  bob: {name: Bob, phones: ["+15550000002"]}\n',
        '  bob: {name: Bob, phones: ["+15550000002"], email: bob@example.com}\n',
    ).replace(
        "    members: [alice, bob]\n",
        f"    members: [alice, bob]\n    handoff_notice: {{lead: 30m, roles: [primary], via: {via}}}\n",
    ) + f"""
email:
  host: 127.0.0.1
  port: {server.port}
  username: {USER}
  password_env: GATEWAY_TEST_SMTP_PASSWORD
  from: "On-call <oncall@example.com>"
  ca_file: {server.ca_file}
"""


@pytest.fixture
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    monkeypatch.setenv("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)
    server = SmtpServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


async def test_the_incoming_engineer_gets_the_handoff_notice_by_email(
        aiohttp_client: Callable[..., Any], tmp_path: Path, smtp: SmtpServer) -> None:
    clock = FakeClock()
    await aiohttp_client(create_app(load_config(write_config(tmp_path, config_text(smtp))), clock=clock))
    await clock.advance(NOTICE_TIME - 60)
    assert smtp.received == []
    await clock.advance(60)

    async def mailed() -> list[Any]:
        return smtp.received

    [mail] = await eventually(mailed)
    assert mail.recipients == ["bob@example.com"] and mail.tls
    body = mail.message.get_content()
    assert "you are primary for sre from Mon 12 Jan 09:00" in body
    assert mail.message["Subject"]


def test_a_notice_by_email_needs_an_email_section(tmp_path: Path, smtp: SmtpServer) -> None:
    text = config_text(smtp).split("\nemail:\n")[0] + "\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    assert any("teams.sre.handoff_notice.via: email needs an email: section" in p for p in caught.value.problems)
