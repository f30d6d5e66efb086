"""Handoff notices and on-call summaries: sent once, at their time, on the injected clock.

Before each handoff (``lead`` ahead) the engineer taking over a role gets a message: the team, the role, from
when to when, and the team's open alerts. A team's summary goes to its listed engineers every day or week.

Durable first, then act: each message is claimed in the store (a row under a unique key: kind, team, role,
moment, engineer, channel) before it is sent, so a restarted gateway, or a second gateway on the same
PostgreSQL, does not send it again. The service sleeps until the next message is due and wakes early when a
team's overrides change (``replan``, from ``Schedule.on_change``); with no handoff in sight it looks again a day
later (a handoff planned beyond the look ahead comes within it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from functools import partial

from core.clock import Clock, sleep_until_woken, to_datetime
from core.enums import AlertStatus
from gateway import notice_plan
from gateway.config import Config, Engineer, HandoffNotice, OnCallSummary, Team
from gateway.notifiers import NoticeNotSent, Notifier
from gateway.oncall import who_is_on_call
from gateway.store import NoticeKey, Store

log = logging.getLogger(__name__)

#: a claim's lease: a gateway that dies while sending leaves it to be taken again after this long
LEASE_S = 300.0
#: a summary whose time passed while no gateway ran still goes out this long after it
SUMMARY_GRACE_S = 3600.0
#: at stop, how long the sends under way may take to finish
STOP_GRACE_S = 5.0
#: after an error (the store away), the next look
RETRY_S = 60.0
#: when no handoff is due after the lead window within the planner's look ahead (notice_plan.HORIZON and
#: MAX_STEPS), the next look: a handoff further ahead (an override months away) comes within it meanwhile
LOOK_AGAIN_S = 86400.0
COMING = 3  # changes listed in a summary
OPEN_ALERTS_READ = 100  # open alerts read at most per status (past it, the count says "100+")
#: a notice's SMS id is this and the notice's row id
SMS_ID_PREFIX = "notice-"


class NoticeService:
    def __init__(self, *, config: Config, store: Store, clock: Clock, teams: Callable[[str], Team | None],
                 notifiers: Iterable[Notifier], engineers: Callable[[str], Engineer | None] | None = None) -> None:
        self.config = config
        # An engineer by id: a configured one, or a directory team's person (gateway.directory.roster.Roster.engineer)
        self.engineers = engineers or config.engineers.get
        self.store = store
        self.clock = clock
        # A team as it stands now (gateway.overrides.Schedule.team: with the overrides added at run time)
        self.teams = teams
        self.notifiers = {notifier.channel: notifier for notifier in notifiers}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._done: dict[NoticeKey, float] = {}  # claimed or found sent: not asked for again (value: its moment)
        # not started again until then: claimed by a sender that may have died (its lease), or the store was away
        self._held: dict[NoticeKey, float] = {}
        self._sending: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.config.notices:
            self._task = asyncio.create_task(self._run(), name="handoff notices")

    async def stop(self) -> None:
        """Plan nothing more; give the sends under way STOP_GRACE_S to finish and be recorded (a send cut short
        stays claimed until its lease ends, and is sent again after it: twice, if it had gone out)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=STOP_GRACE_S)
        sending = list(self._sending)
        for task in sending:
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)

    def replan(self, team_id: str = "") -> None:
        """The schedule changed (an override added or removed): look again now."""
        if team_id == "" or team_id in self.config.notices:
            self._wake.set()

    @staticmethod
    def owns(sms_id: str) -> bool:
        """Whether ``sms_id`` is a notice's SMS (not a page's)."""
        return sms_id.startswith(SMS_ID_PREFIX)

    async def delivery_failed(self, sms_id: str, detail: str) -> None:
        """A notice's SMS was not delivered (on the last provider that tried): its record says so."""
        number = sms_id.removeprefix(SMS_ID_PREFIX)
        if not number.isascii() or not number.isdigit():
            log.warning("SMS %s not delivered (%s): no such notice", sms_id, detail)
            return
        log.warning("notice %s not delivered: %s", number, detail)
        await self.store.finish_notice(int(number), outcome="failed", detail=f"not delivered: {detail}",
                                       now=self.clock.now())

    # -------------------------------------------------------------- the loop

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a change from here on wakes the next sleep at once
            try:
                next_at = await self._round(self.clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handoff notices: could not plan; looking again in %.0f s", RETRY_S)
                next_at = self.clock.now() + RETRY_S
            await self._sleep(next_at)

    async def _sleep(self, until: float | None) -> None:
        await sleep_until_woken(self.clock, self._wake, until)

    async def _round(self, now: float) -> float | None:
        """Send what is due at ``now``; returns when the next message is due (None: nothing planned)."""
        self._done = {key: moment for key, moment in self._done.items() if moment > now - 2 * SUMMARY_GRACE_S}
        self._held = {key: until for key, until in self._held.items() if until > now}
        upcoming: list[float] = list(self._held.values())
        for team_id, settings in self.config.notices.items():
            team = self.teams(team_id)
            if team is None:
                continue
            if settings.handoff is not None:
                upcoming.extend(self._handoffs(team, settings.handoff, now))
            if settings.summary is not None:
                upcoming.append(self._summary(team, settings.summary, now))
        return min(upcoming, default=None)

    def _who(self, team: Team) -> notice_plan.Who:
        return lambda at: who_is_on_call(team, at)

    # -------------------------------------------------------------- handoffs

    def _handoffs(self, team: Team, settings: HandoffNotice, now: float) -> list[float]:
        """Start the notices due now (a handoff within ``lead``); when to look again: the next one's time, or
        LOOK_AGAIN_S ahead when none was found."""
        lead = settings.lead.total_seconds()
        for handoff in notice_plan.handoffs(self._who(team), after=to_datetime(now), roles=settings.roles):
            notify_at = handoff.at.timestamp() - lead
            if notify_at > now:
                return [notify_at]
            for channel in settings.via:
                key = NoticeKey(kind="handoff", team=team.id, role=handoff.role, moment=handoff.at.timestamp(),
                                engineer=handoff.engineer, channel=channel)
                self._start(key, partial(self._handoff_text, team.id, handoff, settings))
        return [now + LOOK_AGAIN_S]

    async def _handoff_text(self, team_id: str, handoff: notice_plan.Handoff,
                            settings: HandoffNotice) -> tuple[str, str]:
        read = [await self.store.list_alerts(status=status, team=team_id, limit=OPEN_ALERTS_READ)
                for status in (AlertStatus.TRIGGERED, AlertStatus.ACKNOWLEDGED)]
        alerts = [alert for some in read for alert in some]
        text = notice_plan.handoff_text(team=team_id, handoff=handoff, zone=settings.time_zone,
                                        open_alerts=len(alerts), titles=[alert.summary for alert in alerts],
                                        at_least=any(len(some) == OPEN_ALERTS_READ for some in read))
        subject = f"On call: {handoff.role} for {team_id} from {notice_plan.when(handoff.at, settings.time_zone)}"
        return subject, text

    # ------------------------------------------------------------- summaries

    def _summary(self, team: Team, settings: OnCallSummary, now: float) -> float:
        """Start the summary if its time came (within the grace); the time of the next one."""
        last, following = notice_plan.summary_times(settings, to_datetime(now))
        if now - last.timestamp() <= SUMMARY_GRACE_S:
            for engineer in settings.to:
                for channel in settings.via:
                    key = NoticeKey(kind="summary", team=team.id, role="", moment=last.timestamp(),
                                    engineer=engineer, channel=channel)
                    self._start(key, partial(self._summary_text, team, settings, last))
        return following.timestamp()

    async def _summary_text(self, team: Team, settings: OnCallSummary, at: datetime) -> tuple[str, str]:
        who = self._who(team)
        text = notice_plan.summary_text(team=team.id, at=at, now=who(at), zone=settings.time_zone,
                                        coming=notice_plan.changes(who, after=at, limit=COMING), name=self._name)
        return f"On call for {team.id}: {notice_plan.when(at, settings.time_zone)}", text

    def _name(self, engineer_id: str | None) -> str:
        engineer = self.engineers(engineer_id or "")
        return engineer.name if engineer is not None else (engineer_id or "nobody")

    # --------------------------------------------------------------- sending

    def _start(self, key: NoticeKey, text: Callable[[], Awaitable[tuple[str, str]]]) -> None:
        if key in self._done or key in self._held:
            return
        self._done[key] = key.moment
        task = asyncio.create_task(self._send(key, text), name=f"notice {key.kind} {key.team} {key.engineer}")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, key: NoticeKey, text: Callable[[], Awaitable[tuple[str, str]]]) -> None:
        engineer = self.engineers(key.engineer)
        notifier = self.notifiers.get(key.channel)
        if engineer is None or notifier is None:
            log.warning("%s notice for %s of team %s not sent: %s", key.kind, key.engineer, key.team,
                        "no such engineer (not under engineers:, nor in a directory group the gateway reads)"
                        if engineer is None else f"no notifier for {key.channel}")
            return
        try:
            notice = await self.store.claim_notice(key, now=self.clock.now(), lease_s=LEASE_S)
        except Exception as exc:
            log.warning("%s notice for %s of team %s: could not claim it (%s); trying again in %.0f s", key.kind,
                        key.engineer, key.team, str(exc) or type(exc).__name__, RETRY_S)
            self._try_again(key)
            return
        if notice is None:  # here before a restart, or by another gateway
            await self._taken(key)
            return
        outcome, detail = "sent", ""
        try:
            subject, body = await text()
            await notifier.send(notice_id=f"{SMS_ID_PREFIX}{notice.id}", engineer=engineer, subject=subject, text=body)
        except asyncio.CancelledError:
            raise  # stopping: the claim's lease runs out, and a gateway that plans it after that sends it
        except Exception as exc:  # NoticeNotSent, or the store away while writing the text
            outcome, detail = "failed", str(exc) if isinstance(exc, NoticeNotSent) else repr(exc)
            log.warning("%s notice %d for %s of team %s not sent: %s", key.kind, notice.id, key.engineer, key.team,
                        exc)
        else:
            log.info("%s notice %d sent to %s (%s, team %s)", key.kind, notice.id, key.engineer, key.role or "summary",
                     key.team)
        try:
            await self.store.finish_notice(notice.id, outcome=outcome, detail=detail, now=self.clock.now())
        except Exception as exc:  # the store away: the claim stays, and is taken again when its lease ends
            log.warning("%s notice %d for %s of team %s %s, but could not record it (%s): it may be sent again "
                        "after its claim runs out", key.kind, notice.id, key.engineer, key.team, outcome,
                        str(exc) or type(exc).__name__)

    def _try_again(self, key: NoticeKey) -> None:
        """The store is away: the round RETRY_S from now starts the notice again (if it is still due)."""
        self._done.pop(key, None)
        self._held[key] = self.clock.now() + RETRY_S
        self._wake.set()  # the loop plans its next look with it

    async def _taken(self, key: NoticeKey) -> None:
        """The claim failed: sent (or failed) already, or a sender holds it. That sender may have died while
        sending (this gateway, before a restart): look again when its lease runs out."""
        try:
            existing = await self.store.find_notice(key)
        except Exception as exc:
            log.warning("%s notice for %s of team %s: could not read it (%s); trying again in %.0f s", key.kind,
                        key.engineer, key.team, str(exc) or type(exc).__name__, RETRY_S)
            self._try_again(key)
            return
        if existing is not None and existing.outcome is None:
            self._done.pop(key, None)
            self._held[key] = existing.claimed_until
            self._wake.set()  # the loop sleeps until the lease's end too
            log.info("%s notice for %s (%s, team %s): being sent by another gateway; checked again at %s",
                     key.kind, key.engineer, key.role or "summary", key.team,
                     notice_plan.when(to_datetime(existing.claimed_until), "UTC"))
            return
        log.info("%s notice for %s (%s, team %s) at %s: sent already, not again", key.kind, key.engineer,
                 key.role or "summary", key.team, notice_plan.when(to_datetime(key.moment), "UTC"))
