"""Roles on API tokens: viewer reads, responder also acts, admin also administers; 403 names the role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from gateway.app import create_app
from gateway.config import ConfigError, load_config
from gateway.web.auth import Auth, Role, auth, declared_role, needs
from tests.support import BASE_CONFIG, TOKEN, Gateway, write_config

ROLES_CONFIG = BASE_CONFIG.replace(
    f"    token: {TOKEN}\n",
    f"    token: {TOKEN}\n"
    "  - {name: watcher, token: viewer-token, role: viewer}\n"
    "  - {name: pager, token: responder-token, role: responder}\n"
    "  - {name: boss, token: admin-token, role: admin}\n",
)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def roles_gateway(aiohttp_client: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    clock = FakeClock()
    client = await aiohttp_client(create_app(load_config(write_config(tmp_path, ROLES_CONFIG)), clock=clock))
    yield Gateway(client, clock)


def test_a_token_without_a_role_is_admin_and_an_unknown_role_is_a_config_problem(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, ROLES_CONFIG))
    assert {t.name: t.role for t in config.api_tokens} == {
        "tests": "admin", "watcher": "viewer", "pager": "responder", "boss": "admin"}
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, ROLES_CONFIG.replace("role: viewer", "role: root")))
    assert any("api_tokens[1].role" in p and "viewer, responder, admin" in p for p in caught.value.problems)


async def test_a_viewer_reads_but_cannot_act(roles_gateway: Gateway) -> None:
    status, created = await roles_gateway.post("/api/v1/alerts", {"summary": "disk"}, headers=_auth("responder-token"))
    assert status == 202, created
    for path in ("/api/v1/alerts", f"/api/v1/alerts/{created['id']}", "/api/v1/oncall", "/api/v1/queues"):
        status, body = await roles_gateway.get(path, headers=_auth("viewer-token"))
        assert status == 200, (path, body)
    for path, body in ((f"/api/v1/alerts/{created['id']}/acknowledge", {}), ("/api/v1/alerts", {"summary": "x"}),
                       ("/api/v1/calls", {"to": "+15550000001", "message": "hi"})):
        status, answer = await roles_gateway.post(path, body, headers=_auth("viewer-token"))
        assert status == 403, (path, answer)
        assert answer["error"] == "forbidden" and answer["details"]["role_needed"] == "responder", answer
        assert "'responder'" in answer["message"]
    alert = await roles_gateway.alert(created["id"])
    assert alert["status"] == "triggered"  # refused before the handler ran
    status, _ = await roles_gateway.post(f"/api/v1/alerts/{created['id']}/acknowledge", {},
                                         headers=_auth("responder-token"))
    assert status == 200


async def test_pagerduty_enqueue_needs_a_responder_token_or_a_routing_key(roles_gateway: Gateway) -> None:
    event = {"event_action": "trigger", "payload": {"summary": "s", "source": "h", "severity": "critical"}}
    status, body = await roles_gateway.post("/v2/enqueue", {**event, "routing_key": "viewer-token"}, headers={})
    assert status == 403 and body["error"] == "forbidden", body
    status, sent = await roles_gateway.post("/v2/enqueue", {**event, "routing_key": "responder-token"}, headers={})
    assert status == 202, sent
    status, sent = await roles_gateway.post("/v2/enqueue", {**event, "routing_key": "dba-routing-key-0000000000000000"},
                                            headers={})
    assert status == 202, sent
    status, header = await roles_gateway.post("/v2/enqueue", event, headers=_auth("viewer-token"))
    assert status == 403 and header["error"] == "forbidden", header
    # Either way PagerDuty's error shape, which its senders read (status, message, errors)
    for answer in (body, header):
        assert isinstance(answer["errors"], list) and answer["errors"] and answer["status"], answer
        assert "'responder'" in answer["message"] and "'viewer'" in answer["message"]


def test_a_route_declares_its_role_or_gets_one_from_its_method() -> None:
    async def handler() -> None:
        return None

    assert declared_role(handler, "GET") is Role.VIEWER
    assert declared_role(handler, "POST") is Role.RESPONDER
    assert declared_role(handler, "DELETE") is Role.RESPONDER
    assert declared_role(auth(Auth.TOKEN, role=Role.ADMIN)(handler), "GET") is Role.ADMIN
    assert declared_role(needs(Role.VIEWER)(handler), "POST") is Role.VIEWER
    assert Role.ADMIN.allows(Role.RESPONDER) and not Role.RESPONDER.allows(Role.ADMIN)
    assert not Role.VIEWER.allows(Role.RESPONDER) and Role.VIEWER.allows(Role.VIEWER)
