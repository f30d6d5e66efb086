"""Scheduler.plan() where the features meet: personal rules, email and chat pages, directory groups, layers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.enums import Channel
from gateway.config import Config, DirectoryGroup, Engineer, load_config
from gateway.page_kinds import AlertCallKind
from gateway.scheduler import Scheduler
from gateway.sqlite_store import SqliteStore
from gateway.store import StepPlan
from gateway.templates import Templates
from tests.support import write_config

NOW = 1_800_000_000.0  # a Friday in January 2027; 2001-01-01, the night layer's only date, is long gone

CONFIG = """
api_tokens: [{name: t, token: t0k3n}]
engineers:
  alice: {phones: ["+15550000001"], email: alice@example.com, notification_rules: [{after: 5m, via: sms}]}
  bob: {phones: ["+15550000002"]}
teams:
  sre: {members: [alice, bob]}
  noc:
    layers:
      - {name: night, members: [bob], when: [night]}
time_windows:
  night: {dates: [2001-01-01]}
email: {host: 127.0.0.1, port: 25, from: "oncall@example.com"}
chat:
  ops: {kind: slack, url: "http://127.0.0.1:9/hook"}
policies:
  default:
    steps:
      - {notify: primary, via: [call, email], timeout: 20s}
      - {notify: primary, via: chat, chat: [ops], timeout: 30s}
      - {notify: team, via: email, timeout: 30s}
default_route: {team: sre, policy: default}
"""


def _plan(tmp_path: Path, team: str, step: int, group: list[str] | None = None) -> tuple[StepPlan, Config]:
    config = load_config(write_config(tmp_path, CONFIG))

    def members(found: DirectoryGroup) -> list[Engineer]:
        assert found == DirectoryGroup(directory="corp", group="/sre")
        return [config.engineers[e] for e in group or []]

    policy = config.policies["default"]
    if group is not None:  # the third step, as `notify: directory:corp:/sre` reads it
        steps = list(policy.steps)
        steps[2] = replace(steps[2], target="group", group=DirectoryGroup(directory="corp", group="/sre"))
        policy = replace(policy, steps=tuple(steps))
    kind = AlertCallKind(Templates(None), _never)
    scheduler = Scheduler(config=config, store=SqliteStore(tmp_path / "unused.db"), clock=None,  # type: ignore[arg-type]
                          paging=None, kinds=None, directory_group=members)  # type: ignore[arg-type]
    return scheduler.plan(team=team, policy=policy, kind=kind, step_index=step, repeat=0, now=NOW), config


async def _never(alert_id: int, by: str, how: str) -> None:
    raise AssertionError("nothing is answered here")


def test_call_and_email_for_an_engineer_whose_rules_send_nothing_in_the_step_still_emails(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, "sre", 0)
    assert [(p.engineer, p.channel, p.number) for p in plan.pages] == [("alice", Channel.EMAIL, "alice@example.com")]
    assert plan.next_due == NOW + 20  # the step waits its timeout: the email went out
    assert any("alice is paged by their notification rules: nothing in this step" in n.message for n in plan.notes)


def test_a_chat_step_with_nobody_on_call_posts_and_says_why_nobody(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, "noc", 1)
    assert [(p.engineer, p.channel, p.number) for p in plan.pages] == [(None, Channel.CHAT, "ops")]
    assert [n.message for n in plan.notes] == [
        "step 2 of 3: chat primary (nobody is primary on call for team noc (no layer is active)); "
        "times out in 30 s"]


def test_a_directory_group_step_by_email_emails_those_with_an_address(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, "sre", 2, group=["alice", "bob"])
    assert [(p.engineer, p.channel, p.number) for p in plan.pages] == [("alice", Channel.EMAIL, "alice@example.com")]
    assert plan.notes[0].message == "step 3 of 3: bob has no email address; not emailed"


def test_an_empty_directory_group_is_named_when_the_step_is_skipped(tmp_path: Path) -> None:
    plan, _ = _plan(tmp_path, "noc", 2, group=[])
    assert plan.pages == [] and plan.next_due == NOW
    assert [n.message for n in plan.notes] == ["step 3 of 3: nobody is in directory group /sre of corp; skipped"]
