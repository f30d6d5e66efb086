"""Handoff notices and on-call summaries: at their time on the injected clock, to the sandbox phones, once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.clock import FakeClock
from core.enums import Priority
from gateway.app import create_app
from gateway.config import ConfigError, load_config
from gateway.notices import LEASE_S, OPEN_ALERTS_READ, RETRY_S, NoticeService
from gateway.notifiers import SmsNotifier
from gateway.sqlite_store import SqliteStore
from gateway.store import NewAlert, Notice, NoticeKey
from providers.base import SmsRequest
from providers.sandbox import SandboxProvider
from tests.gateway.test_directory import ALICE as DIR_ALICE
from tests.gateway.test_directory import BOB as DIR_BOB
from tests.gateway.test_directory import GROUP, SECRET_ENV, _config_text, _people
from tests.gateway.test_kavenegar_story import kavenegar_config
from tests.gateway.test_layers import DAVE as DIR_DAVE
from tests.gateway.test_layers import ERIN, LAYERED
from tests.peers.kavenegar_api import DEFAULT_API_KEY as KAVENEGAR_KEY
from tests.peers.kavenegar_api import FakeKavenegarApi
from tests.peers.keycloak import KeycloakPeer
from tests.peers.twilio_api import FakeTwilioApi
from tests.postgres import PgDatabase
from tests.support import ALICE, BASE_CONFIG, BOB, CAROL, Gateway, eventually, write_config

DAVE = "+15550000004"
DIR_ERIN = "+15550000105"  # erin of the directory group /dbas (tests/gateway/test_directory.py)
# The clock starts on Wed 2026-01-07 12:00 UTC. Team sre's weekly rotation (handoff Mondays 09:00 UTC): this
# week alice is primary and bob secondary; from Mon 12 Jan 09:00 bob is primary and carol secondary.
CONFIG = BASE_CONFIG.replace(
    '  carol: {name: Carol, phones: ["+15550000003"]}\n',
    f'  carol: {{name: Carol, phones: ["+15550000003"]}}\n  dave: {{name: Dave, phones: ["{DAVE}"]}}\n',
).replace(
    "    members: [alice, bob]\n",
    "    members: [alice, bob, carol]\n"
    "    handoff_notice: {lead: 30m, roles: [primary, secondary], via: [sms]}\n"
    '    summary: {every: daily, at: "09:00", to: [dave]}\n',
)
NOTICE_TIME = 4 * 86400 + 20 * 3600 + 30 * 60  # from the clock's start to Mon 12 Jan 08:30 UTC


async def _start(aiohttp_client: Callable[..., Any], config_path: Path, clock: FakeClock) -> Gateway:
    client = await aiohttp_client(create_app(load_config(config_path), clock=clock))
    return Gateway(client, clock)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


async def _notices(gateway: Gateway, number: str) -> list[str]:
    return [sms["text"] for sms in (await gateway.phone(number))["sms"] if sms["text"].startswith("On call")]


async def _notice(gateway: Gateway, number: str, count: int = 1) -> list[str]:
    """The phone's notices once there are ``count`` of them."""

    async def check() -> list[str]:
        texts = await _notices(gateway, number)
        return texts if len(texts) >= count else []

    result: list[str] = await eventually(check)
    return result


