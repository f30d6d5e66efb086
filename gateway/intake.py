"""Normalize every inbound alert format to ``AlertSignal``.

Each parser takes the already-decoded JSON body and returns the signals it
carries, or raises ``IntakeError`` naming the JSON path at fault. Nothing else
escapes on bad input: every value is type-checked before it is used.

Formats: our own generic API, Alertmanager webhook v4, Grafana Alerting
webhook (v1) and PagerDuty Events API v2. Unknown fields are ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.signals import AlertSignal, IntakeError

ACTIONS = ("trigger", "acknowledge", "resolve")
PRIORITIES = ("high", "low")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time: "not set" in Alertmanager and Grafana

_ALERT_ACTIONS = {"firing": "trigger", "resolved": "resolve"}
_MISSING: Any = object()

# ------------------------------------------------------------------ readers


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _join(path: str, key: str) -> str:
    return key if path in ("", "$") else f"{path}.{key}"


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise IntakeError(path, f"must be an object, got {_type_name(value)}")
    return value


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """The value at ``key``; an absent key and JSON null both read as missing."""
    value = obj.get(key, _MISSING)
    return _MISSING if value is None else value


def _opt_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        raise IntakeError(_join(path, key), f"must be a string, got {_type_name(value)}")
    return value


def _req_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _opt_str(obj, key, path)
    if value is None or not value.strip():
        raise IntakeError(_join(path, key), "is required and must not be blank")
    return value


def _choice(obj: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]) -> str:
    value = _opt_str(obj, key, path)
    if value is None:
        raise IntakeError(_join(path, key), f"is required, one of {', '.join(allowed)}")
    if value not in allowed:
        raise IntakeError(_join(path, key), f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _str_map(obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    """An optional object whose values are all strings (Alertmanager labels, annotations)."""
    value = _get(obj, key)
    if value is _MISSING:
        return {}
    field = _join(path, key)
    mapping = _object(value, field)
    result: dict[str, str] = {}
    for name, item in mapping.items():
        if not isinstance(name, str):
            raise IntakeError(field, "keys must be strings")
        if not isinstance(item, str):
            raise IntakeError(f"{field}.{name}", f"must be a string, got {_type_name(item)}")
        result[name] = item
    return result


def _opt_int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise IntakeError(_join(path, key), f"must be an integer, got {_type_name(value)}")
    return value


def _check_length(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise IntakeError(field, f"must be at most {limit} characters, got {len(value)}")


# ------------------------------------------------------------------ text


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: object, path: str = "$") -> None:
    """Raise IntakeError naming the first string (value or object key) that is not valid Unicode text.

    JSON may escape a lone UTF-16 surrogate (``"\\ud800"``); Python decodes it into a ``str`` that can
    be neither stored nor sent on (UTF-8 cannot encode it). This walk checks a whole decoded body at the
    intake edge, so every field (summary, dedup_key, labels, details, message, by...) is covered at once.
    """
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise IntakeError(where, "is not valid Unicode text (it holds a lone UTF-16 surrogate)")
        elif isinstance(item, dict):
            if any(_SURROGATE.search(key) for key in item if isinstance(key, str)):
                raise IntakeError(where, "has a key that is not valid Unicode text (a lone UTF-16 surrogate)")
            stack.extend(reversed([(child, _join(where, str(key))) for key, child in item.items()]))
        elif isinstance(item, list):
            stack.extend(reversed([(child, f"{where}[{index}]") for index, child in enumerate(item)]))


# ------------------------------------------------------------------ generic API


def _scalar_text(value: object, field: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise IntakeError(field, f"must be a string, number or boolean, got {_type_name(value)}")


def parse_generic(body: object) -> list[AlertSignal]:
    """Our own format (source "api"); see the module docs of the HTTP API for the fields."""
    obj = _object(body, "$")
    action = _opt_str(obj, "action", "")
    if action is None:
        action = "trigger"
    elif action not in ACTIONS:
        raise IntakeError("action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")

    dedup_key = _opt_str(obj, "dedup_key", "")
    if dedup_key is not None:
        if not dedup_key:
            raise IntakeError("dedup_key", "must not be empty")
        _check_length(dedup_key, "dedup_key", MAX_DEDUP_KEY)
    elif action != "trigger":
        raise IntakeError("dedup_key", f"is required for {action}")

    summary = _opt_str(obj, "summary", "") or ""
    if action == "trigger" and not summary.strip():
        raise IntakeError("summary", "is required for trigger and must not be blank")
    _check_length(summary, "summary", MAX_SUMMARY)

    details_value = _get(obj, "details")
    details = {} if details_value is _MISSING else dict(_object(details_value, "details"))

    labels: dict[str, str] = {}
    labels_value = _get(obj, "labels")
    if labels_value is not _MISSING:
        for name, item in _object(labels_value, "labels").items():
            if not isinstance(name, str):
                raise IntakeError("labels", "keys must be strings")
            labels[name] = _scalar_text(item, f"labels.{name}")

    priority = _opt_str(obj, "priority", "")
    if priority is not None and priority not in PRIORITIES:
        raise IntakeError("priority", f"must be one of {', '.join(PRIORITIES)}, got {priority!r}")

    team = _opt_str(obj, "team", "")
    if team is not None and not team.strip():
        raise IntakeError("team", "must not be blank")

    return [
        AlertSignal(
            action=action,
            source="api",
            dedup_key=dedup_key,
            summary=summary,
            details=details,
            labels=labels,
            priority=priority,
            team=team,
        )
    ]


# ------------------------------------------------------------------ Alertmanager and Grafana


@dataclass(frozen=True, kw_only=True)
class _Group:
    """The top-level fields an Alertmanager-style body shares with each of its alerts."""

    receiver: str | None
    external_url: str | None
    group_key: str | None
    truncated_alerts: int


@dataclass(frozen=True, kw_only=True)
class _Alert:
    """The part of one alert that Alertmanager and Grafana send alike."""

    obj: dict[str, Any]
    path: str
    action: str
    fingerprint: str
    labels: dict[str, str]
    annotations: dict[str, str]
    details: dict[str, Any]


def _derived_fingerprint(labels: Mapping[str, str]) -> str:
    """A stable stand-in for a missing fingerprint: sha256 of the sorted label set."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _parse_group(obj: dict[str, Any]) -> tuple[_Group, list[Any]]:
    alerts = obj.get("alerts")
    if not isinstance(alerts, list):
        raise IntakeError("alerts", f"is required and must be an array, got {_type_name(alerts)}")
    truncated = _opt_int(obj, "truncatedAlerts", "") or 0
    if truncated < 0:
        raise IntakeError("truncatedAlerts", "must not be negative")
    group = _Group(
        receiver=_opt_str(obj, "receiver", ""),
        external_url=_opt_str(obj, "externalURL", ""),
        group_key=_opt_str(obj, "groupKey", ""),
        truncated_alerts=truncated,
    )
    return group, alerts


