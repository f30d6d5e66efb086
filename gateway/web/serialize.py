"""How store records look in the HTTP API (times as ISO 8601 UTC, numbers masked)."""

from __future__ import annotations

from typing import Any

from core.clock import iso
from core.phone import mask
from gateway.store import Alert, Escalation, Page, TimelineEntry


def alert_json(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.id,
        "status": alert.status,
        "priority": alert.priority,
        "summary": alert.summary,
        "source": alert.source,
        "dedup_key": alert.dedup_key,
        "team": alert.team,
        "policy": alert.policy,
        "route": alert.route,
        "labels": alert.labels,
        "details": alert.details,
        "created_at": iso(alert.created_at),
        "updated_at": iso(alert.updated_at),
        "acknowledged_by": alert.acknowledged_by,
        "acknowledged_at": iso(alert.acknowledged_at),
        "resolved_at": iso(alert.resolved_at),
    }


def page_json(page: Page) -> dict[str, Any]:
    return {
        "id": page.id,
        "step": None if page.step is None else page.step + 1,
        "round": None if page.repeat is None else page.repeat + 1,
        "engineer": page.engineer,
        "number": page.number if page.channel == "chat" else mask(page.number),  # chat: the destination's name
        "channel": page.channel,
        "status": page.status,
        "outcome": page.outcome,
        "detail": page.detail,
        "created_at": iso(page.created_at),
        "updated_at": iso(page.updated_at),
        "due_at": iso(page.due_at) if page.due_at is not None else None,
    }


def escalation_json(esc: Escalation | None) -> dict[str, Any] | None:
    if esc is None:
        return None
    return {"next_step": esc.step + 1, "round": esc.repeat + 1, "next_due": iso(esc.next_due),
            "running": esc.next_due is not None}


def timeline_json(entry: TimelineEntry) -> dict[str, Any]:
    return {"at": iso(entry.at), "kind": entry.kind, "message": entry.message, "data": entry.data}
