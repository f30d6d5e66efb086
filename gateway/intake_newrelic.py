"""New Relic workflow webhooks (Alerts > Workflows > Notify > Webhook) to ``AlertSignal``.

The workflow's default payload template renders, per notification of an issue::

    {"id": <issueId>, "issueUrl": <issuePageUrl>, "title": <annotations.title[0]>,
     "priority": "CRITICAL|HIGH|MEDIUM|LOW", "impactedEntities": [<entity names>], "totalIncidents": <n>,
     "state": "CREATED|ACTIVATED|CLOSED", "trigger": "STATE_CHANGE|INCIDENT_ADDED|USER_ACTION|...",
     "isCorrelated": <bool>, "createdAt": <ms>, "updatedAt": <ms>, "sources": [...],
     "alertPolicyNames": [...], "alertConditionNames": [...], "workflowName": "..."}

- The issue id is the dedup key (``newrelic:<id>``): every notification of an issue acts on one alert.
- ``state`` CREATED and ACTIVATED trigger (the second is a no-op while the alert is open); CLOSED (and
  DEACTIVATED) resolve; ACKNOWLEDGED acknowledges, and so does an open state whose payload names who
  acknowledged it (``acknowledgedBy``, which a customized template can add). The default template says
  nothing about acknowledgement: New Relic's notification of an acknowledgement then carries the issue's
  state (ACTIVATED) and ``trigger: USER_ACTION``, like any other person's change, so it changes nothing here.
  ``owner`` is not taken as an acknowledgement: an assigned issue is not an acknowledged one.
- ``priority`` CRITICAL and HIGH page as high priority, MEDIUM and LOW as low (absent: the route decides);
  it is also the ``priority`` label.
- Labels for routing: ``priority``, ``workflow``, ``policy``, ``condition``, ``entity`` and ``origin`` (the
  lists joined with ","), plus a customized template's ``labels`` or ``tags`` object (string or list values).

Templates are edited by people, so the field names of other published templates are read too: ``issueId``,
``issuePageUrl``, ``severity``, ``source``, ``policyName``, ``conditionName``, ``entityNames``, and
``impactedEntities`` as entity objects with a ``name``. Unknown fields are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.intake import MAX_DEDUP_KEY, MAX_SUMMARY, check_text
from gateway.signals import AlertSignal, IntakeError

_TRIGGER_STATES = ("CREATED", "ACTIVATED")
_RESOLVE_STATES = ("CLOSED", "DEACTIVATED")
STATES = (*_TRIGGER_STATES, "ACKNOWLEDGED", *_RESOLVE_STATES)
PRIORITIES = {"CRITICAL": "high", "HIGH": "high", "MEDIUM": "low", "LOW": "low"}
_NOBODY = ("", "N/A", "null")


def parse_newrelic(body: object) -> list[AlertSignal]:
    """One signal for the notification's issue; IntakeError naming the field at fault."""
    if not isinstance(body, dict):
        raise IntakeError("$", f"must be an object, got {_kind(body)}")
    check_text(body)
    issue_id = _text(body, "id", "issueId")
    if issue_id is None or not issue_id.strip():
        raise IntakeError("id", "is required: the issue id ({{ json issueId }} in the payload template)")
    dedup_key = f"newrelic:{issue_id.strip()}"
    if len(dedup_key) > MAX_DEDUP_KEY:
        raise IntakeError("id", f"must be at most {MAX_DEDUP_KEY - len('newrelic:')} characters")

    raw_state = _text(body, "state")
    if raw_state is None:
        raise IntakeError("state", f"is required, one of {', '.join(STATES)}")
    state = raw_state.strip().upper()
    if state not in STATES:
        raise IntakeError("state", f"must be one of {', '.join(STATES)}, got {raw_state!r}")

    priority_field = "priority" if "priority" in body else "severity"
    raw_priority = _text(body, "priority", "severity")
    priority = None
    if raw_priority is not None:
        priority = PRIORITIES.get(raw_priority.strip().upper())
        if priority is None:
            raise IntakeError(priority_field, f"must be one of {', '.join(PRIORITIES)}, got {raw_priority!r}")

    conditions = _names(body, "alertConditionNames", "conditionName")
    policies = _names(body, "alertPolicyNames", "policyName")
    entities = _names(body, "impactedEntities", "entityNames")
    origins = _names(body, "sources", "source")
    labels = _custom_labels(body)
    for name, values in (("condition", conditions), ("policy", policies), ("entity", entities),
                         ("origin", origins)):
        if values:
            labels[name] = ",".join(values)
    workflow = _text(body, "workflowName")
    if workflow:
        labels["workflow"] = workflow
    if raw_priority is not None:
        labels["priority"] = raw_priority.strip().lower()

    title = (_text(body, "title") or "").strip()
    summary = title or (conditions[0] if conditions else f"New Relic issue {issue_id.strip()}")
    acknowledged_by = _acknowledged_by(body)
    if state in _RESOLVE_STATES:
        action = "resolve"
    elif state == "ACKNOWLEDGED" or acknowledged_by:
        action = "acknowledge"
    else:
        action = "trigger"

    details: dict[str, Any] = {"state": state}
    for key in ("issueUrl", "issuePageUrl", "trigger", "triggerEvent", "totalIncidents", "isCorrelated",
                "createdAt", "updatedAt", "acknowledgedAt", "closedAt", "owner"):
        value = body.get(key)
        if isinstance(value, str | int | float | bool) and value != "":
            details[key] = value
    if acknowledged_by:
        details["acknowledgedBy"] = acknowledged_by
    return [AlertSignal(action=action, source="newrelic", dedup_key=dedup_key, summary=summary[:MAX_SUMMARY],
                        details=details, labels=labels, priority=priority)]