def _parse_alert(value: object, path: str, group: _Group) -> _Alert:
    """Status, labels, annotations, fingerprint and the shared details of one alert."""
    alert = _object(value, path)
    status = _opt_str(alert, "status", path)
    if status not in _ALERT_ACTIONS:
        got = "nothing" if status is None else repr(status)
        raise IntakeError(_join(path, "status"), f"must be firing or resolved, got {got}")
    labels = _str_map(alert, "labels", path)
    annotations = _str_map(alert, "annotations", path)
    fingerprint = _opt_str(alert, "fingerprint", path) or _derived_fingerprint(labels)

    details: dict[str, Any] = {"annotations": annotations}
    for key in ("startsAt", "endsAt", "generatorURL"):
        text = _opt_str(alert, key, path)
        if text and text != ZERO_TIME:
            details[key] = text
    if group.external_url:
        details["externalURL"] = group.external_url
    if group.receiver:
        details["receiver"] = group.receiver
        labels.setdefault("receiver", group.receiver)
    if group.group_key:
        details["groupKey"] = group.group_key
    if group.truncated_alerts > 0:
        details["truncatedAlerts"] = group.truncated_alerts

    return _Alert(
        obj=alert,
        path=path,
        action=_ALERT_ACTIONS[status],
        fingerprint=fingerprint,
        labels=labels,
        annotations=annotations,
        details=details,
    )


