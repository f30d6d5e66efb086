"""Directory teams (Keycloak): the client against a loopback admin-API peer, the cache (in-process and a real
Redis), the roster's refresh on a fake clock, and the whole story through the app and the sandbox phones."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from core.clock import FakeClock, iso
from gateway.app import create_app
from gateway.config import ConfigError, DirectorySettings, load_config
from gateway.directory import DirectoryAuthError, DirectoryUnavailable, GroupMembers, GroupNotFound, Person
from gateway.directory.cache import Entry, MemoryCache, RedisCache, decode, encode
from gateway.directory.keycloak import KeycloakDirectory
from gateway.directory.roster import Roster
from tests.peers.keycloak import KeycloakPeer
from tests.peers.smtp_server import PASSWORD, USER, SmtpServer
from tests.redis_server import redis_server
from tests.support import AUTH, TOKEN, Gateway, eventually, write_config

ALICE, BOB = "+15550000101", "+15550000102"
SECRET_ENV = "GATEWAY_TEST_KEYCLOAK_SECRET"
GROUP = "/sre/companyapp2"


def _people(peer: KeycloakPeer) -> None:
    peer.add_user("alice", first="Alice", last="Archer", phones=[ALICE], email="alice@example.com")
    peer.add_user("bob", first="Bob", last="Baker", phones=["(555) 000-0102"])  # national: read in US
    peer.add_user("carol", first="Carol")  # no number at all
    peer.add_user("dave", phones=["12"])  # not a phone number
    peer.set_group(GROUP, ["dave", "bob", "carol", "alice"])
    peer.add_user("erin", first="Erin", phones=["+15550000105"])
    peer.set_group("/dbas", ["erin"])


@pytest.fixture
async def peer() -> AsyncIterator[KeycloakPeer]:
    keycloak = KeycloakPeer()
    _people(keycloak)
    keycloak.url = await keycloak.start()  # type: ignore[attr-defined]
    yield keycloak
    await keycloak.close()


def _url(peer: KeycloakPeer) -> str:
    return str(peer.url)  # type: ignore[attr-defined]


def _settings(peer: KeycloakPeer, **changes: Any) -> DirectorySettings:
    values: dict[str, Any] = dict(name="corp", kind="keycloak", url=_url(peer), realm="company",
                                  client_id="oncall-gateway", client_secret="s3cret", cache_ttl_s=300.0,
                                  timeout_s=5.0)
    values.update(changes)
    return DirectorySettings(**values)


def _config_text(url: str, *, ttl: str = "5m", cache: str = "", teams: str = "") -> str:
    return f"""
store: {{path: gateway.db}}
api_tokens: [{{name: tests, token: {TOKEN}}}]
directories:
  corp:
    kind: keycloak
    url: {url}
    realm: company
    client_id: oncall-gateway
    client_secret_env: {SECRET_ENV}
    cache_ttl: {ttl}
    timeout: 5s
{cache}
teams:
  companyapp2-sre:
    directory: {{name: corp, group: {GROUP}}}
{teams}
policies:
  everyone:
    steps: [{{notify: team, via: call, timeout: 60s}}]
  oncall:
    steps: [{{notify: primary, via: call, timeout: 60s}}, {{notify: secondary, via: call, timeout: 60s}}]
  texting:
    steps: [{{notify: team, via: sms, timeout: 60s}}]
  dbas:
    steps: [{{notify: "directory:corp:/dbas", via: call, timeout: 60s}}]
routes:
  - {{matchers: ['receiver="dbas"'], team: companyapp2-sre, policy: dbas}}
  - {{matchers: ['receiver="prod-companyapp2-critical-sre"'], team: companyapp2-sre, policy: everyone,
     priority: high}}
  - {{matchers: ['via="sms"'], team: companyapp2-sre, policy: texting}}