async def test_the_incoming_engineers_get_the_handoff_sms_at_the_lead_time_with_the_open_alerts(
    aiohttp_client: Callable[..., Any], config_path: Path
) -> None:
    gateway = await _start(aiohttp_client, config_path, FakeClock())
    for title in ("Disk full on db-1", "CPU high"):
        status, body = await gateway.post("/api/v1/alerts", {"summary": title, "team": "sre"})
        assert status == 202, body
    await gateway.clock.advance(NOTICE_TIME - 60)
    await asyncio.sleep(0.2)
    assert await _notices(gateway, BOB) == [] and await _notices(gateway, CAROL) == []

    await gateway.clock.advance(60)
    assert await _notice(gateway, BOB) == [
        "On call: you are primary for sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC)."
        " Open alerts: 2: CPU high; Disk full on db-1"]
    assert await _notice(gateway, CAROL) == [
        "On call: you are secondary for sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC)."
        " Open alerts: 2: CPU high; Disk full on db-1"]
    assert await _notices(gateway, ALICE) == []  # she hands over: no notice

    # A week later, the next handoff: carol becomes primary, alice secondary; bob stays on call (no notice).
    await gateway.clock.advance(7 * 86400)
    assert len(await _notice(gateway, ALICE)) == 1
    assert (await _notice(gateway, CAROL, 2))[1].startswith("On call: you are primary for sre from Mon 19 Jan 09:00")
    assert len(await _notices(gateway, BOB)) == 1


async def test_an_override_changes_who_is_told(aiohttp_client: Callable[..., Any], config_path: Path) -> None:
    gateway = await _start(aiohttp_client, config_path, FakeClock())
    # Carol takes the primary role for Monday: the rotation's primary (bob) stays secondary then.
    status, body = await gateway.post("/api/v1/teams/sre/overrides", {
        "role": "primary", "engineer": "carol", "start": "2026-01-12T09:00:00Z", "end": "2026-01-13T09:00:00Z"})
    assert status == 201, body
    await gateway.clock.advance(NOTICE_TIME)
    assert await _notice(gateway, CAROL) == [
        "On call: you are primary for sre from Mon 12 Jan 09:00 to Tue 13 Jan 09:00 (UTC). No open alerts."]
    assert await _notices(gateway, BOB) == []  # secondary before and after Monday 09:00: nothing changes for him

    # When the override ends, bob takes the primary role: told half an hour before.
    await gateway.clock.advance(86400)
    assert await _notice(gateway, BOB) == [
        "On call: you are primary for sre from Tue 13 Jan 09:00 to Mon 19 Jan 09:00 (UTC). No open alerts."]


async def test_an_override_added_inside_the_lead_window_is_told_at_once(
    aiohttp_client: Callable[..., Any], config_path: Path
) -> None:
    gateway = await _start(aiohttp_client, config_path, FakeClock())
    await gateway.clock.advance(NOTICE_TIME - 3600)
    status, body = await gateway.post("/api/v1/teams/sre/overrides", {
        "role": "secondary", "engineer": "alice", "start": "2026-01-12T09:00:00Z", "end": "2026-01-12T12:00:00Z"})
    assert status == 201, body
    await gateway.clock.advance(3600 + 600)  # 08:40: inside the lead window
    assert await _notice(gateway, ALICE) == [
        "On call: you are secondary for sre from Mon 12 Jan 09:00 to Mon 12 Jan 12:00 (UTC). No open alerts."]
    # Removing it at 08:50 wakes the planner: carol is secondary again from 09:00, and told at once.
    status, listed = await gateway.get("/api/v1/teams/sre/overrides")
    override_id = next(o["id"] for o in listed["overrides"] if o.get("source") == "api")
    async with gateway.client.delete(f"/api/v1/teams/sre/overrides/{override_id}",
                                     headers={"Authorization": "Bearer test-token"}) as resp:
        assert resp.status == 200
    assert await _notice(gateway, CAROL) == [
        "On call: you are secondary for sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC). No open alerts."]


