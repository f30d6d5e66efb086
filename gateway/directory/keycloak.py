"""Keycloak as a directory, over its admin REST API with aiohttp.

Three documented endpoints: a client-credentials token from ``{url}/realms/{realm}/protocol/openid-connect/token``
(the client's service account needs the realm-management roles ``view-users`` and ``query-groups``), the group
by path (``GET /admin/realms/{realm}/group-by-path/{path}``), and its direct members
(``GET /admin/realms/{realm}/groups/{id}/members?first=&max=&briefRepresentation=false``, paged; with
``briefRepresentation=true`` the users come without their attributes, where the phone number lives; false is
Keycloak's default for this endpoint, sent anyway so a later default cannot drop them).

Why not python-keycloak: it is a large synchronous-first client (requests, plus httpx for its ``a_`` async
methods, jwcrypto) whose errors we would translate anyway; we need three GETs and a token, on the aiohttp
session the gateway already runs, with our own timeouts and a clear error for a wrong secret.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import aiohttp

from core.clock import Clock, SystemClock
from core.phone import InvalidNumber, mask, normalize
from gateway.config import DirectorySettings
from gateway.directory import (
    DirectoryAuthError,
    DirectoryError,
    DirectoryUnavailable,
    GroupMembers,
    GroupNotFound,
    IgnoredNumber,
    Person,
    Unpageable,
)
from gateway.message_settings import is_address

PAGE_SIZE = 100  # Keycloak's own default for ``max``
TOKEN_MARGIN_S = 30.0  # a token is fetched again this long before it expires


class KeycloakDirectory:
    def __init__(self, settings: DirectorySettings, *, region: str, clock: Clock | None = None,
                 session: aiohttp.ClientSession | None = None) -> None:
        self.name = settings.name
        self.settings = settings
        self.region = region
        self.clock = clock or SystemClock()
        self._session = session
        self._own_session = session is None
        self._token: str | None = None
        self._token_until = 0.0
        self._token_lock = asyncio.Lock()
        self._admin = f"{settings.url}/admin/realms/{quote(settings.realm, safe='')}"

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    # ------------------------------------------------------------- members

    async def members(self, group: str) -> GroupMembers:
        found = await self._get(f"{self._admin}/group-by-path/{_path(group)}", what=f"group {group}")
        if not isinstance(found, dict) or not isinstance(found.get("id"), str):
            raise DirectoryUnavailable(f"group {group}: the answer is not a group")
        users: list[dict[str, Any]] = []
        first = 0
        while True:
            page = await self._get(
                f"{self._admin}/groups/{quote(found['id'], safe='')}/members",
                params={"first": str(first), "max": str(PAGE_SIZE), "briefRepresentation": "false"},
                what=f"members of group {group}",
            )
            if not isinstance(page, list):
                raise DirectoryUnavailable(f"members of group {group}: the answer is not a list")
            users.extend(user for user in page if isinstance(user, dict))
            if len(page) < PAGE_SIZE:
                break
            first += len(page)
        return self._people(users, group)

    def _people(self, users: list[dict[str, Any]], group: str) -> GroupMembers:
        people: list[Person] = []
        unpageable: list[Unpageable] = []
        ignored: list[IgnoredNumber] = []
        attribute = self.settings.phone_attribute
        for user in sorted(users, key=lambda user: str(user.get("username", ""))):
            username = str(user.get("username") or "")
            if not username:
                continue
            if user.get("enabled") is False:
                unpageable.append(Unpageable(username=username, reason="disabled in the directory"))
                continue
            raw_attributes = user.get("attributes")
            attributes: dict[str, Any] = raw_attributes if isinstance(raw_attributes, dict) else {}
            raw_numbers = _values(attributes.get(attribute))
            phones: list[str] = []
            problems: list[str] = []
            for raw in raw_numbers:
                try:
                    phones.append(normalize(raw, self.region))
                except InvalidNumber as exc:
                    problems.append(f"{mask(raw.strip())!r} is not a phone number ({exc.reason})")
            if not phones:  # reported by the roster (log and /readyz) whenever the list changes
                reason = "; ".join(problems) or f"no phone number in attribute {attribute}"
                unpageable.append(Unpageable(username=username, reason=reason))
                continue
            ignored += [IgnoredNumber(username=username, reason=problem) for problem in problems]
            name = " ".join(str(user.get(key) or "").strip() for key in ("firstName", "lastName")).strip()
            people.append(Person(id=f"{self.name}:{username}", username=username, name=name or username,
                                 phones=tuple(dict.fromkeys(phones)), email=self._email(user, attributes)))
        return GroupMembers(people=tuple(people), unpageable=tuple(unpageable), ignored=tuple(ignored))

    def _email(self, user: dict[str, Any], attributes: dict[str, Any]) -> str | None:
        """The user's address, when it is one plain address (a user may edit an attribute: "me@x.com,
        them@y.com" would mail someone else too); else none, and a step notes that it emailed nobody."""
        if self.settings.email_attribute == "email":
            email = user.get("email")
            values = [email] if isinstance(email, str) else []
        else:
            values = _values(attributes.get(self.settings.email_attribute))
        return next((value.strip() for value in values if is_address(value.strip())), None)

    # ---------------------------------------------------------------- HTTP

    async def _get(self, url: str, *, what: str, params: dict[str, str] | None = None) -> Any:
        """GET as the service account; a 401 fetches a new token and tries once more."""
        for attempt in (1, 2):
            token = await self._bearer(fresh=attempt == 2)
            try:
                async with self._http().get(url, params=params, headers={"Authorization": f"Bearer {token}"},
                                            timeout=self._timeout()) as response:
                    if response.status == 401 and attempt == 1:
                        continue  # expired or revoked early: one new token
                    if response.status == 404:
                        raise GroupNotFound(f"{what}: not found in realm {self.settings.realm}")
                    if response.status == 401:  # a token just issued: Keycloak does not take its own token here
                        raise DirectoryAuthError(
                            f"{what}: a new token was refused (401): check that url is the address Keycloak "
                            "issues tokens for (its hostname setting)")
                    if response.status == 403:
                        raise DirectoryAuthError(
                            f"{what}: refused (403): the client's service account needs the "
                            "realm-management roles view-users and query-groups")
                    if response.status >= 400:
                        raise DirectoryUnavailable(f"{what}: HTTP {response.status}")
                    return await response.json(content_type=None)
            except DirectoryError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise DirectoryUnavailable(f"{what}: {_reason(exc)}") from None
        raise AssertionError("unreachable")

    async def _bearer(self, *, fresh: bool) -> str:
        async with self._token_lock:
            if fresh or self._token is None or self.clock.now() >= self._token_until:
                await self._fetch_token()
            assert self._token is not None
            return self._token

    async def _fetch_token(self) -> None:
        settings = self.settings
        url = f"{settings.url}/realms/{quote(settings.realm, safe='')}/protocol/openid-connect/token"
        form = {"grant_type": "client_credentials", "client_id": settings.client_id,
                "client_secret": settings.client_secret}
        try:
            async with self._http().post(url, data=form, timeout=self._timeout()) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = None
                if response.status in (400, 401):
                    error = (body.get("error_description") or body.get("error")) if isinstance(body, dict) else None
                    raise DirectoryAuthError(
                        f"token for client {settings.client_id} refused ({response.status}"
                        f"{': ' + str(error) if error else ''}): check client_id and the client secret")
                if response.status == 404:
                    raise DirectoryUnavailable(f"no realm {settings.realm!r} at {settings.url} (HTTP 404): check "
                                               "url (Keycloak before 17 needs the /auth prefix) and realm")
                if response.status >= 400:
                    raise DirectoryUnavailable(f"token: HTTP {response.status}")
        except DirectoryError:
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DirectoryUnavailable(f"token: {_reason(exc)}") from None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise DirectoryUnavailable("token: the answer holds no access_token")
        token: str = body["access_token"]
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        self._token = token
        # Fetched again before it expires (a margin, but at most half its life for very short tokens).
        self._token_until = self.clock.now() + max(lifetime - TOKEN_MARGIN_S, lifetime / 2)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._own_session = True
        return self._session

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.settings.timeout_s)


def _path(group: str) -> str:
    """``/sre/companyapp2`` -> ``sre/companyapp2``, each segment escaped (a group name may hold spaces)."""
    return "/".join(quote(part, safe="") for part in group.strip("/").split("/"))


def _values(raw: object) -> list[str]:
    """A Keycloak attribute is a list of strings (a single string is accepted too)."""
    if isinstance(raw, str):
        return [raw] if raw.strip() else []
    if isinstance(raw, list):
        return [item for item in raw if isinstance(item, str) and item.strip()]
    return []


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return " ".join(str(exc).split()) or type(exc).__name__