def _annotated_summary(alert: _Alert) -> str:
    return alert.annotations.get("summary") or alert.annotations.get("description") or ""


def _clip(summary: str) -> str:
    """Sources we do not control may send long annotations: keep the signal within bounds."""
    return summary[:MAX_SUMMARY]


def _check_version(obj: Mapping[str, Any], expected: str, sender: str) -> None:
    version = _opt_str(obj, "version", "")
    if version is not None and version != expected:
        raise IntakeError("version", f"must be {expected!r} for {sender}, got {version!r}")


def parse_alertmanager(body: object) -> list[AlertSignal]:
    """Alertmanager webhook v4: one signal per alert, driven by the alert's own status."""
    obj = _object(body, "$")
    _check_version(obj, "4", "an Alertmanager webhook")
    group, alerts = _parse_group(obj)
    signals: list[AlertSignal] = []
    for index, value in enumerate(alerts):
        alert = _parse_alert(value, f"alerts[{index}]", group)
        summary = _annotated_summary(alert)
        if not summary:
            name = alert.labels.get("alertname") or f"alert {alert.fingerprint}"
            instance = alert.labels.get("instance")
            summary = f"{name} on {instance}" if instance else name
        signals.append(
            AlertSignal(
                action=alert.action,
                source="alertmanager",
                dedup_key=f"alertmanager:{alert.fingerprint}",
                summary=_clip(summary),
                details=alert.details,
                labels=alert.labels,
                receiver=group.receiver or "",
            )
        )
    return signals


def parse_grafana(body: object) -> list[AlertSignal]:
    """Grafana Alerting webhook: Alertmanager's shape plus orgId, values and links."""
    obj = _object(body, "$")
    _check_version(obj, "1", "a Grafana webhook")
    group, alerts = _parse_group(obj)
    top_org = _opt_int(obj, "orgId", "")
    title = _opt_str(obj, "title", "")
    message = _opt_str(obj, "message", "")
    signals: list[AlertSignal] = []
    for index, value in enumerate(alerts):
        alert = _parse_alert(value, f"alerts[{index}]", group)
        org = _opt_int(alert.obj, "orgId", alert.path)
        org_id = org if org is not None else top_org if top_org is not None else 1

        details = dict(alert.details)
        value_string = _opt_str(alert.obj, "valueString", alert.path)
        if value_string:
            details["valueString"] = value_string
        values = _get(alert.obj, "values")
        if values is not _MISSING:
            details["values"] = _object(values, _join(alert.path, "values"))
        for key in ("silenceURL", "dashboardURL", "panelURL"):
            url = _opt_str(alert.obj, key, alert.path)
            if url:
                details[key] = url
        if title:
            details["title"] = title
        if message:
            details["message"] = message

        summary = (
            _annotated_summary(alert)
            or alert.labels.get("alertname")
            or title
            or f"alert {alert.fingerprint}"
        )
        signals.append(
            AlertSignal(
                action=alert.action,
                source="grafana",
                dedup_key=f"grafana:{org_id}:{alert.fingerprint}",
                summary=_clip(summary),
                details=details,
                labels=alert.labels,
                receiver=group.receiver or "",
            )
        )
    return signals


# ------------------------------------------------------------------ PagerDuty Events API v2


def _opt_list_of_objects(obj: Mapping[str, Any], key: str) -> list[Any] | None:
    value = _get(obj, key)
    if value is _MISSING:
        return None
    if not isinstance(value, list):
        raise IntakeError(key, f"must be an array, got {_type_name(value)}")
    for index, item in enumerate(value):
        _object(item, f"{key}[{index}]")
    return value