default_route: {{team: companyapp2-sre, policy: oncall}}
"""


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "s3cret")


@pytest.fixture
async def story(aiohttp_client: Callable[..., Any], tmp_path: Path, peer: KeycloakPeer,
                secret_env: None) -> AsyncIterator[Gateway]:
    config = load_config(write_config(tmp_path, _config_text(_url(peer))))
    client = await aiohttp_client(create_app(config, clock=FakeClock()))
    yield Gateway(client, client.app[_clock_key()])


def _clock_key() -> Any:
    from gateway.web.keys import CLOCK

    return CLOCK


async def _readyz(gateway: Gateway) -> tuple[int, Any]:
    return await gateway.get("/readyz", headers={})


# ------------------------------------------------------------------ the Keycloak client


async def test_members_are_people_with_e164_numbers_in_username_order(peer: KeycloakPeer) -> None:
    directory = KeycloakDirectory(_settings(peer), region="US")
    try:
        members = await directory.members(GROUP)
    finally:
        await directory.close()
    assert [(p.id, p.name, p.phones, p.email) for p in members.people] == [
        ("corp:alice", "Alice Archer", (ALICE,), "alice@example.com"),
        ("corp:bob", "Bob Baker", (BOB,), None),
    ]
    assert [(u.username, u.reason) for u in members.unpageable] == [
        ("carol", "no phone number in attribute phoneNumber"),
        ("dave", "'***' is not a phone number (too short)"),
    ]
    members_calls = [query for _, path, query in peer.requests if path.endswith("/members")]
    assert members_calls == [{"first": "0", "max": "100", "briefRepresentation": "false"}]


async def test_an_address_a_user_could_have_edited_into_several_is_not_mailed(peer: KeycloakPeer) -> None:
    peer.add_user("frank", phones=["+15550000106"], email="frank@example.com, mallory@example.net")
    peer.add_user("gina", phones=["+15550000107"],
                  attributes={"workMail": ["Gina <x@example.net>", " gina@example.com "]})
    peer.set_group("/mail", ["frank", "gina"])
    for attribute, expected in (("email", [None, None]), ("workMail", [None, "gina@example.com"])):
        directory = KeycloakDirectory(_settings(peer, email_attribute=attribute), region="US")
        try:
            members = await directory.members("/mail")
        finally:
            await directory.close()
        assert [p.email for p in members.people] == expected, attribute


async def test_a_large_group_is_read_page_by_page_with_one_token(peer: KeycloakPeer) -> None:
    names = [f"user{index:03d}" for index in range(250)]
    for index, name in enumerate(names):
        peer.add_user(name, phones=[f"+1555100{index:04d}"])
    peer.set_group("/everyone", names)
    directory = KeycloakDirectory(_settings(peer), region="US")
    try:
        members = await directory.members("/everyone")
        again = await directory.members("/everyone")
    finally:
        await directory.close()
    assert [p.username for p in members.people] == names and again == members
    firsts = [query["first"] for _, path, query in peer.requests if path.endswith("/members")]
    assert firsts == ["0", "100", "200", "0", "100", "200"]
    assert peer.count("/openid-connect/token") == 1


async def test_a_token_refused_by_the_admin_api_is_fetched_again_once(peer: KeycloakPeer) -> None:
    directory = KeycloakDirectory(_settings(peer), region="US")
    try:
        await directory.members(GROUP)
        peer.revoke_tokens()  # as if it had expired early
        members = await directory.members(GROUP)
    finally:
        await directory.close()
    assert len(members.people) == 2
    assert peer.count("/openid-connect/token") == 2


async def test_a_token_is_fetched_again_before_it_expires(peer: KeycloakPeer) -> None:
    clock = FakeClock()
    peer.token_lifetime = 60
    directory = KeycloakDirectory(_settings(peer), region="US", clock=clock)
    try:
        await directory.members(GROUP)
        await clock.advance(20)
        await directory.members(GROUP)
        assert peer.count("/openid-connect/token") == 1
        await clock.advance(15)  # 35 s: within 30 s of its expiry
        await directory.members(GROUP)
    finally:
        await directory.close()
    assert peer.count("/openid-connect/token") == 2


async def test_a_wrong_secret_an_unknown_group_and_an_outage_are_told_apart(peer: KeycloakPeer) -> None:
    wrong = KeycloakDirectory(_settings(peer, client_secret="wrong"), region="US")
    right = KeycloakDirectory(_settings(peer), region="US")
    try:
        with pytest.raises(DirectoryAuthError, match=r"Invalid client or Invalid client credentials.*check client_id"):
            await wrong.members(GROUP)
        with pytest.raises(GroupNotFound, match="group /nope: not found in realm company"):
            await right.members("/nope")
        peer.forbidden = True
        with pytest.raises(DirectoryAuthError, match=r"group /sre/companyapp2: refused \(403\): .* view-users"):
            await right.members(GROUP)
        peer.forbidden = False
        peer.wrong_issuer = True
        with pytest.raises(DirectoryAuthError, match=r"a new token was refused \(401\): check that url"):
            await right.members(GROUP)
        peer.wrong_issuer = False
        peer.down = True
        with pytest.raises(DirectoryUnavailable, match="HTTP 503"):
            await right.members(GROUP)
    finally:
        await wrong.close()
        await right.close()
    gone = KeycloakDirectory(_settings(peer, url="http://127.0.0.1:9"), region="US")
    try:
        with pytest.raises(DirectoryUnavailable, match="token: "):
            await gone.members(GROUP)
    finally:
        await gone.close()


# ------------------------------------------------------------------ the roster and its cache


def _roster(peer: KeycloakPeer, tmp_path: Path, clock: FakeClock, cache: Any, *, ttl: str = "5m",
            base: str | None = None) -> Roster:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = load_config(write_config(tmp_path, _config_text(base or _url(peer), ttl=ttl)))
    directories = {"corp": KeycloakDirectory(config.directories["corp"], region="US", clock=clock)}
    return Roster(config, directories=directories, cache=cache, clock=clock)


async def test_a_group_change_shows_after_the_cache_ttl(peer: KeycloakPeer, tmp_path: Path,
                                                         secret_env: None) -> None:
    clock = FakeClock()
    roster = _roster(peer, tmp_path, clock, MemoryCache())
    changed: list[str] = []
    roster.on_change = changed.append
    await roster.start()
    try:
        assert roster.members("companyapp2-sre") == ("corp:alice", "corp:bob")
        peer.set_group(GROUP, ["bob"])
        await clock.advance(299)
        assert roster.members("companyapp2-sre") == ("corp:alice", "corp:bob")  # within the TTL: no lookup
        assert peer.count("/group-by-path/sre/companyapp2") == 1
        await clock.advance(2)
        await eventually(lambda: _async(roster.members("companyapp2-sre") == ("corp:bob",)))
        assert changed == ["companyapp2-sre", "companyapp2-sre"]  # at start, then the change
        assert roster.engineer("corp:alice") is None and roster.by_number(BOB) == roster.engineer("corp:bob")
    finally:
        await roster.close()


async def test_a_number_that_is_not_one_is_reported_though_the_member_is_paged_on_another(
    peer: KeycloakPeer, tmp_path: Path, secret_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    peer.add_user("fay", first="Fay", phones=["+1 555 000 01", "+15550000106"])  # a typo in the first
    peer.set_group("/dbas", ["erin", "fay"])
    clock = FakeClock()
    roster = _roster(peer, tmp_path, clock, MemoryCache())
    with caplog.at_level(logging.WARNING, logger="gateway.directory"):
        await roster.start()
        try:
            await clock.advance(301)  # a second fetch, the same answer: not logged again
            await eventually(lambda: _async(peer.count("/group-by-path/dbas") == 2))
            fay = roster.engineer("corp:fay")
            assert fay is not None and fay.phones == ("+15550000106",)
            detail = next(d for d in roster.details() if d["group"] == "/dbas")
            assert detail["ignored_numbers"] == [{"username": "fay",
                                                  "reason": "'+1 55***0 01' is not a phone number (too short)"}]
        finally:
            await roster.close()
    assert caplog.text.count("fay in group /dbas is paged on their other number(s); one is left out: "
                             "'+1 55***0 01' is not a phone number (too short)") == 1


async def _async(value: Any) -> Any:
    await asyncio.sleep(0)
    return value


async def test_two_gateways_share_the_redis_cache_and_its_last_known_copy(
    peer: KeycloakPeer, tmp_path: Path, secret_env: None
) -> None:
    clock = FakeClock()
    async with redis_server(tmp_path / "redis") as url:
        first = _roster(peer, tmp_path, clock, RedisCache(url))
        await first.load()
        await first.close()
        assert peer.count("/group-by-path/sre/companyapp2") == 1

        second = _roster(peer, tmp_path, clock, RedisCache(url))  # another gateway, within the TTL
        await second.load()
        await second.close()
        assert peer.count("/group-by-path/sre/companyapp2") == 1  # answered by Redis, not by Keycloak
        assert second.members("companyapp2-sre") == ("corp:alice", "corp:bob")
        assert second.details()[0]["status"] == "ok"

        peer.down = True
        await clock.advance(3600)  # long past the TTL, and Keycloak is away
        third = _roster(peer, tmp_path, clock, RedisCache(url))  # a gateway (re)started now
        await third.load()
        await third.close()
        assert third.members("companyapp2-sre") == ("corp:alice", "corp:bob")
        detail = third.details()[0]
        assert detail["status"] == "stale" and "HTTP 503" in detail["error"] and detail["cache"] == "redis"
        assert third.checks()[f"directory corp {GROUP}"] == "ok"  # a last-known copy: still ready


def test_a_cached_copy_this_version_cannot_use_is_not_used() -> None:
    alice = Person(id="corp:alice", username="alice", name="Alice", phones=(ALICE,))
    entry = Entry(members=GroupMembers(people=(alice,)), fetched_at=5.0)
    assert decode(encode(entry)) == entry
    for broken in ('{"fetched_at": 5, "people": []}', "not json", '{"fetched_at": 5, "people": [], "unpageable": 3}',
                   encode(Entry(members=GroupMembers(people=(replace(alice, phones=()),)), fetched_at=5.0)),
                   encode(Entry(members=GroupMembers(people=(replace(alice, phones=("5550101",)),)), fetched_at=5.0))):
        assert decode(broken) is None, broken


async def test_gateways_sharing_a_redis_but_not_a_keycloak_do_not_share_members(
    peer: KeycloakPeer, tmp_path: Path, secret_env: None
) -> None:
    staging = KeycloakPeer()  # another Keycloak (say staging's) with a group at the same path
    staging.add_user("tess", first="Tess", phones=["+15550000120"])
    staging.set_group(GROUP, ["tess"])
    staging_url = await staging.start()
    clock = FakeClock()
    try:
        async with redis_server(tmp_path / "redis") as url:
            prod = _roster(peer, tmp_path / "prod", clock, RedisCache(url))
            await prod.load()
            await prod.close()
            other = _roster(staging, tmp_path / "staging", clock, RedisCache(url), base=staging_url)
            await other.load()
            await other.close()
            assert other.members("companyapp2-sre") == ("corp:tess",)
            assert staging.count("/group-by-path/sre/companyapp2") == 1
            again = _roster(peer, tmp_path / "prod", clock, RedisCache(url))  # prod restarted: its own copy
            await again.load()
            await again.close()
            assert again.members("companyapp2-sre") == ("corp:alice", "corp:bob")
            assert peer.count("/group-by-path/sre/companyapp2") == 1
    finally:
        await staging.close()


# ------------------------------------------------------------------ the whole story


async def test_a_directory_team_resolves_its_members_and_pages_them(story: Gateway) -> None:
    status, body = await story.get("/api/v1/oncall?team=companyapp2-sre")
    assert status == 200, body
    team = body["teams"][0]
    assert team["primary"] == {"id": "corp:alice", "name": "Alice Archer", "phone": "+1555***0101"}
    assert team["secondary"]["id"] == "corp:bob"

    status, body = await story.post("/api/v1/alerts", {"summary": "checkout down",
                                                       "labels": {"receiver": "prod-companyapp2-critical-sre"}})
    assert status == 202, body
    await story.ringing(ALICE)
    await story.ringing(BOB)
    await story.post(f"/api/v1/sandbox/phones/{BOB}/answer")
    await story.post(f"/api/v1/sandbox/phones/{BOB}/press", {"digits": "1"})
    alert = await story.alert_where(body["id"], lambda a: a["status"] == "acknowledged")
    assert alert["acknowledged_by"] == "corp:bob"
    assert any("Alice Archer (+1555***0101), Bob Baker (+1555***0102)" in t["message"] for t in alert["timeline"])


async def test_an_sms_reply_from_a_directory_person_acknowledges(story: Gateway) -> None:
    status, body = await story.post("/api/v1/alerts", {"summary": "disk full", "labels": {"via": "sms"}})
    assert status == 202, body
    await eventually(lambda: _texted(story, ALICE))
    status, reply = await story.post(f"/api/v1/sandbox/phones/{ALICE}/reply", {"text": "ack"})
    assert status == 200 and reply["reply"].startswith(f"Alert #{body['id']} acknowledged")
    alert = await story.alert(body["id"])
    assert alert["acknowledged_by"] == "corp:alice"
    assert any("acknowledged by Alice Archer (SMS reply)" in t["message"] for t in alert["timeline"])


async def _texted(gateway: Gateway, number: str) -> bool:
    return bool((await gateway.phone(number))["sms"])


async def test_members_without_a_valid_number_are_reported_not_paged(
    aiohttp_client: Callable[..., Any], tmp_path: Path, peer: KeycloakPeer, secret_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = load_config(write_config(tmp_path, _config_text(_url(peer))))
    with caplog.at_level(logging.WARNING, logger="gateway.directory"):
        client = await aiohttp_client(create_app(config, clock=FakeClock()))
    gateway = Gateway(client, client.app[_clock_key()])
    assert "carol in group /sre/companyapp2 cannot be paged: no phone number in attribute phoneNumber" in caplog.text
    assert "dave in group /sre/companyapp2 cannot be paged: '***' is not a phone number (too short)" in caplog.text
    assert caplog.text.count("carol in group") == 1
    status, body = await _readyz(gateway)  # public: how many, not who
    assert status == 200, body
    assert body["directories"][0]["unpageable_count"] == 2 and "unpageable" not in body["directories"][0]
    assert "carol" not in str(body) and "dave" not in str(body)
    status, body = await gateway.get("/readyz")  # with an API token: who, and why
    assert status == 200, body
    assert body["directories"][0]["unpageable"] == [
        {"username": "carol", "reason": "no phone number in attribute phoneNumber"},
        {"username": "dave", "reason": "'***' is not a phone number (too short)"},
    ]
    status, body = await gateway.post("/api/v1/alerts", {"summary": "x", "labels": {
        "receiver": "prod-companyapp2-critical-sre"}})
    alert = await gateway.alert_where(body["id"], lambda a: len(a["pages"]) == 2)
    assert sorted(p["engineer"] for p in alert["pages"]) == ["corp:alice", "corp:bob"]


async def test_a_group_change_reaches_oncall_after_the_ttl(story: Gateway, peer: KeycloakPeer) -> None:
    peer.set_group(GROUP, ["bob"])
    await story.clock.advance(301)

    async def only_bob() -> bool:
        _, body = await story.get("/api/v1/oncall?team=companyapp2-sre")
        team = body["teams"][0]
        return bool(team["primary"]["id"] == "corp:bob" and team["secondary"] is None)

    await eventually(only_bob)


async def test_the_directory_going_down_keeps_paging_the_last_known_members(
    story: Gateway, peer: KeycloakPeer, caplog: pytest.LogCaptureFixture
) -> None:
    peer.down = True
    with caplog.at_level(logging.WARNING, logger="gateway.directory"):
        await story.clock.advance(301)

        async def stale() -> Any:
            _, body = await _readyz(story)
            return body if body.get("directories", [{}])[0].get("status") == "stale" else None

        body = await eventually(stale)
    assert body["status"] == "ready" and body["checks"][f"directory corp {GROUP}"] == "ok"
    assert "HTTP 503" in body["directories"][0]["error"] and body["directories"][0]["members"] == 2
    assert "directory corp unreachable" in caplog.text and "keeps its last-known 2 member(s)" in caplog.text
    status, alert = await story.post("/api/v1/alerts", {"summary": "still paging", "labels": {
        "receiver": "prod-companyapp2-critical-sre"}})
    assert status == 202, alert
    await story.ringing(ALICE)
    await story.ringing(BOB)

    peer.down = False  # back: the next round says so
    await story.clock.advance(31)

    async def fresh() -> bool:
        _, body = await _readyz(story)
        return bool(body["directories"][0]["status"] == "ok")

    await eventually(fresh)


async def test_a_group_never_fetched_makes_the_gateway_not_ready(
    aiohttp_client: Callable[..., Any], tmp_path: Path, peer: KeycloakPeer, secret_env: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer.down = True
    config = load_config(write_config(tmp_path, _config_text(_url(peer))))
    with caplog.at_level(logging.ERROR, logger="gateway.directory"):
        client = await aiohttp_client(create_app(config, clock=FakeClock()))
    assert ("group /sre/companyapp2 could not be fetched (token: HTTP 503) and no copy is known: "
            "team(s) companyapp2-sre have nobody to page") in caplog.text
    assert ("group /dbas could not be fetched (token: HTTP 503) and no copy is known: the policy steps naming it "
            "have nobody to page") in caplog.text
    async with client.get("/readyz") as response:
        body = await response.json()
    assert response.status == 503
    assert body["checks"][f"directory corp {GROUP}"].startswith("error: no members known (")
    assert body["directories"][0]["status"] == "unavailable"
    async with client.get("/api/v1/oncall?team=companyapp2-sre", headers=AUTH) as response:
        assert (await response.json())["teams"][0]["primary"] is None


async def _cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_check_directory_lists_members_and_names_a_bad_secret(
    peer: KeycloakPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path, _config_text(_url(peer)))
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    code, out, err = await _cli("check-directory", str(path))
    assert code == 0, err
    assert "corp:alice  Alice Archer  +1555***0101" in out and "corp:bob  Bob Baker  +1555***0102" in out
    assert "carol cannot be paged: no phone number in attribute phoneNumber" in err
    code, out, _ = await _cli("oncall", str(path), "--config-only")
    assert code == 0 and "companyapp2-sre  Alice Archer (+1555***0101)  Bob Baker (+1555***0102)" in out

    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    code, out, err = await _cli("check-directory", str(path))
    assert code == 1
    assert ("error: corp /sre/companyapp2 (team companyapp2-sre): token for client oncall-gateway refused "
            "(401: Invalid client or Invalid client credentials): check client_id and the client secret") in err


async def test_check_directory_checks_a_group_only_a_policy_step_names(
    peer: KeycloakPeer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _config_text(_url(peer)).replace(f"directory: {{name: corp, group: {GROUP}}}", "members: [ann]")
    text = text.replace("directories:", "engineers: {ann: {name: Ann, phones: ['+15550000199']}}\ndirectories:")
    path = write_config(tmp_path, text)
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    code, out, err = await _cli("check-directory", str(path))
    assert code == 0, err
    assert "corp /dbas (policy steps): 1 member(s) to page" in out and "corp:erin  Erin  +1555***0105" in out
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    code, _, err = await _cli("check-directory", str(path))
    assert code == 1 and "error: corp /dbas (policy steps): token for client oncall-gateway refused" in err


# ------------------------------------------------------------------ config


def _problems(tmp_path: Path, text: str) -> list[str]:
    try:
        load_config(write_config(tmp_path, text))
    except ConfigError as exc:
        return exc.problems
    return []


def test_directory_config_is_checked_with_key_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    text = _config_text("ftp://sso.example.com", ttl="soon", teams="""
  both:
    members: [x]
    directory: {name: corp, group: /a}
  elsewhere:
    directory: {name: ldap, group: a}
  root:
    directory: {name: corp, group: /}
  gap:
    directory: {name: corp, group: /sre//x}
""").replace("directory:corp:/dbas", "directory:ldap:/dbas").replace("notify: team, via: sms",
                                                                  'notify: "directory:corp:/", via: sms')
    problems = [p.split(": ", 1)[1] for p in _problems(tmp_path, text)]
    assert "directories.corp.url: 'ftp://sso.example.com' is not an http(s) URL like https://oncall.example.com" \
        in problems
    assert f"directories.corp.client_secret_env: environment variable {SECRET_ENV} is not set or empty" in problems
    assert any(p.startswith("directories.corp.cache_ttl: ") for p in problems)
    assert "teams.both: set either members or directory, not both" in problems
    assert "teams.elsewhere.directory.name: unknown directory 'ldap' (directories: corp)" in problems
    assert "teams.elsewhere.directory.group: a group path starts with '/', e.g. /sre/a" in problems
    assert "policies.dbas.steps[0].notify: unknown directory 'ldap' (directories: corp)" in problems
    assert "teams.root.directory.group: '/' is not a group path like /sre/companyapp2" in problems
    assert "teams.gap.directory.group: '/sre//x' is not a group path like /sre/companyapp2" in problems
    assert ("policies.texting.steps[0].notify: expected directory:corp:/<group path>, e.g. directory:corp:/sre/dbas"
            in problems)


def test_cache_url_is_checked(tmp_path: Path, secret_env: None) -> None:
    base = _config_text("https://sso.example.com")
    assert _problems(tmp_path, base + "cache: {url: 'http://x'}\n")[0].endswith(
        "cache.url: 'http://x' is not a Redis URL like redis://127.0.0.1:6379/0")
    assert "password_env" in _problems(tmp_path, base + "cache: {url: 'redis://u:pw@x:6379/0'}\n")[0]
    assert "password_env" in _problems(tmp_path, base + "cache: {url: 'redis://x:6379/0?password=pw'}\n")[0]
    assert _problems(tmp_path, base + "cache: {url: 'redis://x:6379/cache'}\n")[0].endswith(
        "cache.url: the path must be a database number like /0, not '/cache'")
    config = load_config(write_config(tmp_path, base + "cache: {url: 'redis://10.0.0.7:6379/1'}\n"))
    assert config.cache_url == "redis://10.0.0.7:6379/1"
    team = config.teams["companyapp2-sre"]
    assert team.members == () and team.directory is not None and team.directory.group == GROUP


async def test_the_console_and_overrides_know_directory_people(story: Gateway) -> None:
    client = story.client
    answer = await client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)
    assert answer.status == 303
    async with client.get("/console/oncall") as response:
        html = await response.text()
    assert response.status == 200, html
    assert "Alice Archer" in html and "Bob Baker" in html
    assert ">Alice Archer</span>" in html and ">corp:alice</span>" not in html  # the shifts' bars, by name
    moment = story.clock.now()
    status, body = await story.post("/api/v1/teams/companyapp2-sre/overrides", {
        "engineer": "corp:bob", "role": "primary", "start": iso(moment), "end": iso(moment + 3600)})
    assert status == 201, body
    assert body["engineer"] == {"id": "corp:bob", "name": "Bob Baker"}
    _, listed = await story.get("/api/v1/teams/companyapp2-sre/overrides")
    assert [item["engineer"]["name"] for item in listed["overrides"]] == ["Bob Baker"]
    _, body = await story.get("/api/v1/oncall?team=companyapp2-sre")
    assert body["teams"][0]["primary"]["id"] == "corp:bob" and body["teams"][0]["secondary"]["id"] == "corp:alice"
    status, body = await story.post("/api/v1/teams/companyapp2-sre/overrides", {
        "engineer": "corp:carol", "role": "primary", "start": iso(moment), "end": iso(moment + 3600)})
    assert status == 422 and "must be a member of team companyapp2-sre (corp:alice, corp:bob)" in body["message"]


async def test_the_first_lookup_waits_with_a_timeout_and_a_dead_redis_is_only_a_warning(
    peer: KeycloakPeer, tmp_path: Path, secret_env: None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    config = load_config(write_config(tmp_path, _config_text(_url(peer)).replace("timeout: 5s", "timeout: 1s")))
    directories = {"corp": KeycloakDirectory(config.directories["corp"], region="US", clock=clock)}
    dead_redis = RedisCache(f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=1)
    roster = Roster(config, directories=directories, cache=dead_redis, clock=clock)
    peer.hang = True
    started = asyncio.get_running_loop().time()
    with caplog.at_level(logging.WARNING, logger="gateway.directory"):
        await roster.start()  # Keycloak accepts and never answers: the start goes on without the group
    try:
        assert asyncio.get_running_loop().time() - started < 30  # bounded (1 s per request here), not stuck
        assert roster.members("companyapp2-sre") == ()
        assert roster.checks()[f"directory corp {GROUP}"] == "error: no members known (token: timed out)"
        peer.hang = False
        await clock.advance(30)  # the next try
        await eventually(lambda: _async(roster.members("companyapp2-sre") == ("corp:alice", "corp:bob")))
        assert "directory cache (redis): could not read group /sre/companyapp2" in caplog.text
    finally:
        await roster.close()


async def test_a_directory_that_hangs_does_not_hold_up_another_directorys_refresh(
    peer: KeycloakPeer, tmp_path: Path, secret_env: None
) -> None:
    lab = KeycloakPeer()
    lab.add_user("lee", first="Lee", phones=["+15550000111"])
    lab.add_user("max", first="Max", phones=["+15550000112"])
    lab.set_group("/lab", ["lee"])
    lab_url = await lab.start()
    text = _config_text(_url(peer), teams="""
  lab-team:
    directory: {name: lab, group: /lab}
""").replace("timeout: 5s", "timeout: 60s").replace("directories:", f"""directories:
  lab:
    kind: keycloak
    url: {lab_url}
    realm: company
    client_id: oncall-gateway
    client_secret_env: {SECRET_ENV}""")
    config = load_config(write_config(tmp_path, text))
    clock = FakeClock()
    directories = {name: KeycloakDirectory(settings, region="US", clock=clock)
                   for name, settings in config.directories.items()}
    roster = Roster(config, directories=directories, cache=MemoryCache(), clock=clock)
    await roster.start()
    try:
        assert roster.members("lab-team") == ("lab:lee",)
        peer.hang = True  # corp's Keycloak accepts and never answers (each request waits its 60 s)
        lab.set_group("/lab", ["max"])
        await clock.advance(301)
        await eventually(lambda: _async(roster.members("lab-team") == ("lab:max",)), timeout=10)
        lab.set_group("/lab", ["lee"])  # and the round after: corp's first refresh still hangs
        await clock.advance(301)
        await eventually(lambda: _async(roster.members("lab-team") == ("lab:lee",)), timeout=10)
        assert roster.members("companyapp2-sre") == ("corp:alice", "corp:bob")
    finally:
        await roster.close()
        await lab.close()


async def test_a_start_that_fails_later_still_closes_the_directory_refresh(
    tmp_path: Path, peer: KeycloakPeer, secret_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp import web

    from gateway.overrides import Schedule
    from gateway.web.keys import ROSTER

    async def broken(self: Schedule) -> None:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(Schedule, "load", broken)  # a step after the directory's start fails
    app = create_app(load_config(write_config(tmp_path, _config_text(_url(peer)))), clock=FakeClock())
    runner = web.AppRunner(app)
    with pytest.raises(RuntimeError, match="the store went away"):
        await runner.setup()
    await runner.cleanup()
    roster = app[ROSTER]
    assert roster.members("companyapp2-sre") == ("corp:alice", "corp:bob")  # it had started
    assert roster._tasks == [] and roster.directories["corp"]._session is None  # type: ignore[attr-defined]


class _GatedDirectory:
    """A directory whose answers wait at a gate: to close the roster at the very moment an answer is in."""

    name = "corp"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls = 0

    async def members(self, group: str) -> GroupMembers:
        self.calls += 1
        if self.calls > 2:  # the start's two groups pass; the refreshes after wait
            await self.gate.wait()
        return GroupMembers(people=(Person(id="corp:alice", username="alice", name="Alice", phones=(ALICE,)),))

    async def close(self) -> None:
        return None


async def test_closing_as_a_refresh_gets_its_answer_ends_the_refresh(tmp_path: Path, secret_env: None) -> None:
    config = load_config(write_config(tmp_path, _config_text("https://sso.example.com")))
    clock = FakeClock()
    directory = _GatedDirectory()
    roster = Roster(config, directories={"corp": directory}, cache=MemoryCache(), clock=clock)
    await roster.start()
    await clock.advance(301)  # both groups are being fetched again, waiting at the gate
    assert directory.calls == 4
    directory.gate.set()
    await asyncio.sleep(0)  # the answers are in; the refreshes have not resumed yet
    await asyncio.wait_for(roster.close(), timeout=10)  # a refresh that swallowed the cancel would sleep on


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_directory_teams_calendar_feed_names_its_people(story: Gateway) -> None:
    status, feed = await story.post("/api/v1/calendar-feeds", {"team": "companyapp2-sre"})
    assert status == 201, feed
    async with story.client.get(urlsplit(feed["url"]).path) as response:
        text = (await response.read()).decode()
    assert response.status == 200, text
    unfolded = text.replace("\r\n ", "")
    assert "SUMMARY:Primary on call: Alice Archer (companyapp2-sre)" in unfolded and "corp:alice" not in unfolded


async def test_a_call_to_a_directory_team_rings_its_primary(story: Gateway) -> None:
    status, body = await story.post("/api/v1/calls", {"team": "companyapp2-sre", "message": "please look"})
    assert status == 202, body
    assert [(p["engineer"], p["number"]) for p in body["pages"]] == [("corp:alice", "+1555***0101")]
    await story.ringing(ALICE)


async def test_a_policy_step_pages_every_member_of_a_directory_group(story: Gateway) -> None:
    status, body = await story.post("/api/v1/alerts", {"summary": "replica lag", "labels": {"receiver": "dbas"}})
    assert status == 202, body
    await story.ringing("+15550000105")
    alert = await story.alert(body["id"])
    assert [p["engineer"] for p in alert["pages"]] == ["corp:erin"]
    _, ready = await _readyz(story)
    assert {d["group"] for d in ready["directories"]} == {GROUP, "/dbas"}


async def test_a_directory_person_is_emailed_and_acts_by_name_through_the_link(
        aiohttp_client: Callable[..., Any], tmp_path: Path, peer: KeycloakPeer, secret_env: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    smtp = SmtpServer(tmp_path).start()
    monkeypatch.setenv("GATEWAY_TEST_SMTP_PASSWORD", PASSWORD)
    text = _config_text(_url(peer)).replace("policies:\n", "policies:\n  mailing:\n"
                                            "    steps: [{notify: primary, via: email, timeout: 60s}]\n")
    text = text.replace("routes:\n", "routes:\n  - {matchers: ['via=\"email\"'], team: companyapp2-sre, "
                                      "policy: mailing}\n")
    text += (f"server: {{public_url: 'https://oncall.example.com'}}\n"
             f"email: {{host: 127.0.0.1, port: {smtp.port}, username: {USER}, "
             f"password_env: GATEWAY_TEST_SMTP_PASSWORD, from: oncall@example.com, ca_file: {smtp.ca_file}}}\n")
    try:
        client = await aiohttp_client(create_app(load_config(write_config(tmp_path, text)), clock=FakeClock()))
        gateway = Gateway(client, client.app[_clock_key()])
        status, body = await gateway.post("/api/v1/alerts", {"summary": "disk full", "labels": {"via": "email"}})
        assert status == 202, body

        async def mailed() -> Any:
            return smtp.received or None

        [mail] = await eventually(mailed)
        assert mail.recipients == ["alice@example.com"]  # corp:alice's address, from Keycloak
        content = mail.message.get_body(("plain",))
        assert content is not None
        path = re.search(r"Acknowledge.*?\n\s+https://oncall\.example\.com(/a/\S+)", content.get_content())
        assert path is not None
        async with client.post(path.group(1)) as response:
            assert response.status == 200
            assert "as Alice Archer" in await response.text()
        alert = await gateway.alert_where(body["id"], lambda a: a["status"] == "acknowledged")
        assert alert["acknowledged_by"] == "corp:alice"
        messages = [t["message"] for t in alert["timeline"]]
        assert "email to Alice Archer: sent" in messages, messages
        assert "acknowledged by Alice Archer (email link)" in messages, messages
    finally:
        smtp.stop()


async def test_an_alertmanager_receiver_pages_the_members_of_its_directory_group(
        aiohttp_client: Callable[..., Any], tmp_path: Path, peer: KeycloakPeer, secret_env: None) -> None:
    """Each cluster's Alertmanager names its receiver after the team: receiver -> route -> a Keycloak group."""
    text = _config_text(_url(peer)).replace(
        "routes:\n",
        "routes:\n  - {receiver: prod-companyapp2-critical-sre, team: companyapp2-sre, policy: everyone}\n", 1)
    config = load_config(write_config(tmp_path, text))
    client = await aiohttp_client(create_app(config, clock=FakeClock()))
    gateway = Gateway(client, client.app[_clock_key()])
    payload = (Path(__file__).parents[1] / "fixtures" / "payloads" / "alertmanager-v4-firing-sre-critical.json")
    status, body = await gateway.post("/api/v1/integrations/alertmanager", json.loads(payload.read_text()))
    assert status == 202, body
    await gateway.ringing(ALICE)
    await gateway.ringing(BOB)
    alert = await gateway.alert(body["alerts"][0]["id"])
    assert (alert["route"], alert["team"]) == ("route-0", "companyapp2-sre")


async def test_a_directory_person_has_personal_notification_rules(story: Gateway) -> None:
    async with story.client.put("/api/v1/engineers/corp:alice/notification-rules", headers=AUTH,
                                json={"rules": [{"via": "sms", "after": "0s"}]}) as resp:
        status, body = resp.status, await resp.json()
    assert status == 200, body
    assert body["engineer"] == {"id": "corp:alice", "name": "Alice Archer"} and body["source"] == "api"
    status, body = await story.get("/api/v1/engineers/corp:carol/notification-rules")
    assert status == 404, body
    status, body = await story.post("/api/v1/alerts", {"summary": "checkout down",
                                                       "labels": {"receiver": "prod-companyapp2-critical-sre"}})
    assert status == 202, body
    await story.ringing(BOB)  # the step calls; Alice's rules text her instead
    await eventually(lambda: _texted(story, ALICE))
    assert (await story.phone(ALICE))["calls"] == 0


async def test_the_console_phones_name_a_directory_person(story: Gateway) -> None:
    answer = await story.client.post("/console/sign-in", data={"token": TOKEN}, allow_redirects=False)
    assert answer.status == 303
    status, body = await story.post("/api/v1/alerts", {"summary": "disk full", "labels": {"via": "sms"}})
    assert status == 202, body
    await eventually(lambda: _texted(story, ALICE))
    async with story.client.get("/console/phones", headers={"X-Console-Partial": "1"}) as response:
        html = await response.text()
    assert response.status == 200, html
    assert "Alice Archer" in html