def _kind(value: object) -> str:
    return {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _text(body: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` present and not null, which must be a string (a number is read as text: ids)."""
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise IntakeError(key, f"must be a string, got {_kind(value)}")
        return str(value)
    return None


def _names(body: Mapping[str, Any], *keys: str) -> list[str]:
    """A list of names (strings, or objects with a ``name``), or one string; the first key present.

    Each name once: the ``accumulations`` lists have one item per incident, so a correlated issue with two
    incidents of one condition names it twice, and a label ``Memory high,Memory high`` matches no route.
    """
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            return [value] if value else []
        if not isinstance(value, list):
            raise IntakeError(key, f"must be an array of names, got {_kind(value)}")
        names: dict[str, None] = {}  # ordered, and each name once in linear time
        for index, item in enumerate(value):
            if isinstance(item, dict):
                item = item.get("name")
            if isinstance(item, str | int) and not isinstance(item, bool):
                if str(item):
                    names[str(item)] = None
            elif item is not None:
                raise IntakeError(f"{key}[{index}]", f"must be a name, got {_kind(item)}")
        return list(names)
    return []


def _custom_labels(body: Mapping[str, Any]) -> dict[str, str]:
    """A customized template's ``labels`` or ``tags``: values as text, lists joined with ","."""
    labels: dict[str, str] = {}
    for key in ("labels", "tags"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise IntakeError(key, f"must be an object, got {_kind(value)}")
        for name, item in value.items():
            if isinstance(item, list):
                parts = [str(part) for part in item if isinstance(part, str | int | float) and not isinstance(part,
                                                                                                           bool)]
                labels[name] = ",".join(parts)
            elif isinstance(item, str | int | float) and not isinstance(item, bool):
                labels[name] = str(item)
            elif isinstance(item, bool):
                labels[name] = "true" if item else "false"
            elif item is not None:
                raise IntakeError(f"{key}.{name}", f"must be text or a list, got {_kind(item)}")
    return labels


def _acknowledged_by(body: Mapping[str, Any]) -> str:
    """Who acknowledged the issue, when a customized template says (``{{ json acknowledgedBy }}``)."""
    value = body.get("acknowledgedBy")
    return value.strip() if isinstance(value, str) and value.strip() not in _NOBODY else ""