async def test_a_restarted_gateway_does_not_send_a_notice_again(
    aiohttp_client: Callable[..., Any], config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    start = FakeClock().now() + NOTICE_TIME + 15 * 60  # 08:45: the gateway starts inside the lead window
    first = await _start(aiohttp_client, config_path, FakeClock(start))
    assert len(await _notice(first, BOB)) == 1
    assert len(await _notice(first, CAROL)) == 1
    await first.client.close()

    caplog.set_level(logging.INFO, logger="gateway.notices")
    second = await _start(aiohttp_client, config_path, FakeClock(start + 60))

    def refused() -> list[str]:
        return [r.getMessage() for r in caplog.records if "sent already, not again" in r.getMessage()]

    async def both_refused() -> bool:
        return len(refused()) == 2

    await eventually(both_refused)
    assert sorted(refused()) == [
        "handoff notice for bob (primary, team sre) at Mon 12 Jan 09:00: sent already, not again",
        "handoff notice for carol (secondary, team sre) at Mon 12 Jan 09:00: sent already, not again"]
    assert await _notices(second, BOB) == [] and await _notices(second, CAROL) == []


async def test_the_daily_summary_goes_out_at_its_time(aiohttp_client: Callable[..., Any], config_path: Path) -> None:
    gateway = await _start(aiohttp_client, config_path, FakeClock())
    await gateway.clock.advance(21 * 3600 - 1)  # Thu 8 Jan 08:59:59
    await asyncio.sleep(0.2)
    assert await _notices(gateway, DAVE) == []
    await gateway.clock.advance(1)
    assert await _notice(gateway, DAVE) == [
        "On call for sre, Thu 8 Jan 09:00 (UTC): primary Alice, secondary Bob. Next: Mon 12 Jan 09:00 primary Bob,"
        " secondary Carol; Mon 19 Jan 09:00 primary Carol, secondary Alice; Mon 26 Jan 09:00 primary Alice,"
        " secondary Bob"]
    await gateway.clock.advance(86400)  # and the next day
    assert (await _notice(gateway, DAVE, 2))[1].startswith("On call for sre, Fri 9 Jan 09:00 (UTC): primary Alice")


@pytest.mark.parametrize(("team_keys", "problem"), [
    ("    handoff_notice: {lead: soon}\n", "teams.sre.handoff_notice.lead: "),
    ("    handoff_notice: {lead: 8d}\n", "teams.sre.handoff_notice.lead: must be at most 7d"),
    ("    handoff_notice: {roles: [primary, tertiary]}\n", "teams.sre.handoff_notice.roles[1]: 'tertiary' is not"),
    ("    handoff_notice: {via: [pigeon]}\n", "teams.sre.handoff_notice.via[0]: 'pigeon' is not one of: sms"),
    ("    handoff_notice: {when: 30m}\n", "teams.sre.handoff_notice.when: unknown key"),
    ("    summary: {every: hourly, to: [alice]}\n", "teams.sre.summary.every: 'hourly' is not one of"),
    ("    summary: {every: weekly, to: [alice]}\n", "teams.sre.summary.day: is required"),
    ("    summary: {every: daily, day: mon, to: [alice]}\n", "teams.sre.summary.day: only allowed with every: weekly"),
    ("    summary: {every: weekly, day: someday, to: [alice]}\n", "teams.sre.summary.day: expected a day of the week"),
    ("    summary: {every: daily, at: 25:00, to: [alice]}\n", "teams.sre.summary.at: expected a time"),
    ("    summary: {every: daily, to: [zed]}\n", "teams.sre.summary.to[0]: unknown engineer 'zed'"),
    ("    summary: {every: daily, to: ['nowhere:zed']}\n", "teams.sre.summary.to[0]: unknown engineer 'nowhere:zed'"),
    ("    summary: {every: daily}\n", "teams.sre.summary.to: at least one entry is required"),
    ("    summary: {every: daily, to: [alice], time_zone: Mars/Base}\n", "teams.sre.summary.time_zone: "),
])
def test_bad_notice_settings_are_reported_with_their_key_path(tmp_path: Path, team_keys: str, problem: str) -> None:
    text = BASE_CONFIG.replace("    members: [alice, bob]\n", "    members: [alice, bob]\n" + team_keys)
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_notices_by_sms_need_an_sms_provider(tmp_path: Path) -> None:
    text = BASE_CONFIG.replace("    members: [alice, bob]\n", "    members: [alice, bob]\n    handoff_notice: {}\n")
    text += "providers:\n  voice: [sandbox]\n  sms: []\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, text))
    assert any("teams.sre.handoff_notice.via: sms needs a provider" in line for line in caught.value.problems), \
        caught.value.problems


def test_good_notice_settings_are_read(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, CONFIG.replace(
        '    summary: {every: daily, at: "09:00", to: [dave]}\n',
        '    summary: {every: weekly, day: Monday, at: "08:15", to: [dave, alice], time_zone: Europe/Berlin}\n')))
    settings = config.notices["sre"]
    assert settings.handoff is not None and settings.summary is not None
    assert (settings.handoff.lead.total_seconds(), settings.handoff.roles, settings.handoff.via,
            settings.handoff.time_zone) == (1800, ("primary", "secondary"), ("sms",), "UTC")
    assert (settings.summary.every, settings.summary.day, str(settings.summary.at), settings.summary.to,
            settings.summary.time_zone) == ("weekly", 0, "08:15:00", ("dave", "alice"), "Europe/Berlin")
    assert "dba" not in config.notices


