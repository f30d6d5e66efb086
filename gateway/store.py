"""The store interface and the records it keeps.

Kept small on purpose: the SQLite backend (``sqlite_store``) is the embedded
default; a PostgreSQL backend for several gateways implements the same Protocol.
Every method that changes state commits before it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from core.enums import AlertStatus, Channel, PageStatus, Priority
from gateway.notification_rules import NotificationRule


@dataclass(frozen=True, kw_only=True)
class NewAlert:
    dedup_key: str
    priority: Priority
    source: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    team: str
    policy: str
    route: str


@dataclass(frozen=True, kw_only=True)
class Alert:
    id: int
    dedup_key: str
    status: AlertStatus
    priority: Priority
    source: str
    summary: str
    details: dict[str, Any]
    labels: dict[str, str]
    team: str
    policy: str
    route: str
    created_at: float
    updated_at: float
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self.status != AlertStatus.RESOLVED


@dataclass(frozen=True, kw_only=True)
class Escalation:
    alert_id: int
    step: int  # the next step to run
    repeat: int  # the round that step belongs to
    next_due: float | None  # None: nothing left to run


@dataclass(frozen=True, kw_only=True)
class NewPage:
    engineer: str | None
    number: str
    channel: Channel
    due_at: float | None = None  # a personal rule's later page: sent then, if still wanted (None: at once)


@dataclass(frozen=True, kw_only=True)
class Page:
    id: int
    alert_id: int
    step: int | None
    repeat: int | None
    engineer: str | None
    number: str
    channel: Channel
    status: PageStatus
    outcome: str | None
    detail: str
    created_at: float
    updated_at: float
    due_at: float | None = None  # not to be sent before then (``Store.release_page``); None: at once


@dataclass(frozen=True, kw_only=True)
class TimelineEntry:
    alert_id: int
    at: float
    kind: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class StepPlan:
    """One policy step ready to be written: its pages, when the next step is due, what to log.

    The notes' ``alert_id`` is filled in by the store.
    """

    step: int
    repeat: int
    pages: list[NewPage]
    next_due: float
    notes: list[TimelineEntry] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class NewOverride:
    """An override added at run time: ``engineer`` takes ``role`` of ``team`` from ``start`` to ``end``."""

    team: str
    role: str  # "primary" | "secondary"
    engineer: str
    start: float  # epoch seconds
    end: float  # exclusive
    created_by: str  # the API token's name or the signed-in user


@dataclass(frozen=True, kw_only=True)
class StoredOverride(NewOverride):
    id: int
    created_at: float
    deleted_at: float | None = None
    deleted_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class CalendarFeed:
    """A calendar subscription: one team's or one engineer's shifts, behind a secret kept only as a hash."""

    id: int
    team: str | None
    engineer: str | None
    created_by: str
    created_at: float
    revoked_at: float | None = None
    revoked_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class NewMaintenance:
    """A maintenance window added at run time (POST /api/v1/maintenance)."""

    matchers: tuple[str, ...]  # Alertmanager-style matcher texts, as given
    start: float  # epoch seconds
    end: float  # exclusive
    action: str  # "suppress" | "low_priority"
    comment: str
    created_by: str


@dataclass(frozen=True, kw_only=True)
class StoredMaintenance(NewMaintenance):
    id: int
    created_at: float
    ended_at: float | None = None  # ended early
    ended_by: str | None = None


@dataclass(frozen=True, kw_only=True)
class HoldWindow:
    """A suppressing window that matched a held alert: ``key`` is config:<name> or api:<id>."""

    key: str
    name: str
    until: float  # when it ends (as known when the alert arrived; an API window may end earlier)


@dataclass(frozen=True, kw_only=True)
class Hold:
    """An alert recorded during maintenance and not paged yet; paged when its windows are over."""

    alert_id: int
    windows: tuple[HoldWindow, ...]
    held_at: float


@dataclass(frozen=True, kw_only=True)
class NotificationRuleChange:
    """One change of an engineer's notification rules at run time (the audit trail: every change is kept)."""

    id: int
    engineer: str
    rules: tuple[NotificationRule, ...] | None  # None: back to the config's rules (or each step's via)
    changed_by: str  # the API token's name
    changed_at: float


