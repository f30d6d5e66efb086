"""Authentication is one middleware: every route is covered, before any body is read."""

from __future__ import annotations

import hmac
import re
from pathlib import Path

import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.config import load_config
from gateway.web import auth as auth_module
from gateway.web.auth import Auth, declared, routing_key_known, token_name
from gateway.web.fallback import is_catch_all
from tests.support import BASE_CONFIG, Gateway, write_config

PUBLIC = {"/healthz", "/readyz", "/openapi.json", "/console/sign-in", "/console/static/{name}"}
DEEP = b"[" * 100_000


def _concrete(path: str) -> str:
    """A path of the route with each ``{placeholder}`` filled in."""
    return re.sub(r"\{(\w+)[^}]*\}", lambda m: "+15550000001" if m.group(1) == "number" else "1", path)


async def test_every_route_but_health_needs_a_token_before_its_body_is_read(gateway: Gateway) -> None:
    app = gateway.client.app
    assert app is not None
    checked = 0
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical
        if declared(route.handler) is Auth.CALENDAR_FEED:  # a calendar feed's secret URL: unknown is 404
            async with gateway.client.request(route.method, _concrete(path), data=DEEP) as resp:
                assert resp.status == 404 and (await resp.json())["error"] == "not_found", path
            checked += 1
            continue
        if declared(route.handler) is Auth.ACTION_LINK:  # a signed link: a forged one is 403, body never read
            async with gateway.client.request(route.method, _concrete(path), data=DEEP) as resp:
                assert resp.status == 403 and "not valid" in await resp.text(), path
            checked += 1
            continue
        if path in PUBLIC or is_catch_all(route):
            assert declared(route.handler) is Auth.NONE
            continue
        if path.startswith("/console"):  # the console's pages: a session cookie, else the sign-in page
            assert declared(route.handler) is Auth.SESSION, path
            for headers in ({}, {"Authorization": "Bearer test-token"}, {"Cookie": "gateway_console=forged.x"}):
                async with gateway.client.request(route.method, _concrete(path), data=DEEP, headers=headers,
                                                  allow_redirects=False) as resp:
                    assert resp.status == 303 and resp.headers["Location"].startswith("/console/sign-in"), path
            checked += 1
            continue
        assert declared(route.handler) in (Auth.TOKEN, Auth.TOKEN_OR_QUERY, Auth.TOKEN_OR_ROUTING_KEY), path
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            async with gateway.client.request(route.method, _concrete(path), data=DEEP, headers=headers) as resp:
                body = await resp.json()
                if path == "/v2/enqueue":  # the routing key is inside the body: parsed (bounded), no key, 400
                    assert resp.status == 400 and body["status"] == "invalid event", body
                else:
                    assert resp.status == 401 and body["error"] == "unauthorized", (route.method, path, body)
                    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 20


async def test_no_handler_checks_tokens_itself() -> None:
    # One middleware, not a call in each handler: the handlers' modules do not even import the checks.
    web = Path(auth_module.__file__).parent
    for path in [*(web / f"{m}.py" for m in ("alerts", "calls", "integrations", "metrics", "oncall", "queues")),
                 web.parents[1] / "providers" / "sandbox_api.py"]:
        source, module = path.read_text(), path.name
        assert "token_name(" not in source and "bearer(" not in source and "require_token" not in source, module


def test_token_and_routing_key_checks_compare_every_candidate_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = BASE_CONFIG.replace(
        "default_route:",
        "  - {name: second, matchers: [], team: dba, policy: texting, routing_key: second-key-000000000000}\n"
        "default_route:",
    )
    config = load_config(write_config(tmp_path, text))
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        assert isinstance(a, bytes) and isinstance(b, bytes) and len(a) == len(b)  # same length: no length leak
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    keys = [r.routing_key for r in config.routes if r.routing_key]
    assert len(keys) == 2
    for presented in (keys[0], keys[1], "nope", "\ud800", ""):
        calls.clear()
        known = routing_key_known(config, presented)
        assert known == (presented in keys)
        assert len(calls) == 2  # every route compared, whether the first matched or none did
    for presented in ("test-token", "wrong", "Bearer \udcff"):
        calls.clear()
        assert (token_name(config, presented) == "tests") == (presented == "test-token")
        assert len(calls) == len(config.api_tokens)


async def test_a_route_without_a_declaration_needs_a_token(aiohttp_client: object, tmp_path: Path) -> None:
    # Security by default: a new route that forgets to declare anything is not public.
    app = create_app(load_config(write_config(tmp_path)))

    async def extra(request: web.Request) -> web.Response:
        return web.json_response({"reached": True})

    app.router.add_get("/api/v1/extra", extra)
    client = await aiohttp_client(app)  # type: ignore[operator]
    async with client.get("/api/v1/extra") as resp:
        assert resp.status == 401
    async with client.get("/api/v1/extra", headers={"Authorization": "Bearer test-token"}) as resp:
        assert resp.status == 200


async def test_splunk_token_in_the_query_only_on_splunk(gateway: Gateway) -> None:
    for path in ("/api/v1/alerts", "/api/v1/integrations/alertmanager", "/api/v1/calls"):
        status, _ = await gateway.post(f"{path}?token=test-token", {"summary": "x"}, headers={})
        assert status == 401, path
    status, body = await gateway.post("/api/v1/integrations/splunk?token=test-token", data=DEEP, headers={})
    assert status == 400 and body["details"]["reason"] == "too_deep"