async def test_two_gateways_on_one_postgresql_send_each_notice_once(
    aiohttp_client: Callable[..., Any], tmp_path: Path, pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_PG_PASSWORD", pg_database.password or "")
    store = f'store: {{url: "{pg_database.url}", password_env: GATEWAY_TEST_PG_PASSWORD}}\n'
    config_path = write_config(tmp_path, CONFIG.replace("store:\n  path: gateway.db\n", store))
    caplog.set_level(logging.INFO, logger="gateway.notices")
    start = FakeClock().now() + NOTICE_TIME + 15 * 60  # both start at 08:45, inside the lead window
    one, two = [await _start(aiohttp_client, config_path, FakeClock(start)) for _ in range(2)]

    async def settled() -> bool:  # each of the two notices sent by one gateway and refused by the other
        messages = [r.getMessage() for r in caplog.records]
        return len([m for m in messages if "sent already, not again" in m]) == 2 and len(
            [m for m in messages if m.startswith("handoff notice ") and " sent to " in m]) == 2

    await eventually(settled)
    for number in (BOB, CAROL):
        assert len(await _notices(one, number) + await _notices(two, number)) == 1


async def test_a_notice_whose_gateway_died_while_sending_it_is_sent_when_the_claim_runs_out(
    aiohttp_client: Callable[..., Any], config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crashed_at = FakeClock().now() + NOTICE_TIME + 10 * 60  # 08:40: claimed, then the gateway died
    handoff = FakeClock().now() + NOTICE_TIME + 30 * 60
    store = SqliteStore(load_config(config_path).store_path)
    await store.open()
    try:
        claimed = await store.claim_notice(NoticeKey(kind="handoff", team="sre", role="primary", moment=handoff,
                                                     engineer="bob", channel="sms"), now=crashed_at, lease_s=LEASE_S)
        assert claimed is not None
    finally:
        await store.close()
    caplog.set_level(logging.INFO, logger="gateway.notices")
    gateway = await _start(aiohttp_client, config_path, FakeClock(crashed_at + 60))  # restarted a minute later
    assert len(await _notice(gateway, CAROL)) == 1  # hers was never claimed: sent at once

    async def held() -> bool:
        return any("being sent by another gateway; checked again at Mon 12 Jan 08:45" in r.getMessage()
                   for r in caplog.records)

    await eventually(held)
    assert await _notices(gateway, BOB) == []
    await gateway.clock.advance(LEASE_S - 60)  # 08:45: the dead gateway's claim runs out
    assert await _notice(gateway, BOB) == [
        "On call: you are primary for sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC). No open alerts."]


async def test_a_directory_teams_incoming_engineer_is_told_at_their_directory_number(
    aiohttp_client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = KeycloakPeer()
    _people(peer)  # pageable: corp:alice and corp:bob, in username order
    url = await peer.start()
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    text = _config_text(url).replace(
        f"    directory: {{name: corp, group: {GROUP}}}\n",
        f"    directory: {{name: corp, group: {GROUP}}}\n"
        '    rotation: {kind: weekly, start: 2026-01-05, handoff: "09:00", time_zone: UTC}\n'
        "    handoff_notice: {lead: 30m}\n"
        '    summary: {every: daily, at: "08:45", to: [ops, "corp:erin", "corp:nobody"]}\n',
    ) + '\nengineers:\n  ops: {name: Ops, phones: ["' + DAVE + '"]}\n'
    caplog.set_level(logging.DEBUG)
    try:
        # 08:45 on Mon 12 Jan: alice hands the primary role to bob, who hands the secondary one to alice
        gateway = await _start(aiohttp_client, write_config(tmp_path, text), FakeClock(FakeClock().now() + NOTICE_TIME
                                                                                     + 15 * 60))
        assert await _notice(gateway, DIR_BOB) == [
            "On call: you are primary for companyapp2-sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC)."
            " No open alerts."]
        assert await _notice(gateway, DIR_ALICE) == [
            "On call: you are secondary for companyapp2-sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC)."
            " No open alerts."]
        assert (await _notice(gateway, DAVE))[0].startswith(
            "On call for companyapp2-sre, Mon 12 Jan 08:45 (UTC): primary Alice Archer, secondary Bob Baker. Next: "
            "Mon 12 Jan 09:00 primary Bob Baker, secondary Alice Archer;")
        # erin is no member of the team, but of a group a policy step pages (/dbas): the roster knows her
        assert (await _notice(gateway, DIR_ERIN))[0].startswith("On call for companyapp2-sre, Mon 12 Jan 08:45")

        async def reported() -> bool:
            return any("summary notice for corp:nobody of team companyapp2-sre not sent: no such engineer" in
                       r.getMessage() for r in caplog.records)

        await eventually(reported)
        ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("gateway", "providers")))
        assert "SMS notice-1 to +1555***01" in ours  # the notifier's log: masked numbers only
        for number in (DIR_ALICE, DIR_BOB, DIR_ERIN, DAVE):
            assert number not in ours
    finally:
        await peer.close()


async def test_a_handoff_planned_beyond_the_planners_horizon_is_told_when_it_comes_within_it(tmp_path: Path) -> None:
    # Team dba never rotates (carol primary); alice covers the primary role for a day in May, 117 days ahead:
    # beyond notice_plan.HORIZON (90 days) when the gateway starts.
    text = BASE_CONFIG.replace(
        "    members: [carol]\n",
        "    members: [carol, alice]\n"
        "    overrides: [{start: 2026-05-04T09:00:00Z, end: 2026-05-05T09:00:00Z, role: primary, engineer: alice}]\n"
        "    handoff_notice: {lead: 30m, roles: [primary]}\n")
    config = load_config(write_config(tmp_path, text))
    store = SqliteStore(config.store_path)
    await store.open()
    clock = FakeClock()
    phones = SandboxProvider(clock=clock, caller_id="+15559990000")
    service = NoticeService(config=config, store=store, clock=clock, teams=config.teams.get,
                            notifiers=[SmsNotifier(phones)])
    await service.start()
    try:
        await asyncio.sleep(0.2)  # planned at the start
        notice_at = datetime(2026, 5, 4, 8, 30, tzinfo=UTC).timestamp()
        await clock.advance(notice_at - clock.now() - 1)
        await asyncio.sleep(0.2)
        assert phones.phone(ALICE).messages == []
        await clock.advance(1)

        async def told() -> list[str]:
            return [message.text for message in phones.phone(ALICE).messages]

        assert await eventually(told) == [
            "On call: you are primary for dba from Mon 4 May 09:00 to Tue 5 May 09:00 (UTC). No open alerts."]
    finally:
        await service.stop()
        await store.close()


async def test_a_layered_teams_weekend_handoff_is_told_and_its_summary_follows_the_layers(
    aiohttp_client: Callable[..., Any], tmp_path: Path
) -> None:
    # Team noc (tests/gateway/test_layers.py): weekdays alice/bob/carol, the weekend layer (Fri 18:00 to Mon 09:00
    # Berlin) erin then dave this weekend. The gateway starts Fri 9 Jan 17:45 Berlin (16:45Z), inside the lead.
    text = LAYERED.replace(
        "        when: holidays\n",
        "        when: holidays\n"
        "    handoff_notice: {lead: 30m}\n"
        '    summary: {every: daily, at: "17:45", to: [carol]}\n')
    start = datetime(2026, 1, 9, 16, 45, tzinfo=UTC).timestamp()
    gateway = await _start(aiohttp_client, write_config(tmp_path, text), FakeClock(start))
    assert await _notice(gateway, ERIN) == [
        "On call: you are primary for noc from Fri 9 Jan 18:00 to Mon 12 Jan 09:00 (CET). No open alerts."]
    assert await _notice(gateway, DIR_DAVE) == [
        "On call: you are secondary for noc from Fri 9 Jan 18:00 to Mon 12 Jan 09:00 (CET). No open alerts."]
    assert await _notice(gateway, CAROL) == [
        "On call for noc, Fri 9 Jan 17:45 (CET): primary Alice, secondary Bob. Next: Fri 9 Jan 18:00 primary Erin,"
        " secondary Dave; Mon 12 Jan 09:00 primary Bob, secondary Carol; Fri 16 Jan 18:00 primary Dave,"
        " secondary Erin"]
    # Monday 08:30 Berlin: bob and carol are told of the weekday handoff; the weekend's 7-day look-ahead caps in
    # between (an answer's until where nothing changes) are told to nobody.
    await gateway.clock.advance(datetime(2026, 1, 12, 7, 30, tzinfo=UTC).timestamp() - start)
    assert await _notice(gateway, BOB) == [
        "On call: you are primary for noc from Mon 12 Jan 09:00 to Fri 16 Jan 18:00 (CET). No open alerts."]
    assert (await _notice(gateway, CAROL, 4))[1:] == [  # Saturday's and Sunday's summaries, then her notice
        "On call for noc, Sat 10 Jan 17:45 (CET): primary Erin, secondary Dave. Next: Mon 12 Jan 09:00 primary Bob,"
        " secondary Carol; Fri 16 Jan 18:00 primary Dave, secondary Erin; Mon 19 Jan 09:00 primary Carol,"
        " secondary Alice",
        "On call for noc, Sun 11 Jan 17:45 (CET): primary Erin, secondary Dave. Next: Mon 12 Jan 09:00 primary Bob,"
        " secondary Carol; Fri 16 Jan 18:00 primary Dave, secondary Erin; Mon 19 Jan 09:00 primary Carol,"
        " secondary Alice",
        "On call: you are secondary for noc from Mon 12 Jan 09:00 to Fri 16 Jan 18:00 (CET). No open alerts."]
    assert await _notices(gateway, ALICE) == []
    assert len(await _notices(gateway, ERIN)) == len(await _notices(gateway, DIR_DAVE)) == 1


async def test_the_open_alerts_told_are_the_teams_and_a_count_past_what_is_read_says_so(config_path: Path) -> None:
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    await store.open()
    clock = FakeClock(FakeClock().now() + NOTICE_TIME + 15 * 60)  # 08:45 on Mon 12 Jan: inside the lead window
    for number in range(1, OPEN_ALERTS_READ + 2):
        await store.create_alert(NewAlert(dedup_key=f"sre-{number}", priority=Priority.HIGH, source="api",
                                          summary=f"sre alert {number}", team="sre", policy="default",
                                          route="sre-critical"), now=clock.now() - 3600, escalate_at=None, note="")
    await store.create_alert(NewAlert(dedup_key="dba", priority=Priority.LOW, source="api", summary="dba alert",
                                      team="dba", policy="texting", route="dba"),
                             now=clock.now() - 60, escalate_at=None, note="")
    phones = SandboxProvider(clock=clock, caller_id="+15559990000")
    service = NoticeService(config=config, store=store, clock=clock, teams=config.teams.get,
                            notifiers=[SmsNotifier(phones)])
    await service.start()
    try:
        async def told() -> list[str]:
            return [message.text for message in phones.phone(BOB).messages]

        assert await eventually(told) == [
            "On call: you are primary for sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC). Open alerts: 100+:"
            " sre alert 101; sre alert 100; sre alert 99"]
    finally:
        await service.stop()
        await store.close()


class _SlowSandbox(SandboxProvider):
    """The sandbox's SMS, taking its time to answer: the send is under way until ``answer`` is set."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock, caller_id="+15559990000")
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def send_sms(self, request: SmsRequest) -> None:
        self.asked.set()
        await self.answer.wait()
        await super().send_sms(request)


async def test_a_notice_being_sent_when_the_gateway_stops_is_finished_and_recorded(config_path: Path) -> None:
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    await store.open()
    clock = FakeClock(FakeClock().now() + NOTICE_TIME + 15 * 60)  # 08:45 on Mon 12 Jan: inside the lead window
    phones = _SlowSandbox(clock)
    service = NoticeService(config=config, store=store, clock=clock, teams=config.teams.get,
                            notifiers=[SmsNotifier(phones)])
    await service.start()
    try:
        await asyncio.wait_for(phones.asked.wait(), timeout=30)
        stopping = asyncio.create_task(service.stop())
        await asyncio.sleep(0.05)
        phones.answer.set()  # the provider answers while the gateway stops
        await asyncio.wait_for(stopping, timeout=30)
        told = [key for key in (NoticeKey(kind="handoff", team="sre", role=role, moment=clock.now() + 15 * 60,
                                          engineer=engineer, channel="sms")
                                for role, engineer in (("primary", "bob"), ("secondary", "carol")))
                if (notice := await store.find_notice(key)) is not None and notice.outcome == "sent"]
        assert len(told) == 2  # recorded as sent: a restarted gateway does not send them again
        assert len(phones.phone(BOB).messages) == len(phones.phone(CAROL).messages) == 1
        assert [t for t in asyncio.all_tasks() if t.get_name().startswith(("handoff notices", "notice "))] == []
    finally:
        await service.stop()
        await store.close()


async def test_a_notice_sent_while_the_store_goes_away_is_logged_as_not_recorded(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    await store.open()
    clock = FakeClock(FakeClock().now() + NOTICE_TIME + 15 * 60)  # 08:45 on Mon 12 Jan: inside the lead window
    phones = _SlowSandbox(clock)
    service = NoticeService(config=config, store=store, clock=clock, teams=config.teams.get,
                            notifiers=[SmsNotifier(phones)])
    caplog.set_level(logging.INFO, logger="gateway.notices")
    await service.start()
    try:
        await asyncio.wait_for(phones.asked.wait(), timeout=30)
        await store.close()  # the store goes away while the SMS is under way
        phones.answer.set()

        async def reported() -> list[str]:
            return [r.getMessage() for r in caplog.records if "could not record it" in r.getMessage()]

        assert len(await eventually(reported)) >= 1
        assert phones.phone(BOB).messages or phones.phone(CAROL).messages
    finally:
        await service.stop()


async def test_a_notice_sms_whose_delivery_fails_is_sent_on_the_next_provider(
    aiohttp_client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KAVENEGAR_KEY", KAVENEGAR_KEY)
    monkeypatch.setenv("GATEWAY_TEST_KAVENEGAR_SECRET", "s3cr3t-0123456789abcdef")
    async with FakeKavenegarApi() as kavenegar, FakeTwilioApi() as twilio:
        text = kavenegar_config(kavenegar.base_url, twilio_url=twilio.base_url, sms="kavenegar, twilio").replace(
            "    members: [alice, bob]\n", "    members: [alice, bob]\n    handoff_notice: {roles: [primary]}\n")
        # 08:45 on Mon 12 Jan: bob takes the primary role at 09:00
        gateway = await _start(aiohttp_client, write_config(tmp_path, text),
                               FakeClock(FakeClock().now() + NOTICE_TIME + 15 * 60))

        async def texted() -> list[dict[str, Any]]:
            return [m for m in kavenegar.messages if m["message"].startswith("On call")]

        [sms] = await eventually(texted)
        kavenegar.set_status(sms["messageid"], 11)  # Kavenegar: not delivered (the phone is off)
        await gateway.clock.advance(30)  # its status is read

        async def carried() -> list[str]:
            return [m["Body"] for m in twilio.messages if m["To"] == BOB]

        assert await eventually(carried) == [
            "On call: you are primary for sre from Mon 12 Jan 09:00 to Mon 19 Jan 09:00 (UTC). No open alerts."]


async def test_a_notice_the_store_could_not_claim_is_tried_again_a_minute_later(
    config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(config_path)
    store = SqliteStore(config.store_path)
    clock = FakeClock(FakeClock().now() + NOTICE_TIME + 15 * 60)  # 08:45 on Mon 12 Jan: inside the lead window
    phones = SandboxProvider(clock=clock, caller_id="+15559990000")
    service = NoticeService(config=config, store=store, clock=clock, teams=config.teams.get,
                            notifiers=[SmsNotifier(phones)])
    caplog.set_level(logging.INFO, logger="gateway.notices")
    await service.start()  # the store is not open yet: away
    try:
        async def refused() -> bool:
            return len([r for r in caplog.records if "could not claim it" in r.getMessage()]) == 2

        await eventually(refused)
        await store.open()  # back
        await clock.advance(RETRY_S)

        async def told() -> list[str]:
            return [message.text for message in phones.phone(BOB).messages + phones.phone(CAROL).messages]

        assert len(await eventually(told)) == 2
    finally:
        await service.stop()
        await store.close()


async def test_a_notice_sms_not_delivered_is_recorded_as_failed(
    aiohttp_client: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GATEWAY_TEST_KAVENEGAR_KEY", KAVENEGAR_KEY)
    monkeypatch.setenv("GATEWAY_TEST_KAVENEGAR_SECRET", "s3cr3t-0123456789abcdef")
    caplog.set_level(logging.INFO)
    async with FakeKavenegarApi() as kavenegar:
        text = kavenegar_config(kavenegar.base_url, sms="kavenegar").replace(
            "    members: [alice, bob]\n", "    members: [alice, bob]\n    handoff_notice: {roles: [primary]}\n")
        config_path = write_config(tmp_path, text)
        start = FakeClock().now() + NOTICE_TIME + 15 * 60  # 08:45 on Mon 12 Jan: bob takes the primary role at 09:00
        gateway = await _start(aiohttp_client, config_path, FakeClock(start))

        async def texted() -> list[dict[str, Any]]:
            return [m for m in kavenegar.messages if m["message"].startswith("On call")]

        [sms] = await eventually(texted)
        kavenegar.set_status(sms["messageid"], 11)  # Kavenegar: not delivered (the phone is off)
        await gateway.clock.advance(30)  # its status is read
        key = NoticeKey(kind="handoff", team="sre", role="primary", moment=start + 15 * 60, engineer="bob",
                        channel="sms")
        store = SqliteStore(load_config(config_path).store_path)
        await store.open()
        try:
            async def failed() -> Notice | None:
                notice = await store.find_notice(key)
                return notice if notice is not None and notice.outcome == "failed" else None

            notice = await eventually(failed)
        finally:
            await store.close()
        assert "not delivered" in notice.detail
        assert "unknown call notice-" not in caplog.text