@dataclass(frozen=True, kw_only=True)
class NoticeKey:
    """One handoff notice or on-call summary to one engineer by one channel: sent once (gateway/notices.py)."""

    kind: str  # "handoff" | "summary"
    team: str
    role: str  # "primary" | "secondary"; "" for a summary
    moment: float  # the handoff, or the summary's scheduled time (epoch seconds)
    engineer: str
    channel: str  # a notifier's channel: "sms"


@dataclass(frozen=True, kw_only=True)
class Notice(NoticeKey):
    id: int
    claimed_at: float
    claimed_until: float
    finished_at: float | None = None
    outcome: str | None = None  # "sent" | "failed"
    detail: str = ""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the store cannot answer (for /readyz)."""
        ...

    async def create_alert(
        self, new: NewAlert, *, now: float, escalate_at: float | None, note: str, first_step: StepPlan | None = None
    ) -> tuple[Alert, bool, list[Page]]:
        """Insert the alert with its escalation and a 'triggered' timeline entry, atomically.

        With ``first_step`` its pages are written in the same transaction (the
        fast path: the first call goes out right after the alert is durable) and
        ``escalate_at`` is ignored. When an open alert with the same dedup key
        exists, change nothing and return it with ``False`` and no pages.
        """
        ...

    async def get_alert(self, alert_id: int) -> Alert | None: ...

    async def find_open_alert(self, dedup_key: str) -> Alert | None: ...

    async def list_alerts(
        self, *, status: str | None = None, limit: int = 100, before_id: int | None = None,
        source: str | None = None, team: str | None = None, priority: str | None = None,
    ) -> list[Alert]:
        """Newest first; each filter given narrows the query (in the database, before ``limit``)."""
        ...

    async def change_status(
        self, alert_id: int, status: AlertStatus, *, now: float, by: str | None, note: str
    ) -> tuple[Alert, bool] | None:
        """Move an open alert to acknowledged or resolved and stop its escalation.

        Returns (alert, changed); ``changed`` is False when the alert already had
        that status or a later one. None when there is no such alert.
        """
        ...

    async def begin_escalation(self, alert_id: int, *, priority: str, now: float, note: str) -> bool:
        """Start a not-yet-started escalation now with ``priority`` (a hotline caller starts waiting)."""
        ...

    async def set_priority(self, alert_id: int, priority: str, *, now: float, note: str) -> Alert | None:
        """Change an open alert's priority (logged when it changes); None if no open alert."""
        ...

    async def get_escalation(self, alert_id: int) -> Escalation | None: ...

    async def next_due(self) -> float | None: ...

    async def due_escalations(self, now: float) -> list[Escalation]: ...

    async def reschedule(
        self,
        alert_id: int,
        *,
        expect: Escalation,
        next_due: float | None,
        note: str | None,
        now: float,
        restart: bool = False,
    ) -> bool:
        """Set next_due (and with ``restart`` go back to step 1, round 1) if the escalation
        is still as ``expect`` says and the alert is triggered."""
        ...

    async def start_step(self, alert_id: int, *, expect: Escalation, plan: StepPlan, now: float) -> list[Page] | None:
        """Write the step's pages as due, move the escalation on, and log, in one transaction.

        Returns None (and writes nothing) when the escalation is no longer as
        ``expect`` says or the alert is no longer triggered.
        """
        ...

    async def add_pages(
        self, alert_id: int, pages: list[NewPage], *, notes: list[TimelineEntry], now: float
    ) -> list[Page]:
        """Pages outside any policy step (direct calls and SMS)."""
        ...

    async def get_page(self, page_id: int) -> Page | None: ...

    async def call_wanted(self, page_id: int) -> bool:
        """The page is not finished and its alert is still triggered: dialling it is still wanted."""
        ...

    async def pages_for(self, alert_id: int) -> list[Page]: ...

    async def pages_for_alerts(self, alert_ids: list[int]) -> list[Page]:
        """The pages of every alert in ``alert_ids`` in one query, in order of id (a page listing many alerts)."""
        ...

    async def unsent_pages(self) -> list[Page]:
        """Pages still 'due' whose alert is triggered: what a crash left unsent."""
        ...

    async def mark_page_sent(self, page_id: int, *, now: float) -> None: ...

    async def finish_page(
        self, page_id: int, *, outcome: str, detail: str, now: float, note: TimelineEntry | None
    ) -> Page | None:
        """Record a page's outcome once; returns None if it was already finished or unknown."""
        ...

    async def latest_alert_paged_to(self, engineer: str, *, statuses: tuple[str, ...]) -> Alert | None: ...

    async def was_paged(self, alert_id: int, engineer: str) -> bool: ...

    async def add_timeline(self, entry: TimelineEntry) -> None: ...

    async def timeline(self, alert_id: int) -> list[TimelineEntry]: ...

    async def timelines_for_alerts(self, alert_ids: list[int]) -> list[TimelineEntry]:
        """The timeline entries of every alert in ``alert_ids`` in one query, oldest first."""
        ...

    # Live calls' flow state (providers.call_session.SessionStore): JSON-able data per call id.
    async def save_call_session(self, call_id: str, data: dict[str, Any]) -> None: ...

    async def load_call_session(self, call_id: str) -> dict[str, Any] | None: ...

    async def delete_call_session(self, call_id: str) -> None: ...

    # Overrides added at run time (gateway/overrides.py merges them into the config's teams).
    async def add_override(self, new: NewOverride, *, now: float) -> StoredOverride:
        """Insert it (and, on PostgreSQL, push {"overrides": team} to every gateway in the same transaction)."""
        ...

    async def list_overrides(self, team: str | None = None) -> list[StoredOverride]:
        """Overrides not deleted, oldest first (creation order: the latest wins)."""
        ...

    async def delete_override(self, override_id: int, *, team: str, by: str, now: float) -> StoredOverride | None:
        """Mark it deleted (pushed like ``add_override``); None when ``team`` has no such live override."""
        ...

    # Calendar feeds: the secret itself is never stored, only its SHA-256 (hex).
    async def add_calendar_feed(self, *, team: str | None, engineer: str | None, secret_sha256: str,
                                created_by: str, now: float) -> CalendarFeed: ...

    async def list_calendar_feeds(self) -> list[CalendarFeed]:
        """Feeds not revoked, oldest first."""
        ...

    async def find_calendar_feed(self, secret_sha256: str) -> CalendarFeed | None:
        """The live feed with this secret hash, or None (unknown or revoked)."""
        ...

    async def revoke_calendar_feed(self, feed_id: int, *, by: str, now: float) -> CalendarFeed | None:
        """Revoke a live feed; None when there is no such live feed."""
        ...

    # Maintenance windows added at run time, alerts held by maintenance, heartbeats' check-ins (migration 005).
    async def add_maintenance(self, new: NewMaintenance, *, now: float) -> StoredMaintenance:
        """Insert it (on PostgreSQL, push {"maintenance": id} to every gateway in the same transaction)."""
        ...

    async def list_maintenance(self) -> list[StoredMaintenance]:
        """Every window added at run time, ended ones too, oldest first."""
        ...

    async def end_maintenance(self, window_id: int, *, by: str, now: float) -> StoredMaintenance | None:
        """End a window early (pushed like ``add_maintenance``); None when no such window is still on or ahead."""
        ...

    async def create_held_alert(self, new: NewAlert, *, now: float, note: str,
                                windows: tuple[HoldWindow, ...]) -> tuple[Alert, bool]:
        """``create_alert`` with no escalation due and a hold, in one transaction (pushed on PostgreSQL).
        An open alert with the same dedup key is returned unchanged with ``False``."""
        ...

    async def list_holds(self) -> list[Hold]:
        ...

    async def release_hold(self, alert_id: int, *, now: float, note: str) -> bool:
        """Drop the hold and, when the alert is still triggered, start its escalation now (with ``note``).
        Only the first caller releases it (True); resolved or acknowledged alerts stay quiet (False)."""
        ...

    async def heartbeat_seen(self, name: str, *, now: float) -> None:
        """Record a check-in (the latest one counts)."""
        ...

    async def heartbeats_seen(self) -> dict[str, float]:
        """Each heartbeat's last check-in."""
        ...

    # Personal notification rules (gateway/notification_rules.py, gateway/rule_book.py) and the later pages
    # they write: a page with ``due_at`` stays 'due' until released when due, then goes out like any page.
    async def change_notification_rules(self, engineer: str, rules: tuple[NotificationRule, ...] | None, *,
                                        by: str, now: float) -> NotificationRuleChange:
        """Record a change (``None``: back to the config's) as a new row; on PostgreSQL, push
        {"notification_rules": engineer} to every gateway in the same transaction."""
        ...

    async def notification_rule_sets(self, engineer: str | None = None) -> list[NotificationRuleChange]:
        """The latest change of each engineer (or of ``engineer``) whose rules are set at run time."""
        ...

    async def next_page_due(self) -> float | None:
        """The earliest ``due_at`` of this gateway's pages still due whose alert is triggered."""
        ...

    async def later_pages_due(self, now: float) -> list[Page]:
        """This gateway's pages with a ``due_at`` by ``now``, still due, whose alert is triggered (a read)."""
        ...

    async def release_page(self, page_id: int) -> Page | None:
        """Clear the ``due_at`` of this gateway's page if it is still due, and return it: from then on a plain
        unsent page (sent again after a crash, like any page written as due). None when it was finished
        meanwhile, or another gateway took it over. Released one at a time, just before it is sent, so an
        error part-way leaves the rest due (looked at again); and safe to run again on a connection the
        server dropped (a page released already is returned again)."""
        ...

    # Handoff notices and on-call summaries: claimed (written) before they are sent, so each goes out once.
    async def claim_notice(self, key: NoticeKey, *, now: float, lease_s: float) -> Notice | None:
        """Write ``key`` as being sent by the caller until ``now + lease_s``, and return it; None when it was
        sent already (or failed), or another sender holds it. A claim whose lease ran out without a finish (its
        gateway died while sending) may be taken again."""
        ...

    async def finish_notice(self, notice_id: int, *, outcome: str, detail: str, now: float) -> None:
        """Record how the send went ("sent" or "failed"): a finished notice is never claimed again."""
        ...

    async def find_notice(self, key: NoticeKey) -> Notice | None:
        """The notice written under ``key``, or None (never claimed)."""
        ...

    # Signed action links (gateway/action_links.py): each works once, on whichever gateway it is used.
    async def use_action_link(self, nonce: str, *, alert_id: int, action: str, engineer: str, now: float) -> bool:
        """Record the one use of the link with ``nonce``; False (and nothing written) when it was used before."""
        ...

    async def latest_alert(self, dedup_key: str) -> Alert | None:
        """The newest alert stored under ``dedup_key``, open or resolved (a heartbeat's last lateness)."""
        ...

    async def extend_hold(self, alert_id: int, *, expect: tuple[HoldWindow, ...], windows: tuple[HoldWindow, ...],
                          now: float, note: str) -> bool:
        """Hold an alert on by ``windows`` (its own are over, others on now match it), with ``note`` on its
        timeline, if its hold is still ``expect``; False: released or changed meanwhile (here or elsewhere)."""
        ...