def parse_pagerduty(body: object) -> list[AlertSignal]:
    """PagerDuty Events API v2, validated as PagerDuty does (except the routing key length)."""
    obj = _object(body, "$")
    routing_key = _req_str(obj, "routing_key", "")
    action = _choice(obj, "event_action", "", ACTIONS)

    dedup_key = _opt_str(obj, "dedup_key", "") or None  # PagerDuty treats blank as missing
    if dedup_key is None and action != "trigger":
        raise IntakeError("dedup_key", f"is required for {action}")
    if dedup_key is not None:
        _check_length(dedup_key, "dedup_key", MAX_DEDUP_KEY)

    summary = ""
    labels: dict[str, str] = {}
    details: dict[str, Any] = {}
    if action == "trigger":  # PagerDuty reads payload and context only on trigger
        payload_value = _get(obj, "payload")
        if payload_value is _MISSING:
            raise IntakeError("payload", "is required for trigger")
        payload = _object(payload_value, "payload")
        summary = _req_str(payload, "summary", "payload")
        _check_length(summary, "payload.summary", MAX_SUMMARY)
        labels["severity"] = _choice(payload, "severity", "payload", PAGERDUTY_SEVERITIES)
        labels["source"] = _req_str(payload, "source", "payload")
        for key in ("component", "group", "class"):
            text = _opt_str(payload, key, "payload")
            if text:
                labels[key] = text

        custom_details = _get(payload, "custom_details")
        if custom_details is not _MISSING:
            details["custom_details"] = custom_details
        timestamp = _opt_str(payload, "timestamp", "payload")
        if timestamp:
            details["timestamp"] = timestamp
        for key in ("client", "client_url"):
            text = _opt_str(obj, key, "")
            if text:
                details[key] = text
        for key in ("links", "images"):
            items = _opt_list_of_objects(obj, key)
            if items is not None:
                details[key] = items

    return [
        AlertSignal(
            action=action,
            source="pagerduty",
            dedup_key=dedup_key,
            summary=summary,
            details=details,
            labels=labels,
            routing_key=routing_key,
        )
    ]


def parse_splunk(body: object) -> list[AlertSignal]:
    """Splunk's webhook alert action: ``sid``, ``search_name``, ``app``, ``owner``, ``results_link`` and the
    first result row. It has no status and no dedup key: every run triggers, and the same search with the
    same result row is one alert while it is open (the dedup key hashes search name and row).
    """
    obj = _object(body, "$")
    sid = _req_str(obj, "sid", "")
    search_name = _opt_str(obj, "search_name", "")
    result: dict[str, str] = {}
    raw_result = _get(obj, "result")
    if raw_result is not _MISSING:
        for name, value in _object(raw_result, "result").items():
            if isinstance(value, str):
                result[name] = value
            elif isinstance(value, list) and all(isinstance(v, str) for v in value):
                result[name] = ",".join(value)  # a multi-value field
            else:
                raise IntakeError(_join("result", name), f"must be a string or a list of strings, "
                                                         f"got {_type_name(value)}")
    labels = dict(result)
    for key in ("search_name", "app", "owner"):
        value = _opt_str(obj, key, "")
        if value is not None:
            labels[key] = value
    fields = ", ".join(f"{k}={v}" for k, v in list(result.items())[:3])
    summary = (search_name or "Splunk alert") + (f": {fields}" if fields else "")
    digest = hashlib.sha256(json.dumps([search_name, sorted(result.items())]).encode()).hexdigest()[:16]
    details: dict[str, Any] = {"sid": sid, "result": result}
    link = _opt_str(obj, "results_link", "")
    if link:
        details["results_link"] = link
    return [AlertSignal(action="trigger", source="splunk", dedup_key=f"splunk:{digest}",
                        summary=summary[:MAX_SUMMARY], details=details, labels=labels)]
