"""A Keycloak admin-API peer on loopback, written from Keycloak's documented endpoints.

- ``POST /realms/{realm}/protocol/openid-connect/token`` with ``grant_type=client_credentials`` (client id and
  secret in the form or as HTTP Basic): ``{"access_token", "expires_in", "token_type": "Bearer", ...}``; a wrong
  client or secret is 401 ``{"error": "unauthorized_client", "error_description": "Invalid client or Invalid
  client credentials"}``; another grant type is 400 ``unsupported_grant_type``; an unknown realm is 404.
- ``GET /admin/realms/{realm}/group-by-path/{path}``: the GroupRepresentation, 404 ``{"error": "Group path does
  not exist"}`` for an unknown path.
- ``GET /admin/realms/{realm}/groups/{id}/members?first=&max=&briefRepresentation=``: the group's direct members
  as UserRepresentations ordered by username, ``max`` 100 by default; attributes only when
  ``briefRepresentation=false``.
- Admin calls without a valid bearer token: 401 ``{"error": "HTTP 401 Unauthorized"}``; with a token whose
  service account lacks the realm-management roles (``forbidden``): 403 ``{"error": "HTTP 403 Forbidden"}``;
  ``wrong_issuer``: every token is refused with 401 (Keycloak reached at an address other than its hostname).

``down`` answers every request with 503 (the directory is away); ``hang`` accepts requests and never answers
(until the peer closes); ``revoke_tokens()`` makes every token issued so
far invalid (as an expired one is).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(kw_only=True)
class Group:
    id: str
    path: str
    members: list[str] = field(default_factory=list)  # usernames


class KeycloakPeer:
    def __init__(self, *, realm: str = "company", client_id: str = "oncall-gateway", secret: str = "s3cret",
                 token_lifetime: int = 300) -> None:
        self.realm = realm
        self.client_id = client_id
        self.secret = secret
        self.token_lifetime = token_lifetime
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, Group] = {}  # path -> group
        self.tokens: set[str] = set()
        self.down = False
        self.forbidden = False  # the service account has no view-users / query-groups role
        self.wrong_issuer = False  # tokens are issued for another hostname: the admin API refuses them all
        self.hang = False
        self._release = asyncio.Event()  # set on close: hanging requests end
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, query
        self._server: TestServer | None = None

    # ------------------------------------------------------------ the directory's contents

    def add_user(self, username: str, *, first: str = "", last: str = "", phones: list[str] | None = None,
                 email: str | None = None, enabled: bool = True,
                 attributes: dict[str, list[str]] | None = None) -> None:
        attrs = dict(attributes or {})
        if phones is not None:
            attrs["phoneNumber"] = phones
        self.users[username] = {
            "id": str(uuid.uuid4()), "username": username, "firstName": first, "lastName": last,
            "email": email, "emailVerified": email is not None, "enabled": enabled, "createdTimestamp": 0,
            "totp": False, "disableableCredentialTypes": [], "requiredActions": [], "notBefore": 0,
            "access": {"manageGroupMembership": True, "view": True, "mapRoles": True, "impersonate": False,
                       "manage": True},
            "attributes": attrs,
        }

    def set_group(self, path: str, members: list[str]) -> None:
        group = self.groups.get(path)
        if group is None:
            self.groups[path] = Group(id=str(uuid.uuid4()), path=path, members=list(members))
        else:
            group.members = list(members)

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def count(self, suffix: str) -> int:
        return sum(1 for _, path, _ in self.requests if path.endswith(suffix))

    # ------------------------------------------------------------ server

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/realms/{realm}/protocol/openid-connect/token", self._token)
        app.router.add_get("/admin/realms/{realm}/group-by-path/{path:.*}", self._group_by_path)
        app.router.add_get("/admin/realms/{realm}/groups/{id}/members", self._members)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return str(self._server.make_url("")).rstrip("/")

    async def close(self) -> None:
        self._release.set()
        if self._server is not None:
            await self._server.close()

    # ------------------------------------------------------------ handlers

    async def _seen(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path, dict(request.query)))
        if self.hang:
            await self._release.wait()
        if self.down:
            raise web.HTTPServiceUnavailable(text="Service Unavailable")

    def _realm(self, request: web.Request) -> None:
        if request.match_info["realm"] != self.realm:
            raise web.HTTPNotFound(text='{"error":"Realm does not exist"}', content_type="application/json")

    async def _token(self, request: web.Request) -> web.Response:
        await self._seen(request)
        self._realm(request)
        form = await request.post()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": "Unsupported grant_type"}, status=400)
        if client_id != self.client_id or not isinstance(secret, str) or not secrets.compare_digest(secret,
                                                                                                     self.secret):
            return web.json_response({"error": "unauthorized_client",
                                      "error_description": "Invalid client or Invalid client credentials"},
                                     status=401)
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": self.token_lifetime,
                                  "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy": 0,
                                  "scope": "profile email"})

    def _authorized(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header[7:] not in self.tokens or self.wrong_issuer:
            raise web.HTTPUnauthorized(text='{"error":"HTTP 401 Unauthorized"}', content_type="application/json")
        if self.forbidden:
            raise web.HTTPForbidden(text='{"error":"HTTP 403 Forbidden"}', content_type="application/json")

    async def _group_by_path(self, request: web.Request) -> web.Response:
        await self._seen(request)
        self._realm(request)
        self._authorized(request)
        path = "/" + unquote(request.match_info["path"]).strip("/")
        group = self.groups.get(path)
        if group is None:
            return web.json_response({"error": "Group path does not exist"}, status=404)
        return web.json_response({"id": group.id, "name": path.rsplit("/", 1)[-1], "path": path,
                                  "subGroupCount": 0, "subGroups": [], "attributes": {}, "realmRoles": [],
                                  "clientRoles": {}, "access": {"view": True, "manage": True,
                                                                "manageMembership": True}})

    async def _members(self, request: web.Request) -> web.Response:
        await self._seen(request)
        self._realm(request)
        self._authorized(request)
        group = next((g for g in self.groups.values() if g.id == request.match_info["id"]), None)
        if group is None:
            return web.json_response({"error": "Could not find group by id"}, status=404)
        first = int(request.query.get("first", "0"))
        size = int(request.query.get("max", "100"))
        brief = request.query.get("briefRepresentation", "false") == "true"
        users = [self.users[name] for name in sorted(group.members) if name in self.users][first:first + size]
        if brief:
            users = [{key: value for key, value in user.items() if key != "attributes"} for user in users]
        return web.json_response(users)
