"""``GET /openapi.json``: an OpenAPI 3.1 description of the HTTP API, built from the app's real routes.

The document lists exactly the routes the app serves (the sandbox's only with the sandbox, Twilio's
webhooks only with Twilio), so it cannot drift from the router: each route takes its description from
``OPERATIONS`` below, a provider's webhook from the provider's template, and a route nobody described
still appears, marked undocumented (a test makes sure there is none). It is public, like /healthz: it
holds no secret, and monitoring systems and people set up integrations from it.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.web.auth import Auth, Role, auth, declared, declared_role
from gateway.web.fallback import is_catch_all
from gateway.web.json_body import MAX_DEPTH
from gateway.web.params import MAX_ID

routes = web.RouteTableDef()

Schema = dict[str, Any]

UNDOCUMENTED = "undocumented"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TIME = {"type": "string", "format": "date-time"}
_TEXT_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "description": "Every error of the API (PagerDuty's endpoint has its own shape).",
        "required": ["error", "message", "details"],
        "properties": {
            "error": {"type": "string", "description": "a stable id: unauthorized, malformed_json, invalid_field..."},
            "message": {"type": "string"},
            "details": {"type": "object", "description": "e.g. field (for invalid_field), reason (for malformed_json)"},
        },
    },
    "PagerDutyError": {
        "type": "object",
        "required": ["status", "message", "errors", "error", "details"],
        "properties": {
            "status": {"enum": ["invalid event", "unauthorized"]},
            "message": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "string"}},
            "error": {"type": "string"},
            "details": {"type": "object"},
        },
    },
    "Alert": {
        "type": "object",
        "required": ["id", "status", "priority", "summary", "source", "dedup_key", "team", "policy", "route",
                     "labels", "details", "created_at", "updated_at", "acknowledged_by", "acknowledged_at",
                     "resolved_at"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "status": {"enum": ["triggered", "acknowledged", "resolved"]},
            "priority": {"enum": ["high", "low"]},
            "summary": {"type": "string"},
            "source": {"type": "string"},
            "dedup_key": {"type": "string"},
            "team": {"type": "string"},
            "policy": {"type": "string"},
            "route": {"type": "string"},
            "labels": _TEXT_MAP,
            "details": {"type": "object"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "acknowledged_by": _nullable("string"),
            "acknowledged_at": _nullable("string", format="date-time"),
            "resolved_at": _nullable("string", format="date-time"),
        },
    },
    "ChangedAlert": {
        "allOf": [_ref("Alert"), {"type": "object", "required": ["changed"],
                                  "properties": {"changed": {"type": "boolean"}}}],
    },
    "Page": {
        "type": "object",
        "required": ["id", "step", "round", "engineer", "number", "channel", "status", "outcome", "detail",
                     "created_at", "updated_at"],
        "properties": {
            "id": {"type": "integer"},
            "step": _nullable("integer"),
            "round": _nullable("integer"),
            "engineer": _nullable("string"),
            "number": {"type": "string", "description": "masked: +1555***0001 (an email address likewise; a chat "
                                                        "page: the destination's name)"},
            "channel": {"enum": ["call", "sms", "email", "chat"]},
            "status": {"enum": ["due", "sent", "done"]},
            "outcome": _nullable("string"),
            "detail": {"type": "string"},
            "created_at": _TIME,
            "updated_at": _TIME,
            "due_at": _nullable("string", format="date-time",
                                description="a personal notification rule's later page: not sent before then"),
        },
    },
    "AlertDetail": {
        "allOf": [_ref("Alert"), {
            "type": "object",
            "required": ["escalation", "pages", "timeline"],
            "properties": {
                "escalation": {"oneOf": [{"type": "null"}, {
                    "type": "object",
                    "required": ["next_step", "round", "next_due", "running"],
                    "properties": {"next_step": {"type": "integer"}, "round": {"type": "integer"},
                                   "next_due": _nullable("string", format="date-time"),
                                   "running": {"type": "boolean"}},
                }]},
                "pages": {"type": "array", "items": _ref("Page")},
                "timeline": {"type": "array", "items": {
                    "type": "object",
                    "required": ["at", "kind", "message", "data"],
                    "properties": {"at": _TIME, "kind": {"type": "string"}, "message": {"type": "string"},
                                   "data": {"type": "object"}},
                }},
            },
        }],
    },
    "AlertList": {
        "type": "object", "required": ["alerts"],
        "properties": {"alerts": {"type": "array", "items": _ref("Alert")}},
    },
    "IngestResult": {
        "type": "object",
        "required": ["action", "dedup_key", "id", "status"],
        "properties": {
            "action": {"enum": ["trigger", "acknowledge", "resolve"]},
            "dedup_key": _nullable("string"),
            "id": _nullable("integer"),
            "status": {"enum": ["triggered", "acknowledged", "resolved", None]},
            "message": {"type": "string"},
        },
    },
    "IngestResults": {
        "type": "object", "required": ["alerts"],
        "properties": {"alerts": {"type": "array", "items": _ref("IngestResult")}},
    },
    "PagerDutyAccepted": {
        "type": "object",
        "required": ["status", "message", "dedup_key", "id"],
        "properties": {"status": {"const": "success"}, "message": {"type": "string"},
                       "dedup_key": {"type": "string"}, "id": _nullable("integer")},
    },
    "Direct": {
        "type": "object", "required": ["alert", "pages"],
        "properties": {"alert": _ref("Alert"), "pages": {"type": "array", "items": _ref("Page")}},
    },
    "Person": {
        "type": "object", "required": ["id", "name", "phone"],
        "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                       "phone": {"type": "string", "description": "masked"}},
    },
    "OnCall": {
        "type": "object",
        "required": ["at", "teams"],
        "properties": {
            "at": _TIME,
            "teams": {"type": "array", "items": {
                "type": "object",
                "required": ["team", "primary", "secondary", "until"],
                "properties": {
                    "team": {"type": "string"},
                    "primary": {"oneOf": [{"type": "null"}, _ref("Person")]},
                    "secondary": {"oneOf": [{"type": "null"}, _ref("Person")]},
                    "until": _nullable("string", format="date-time"),
                    "layer": _nullable("string"),  # the layer giving the answer; null without layers: or none active
                },
            }},
        },
    },
    "NewOverride": {
        "type": "object",
        "required": ["engineer", "start", "end"],
        "properties": {
            "role": {"enum": ["primary", "secondary"], "default": "primary"},
            "engineer": {"type": "string", "description": "an engineer id, a member of the team"},
            "start": {**_TIME, "description": "ISO 8601 with a UTC offset"},
            "end": {**_TIME, "description": "after start, at most 90 days later, not in the past"},
        },
    },
    "Override": {
        "type": "object",
        "required": ["source", "role", "engineer", "start", "end"],
        "properties": {
            "source": {"enum": ["config", "api"], "description": "from the YAML, or added at run time"},
            "id": {"type": "integer", "description": "run-time overrides only"},
            "role": {"enum": ["primary", "secondary"]},
            "engineer": {"type": "object", "required": ["id", "name"],
                         "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
            "start": _TIME,
            "end": _TIME,
            "created_by": {"type": "string", "description": "the API token's name or the signed-in user"},
            "created_at": _TIME,
            "deleted_by": _nullable("string"),
            "deleted_at": _nullable("string", format="date-time"),
        },
    },
    "OverrideList": {
        "type": "object", "required": ["team", "overrides"],
        "properties": {"team": {"type": "string"},
                       "overrides": {"type": "array", "items": _ref("Override"),
                                     "description": "the YAML's first, then run-time ones oldest first; "
                                                    "the latest listed wins where they overlap"}},
    },
    "NewCalendarFeed": {
        "type": "object",
        "description": "exactly one of team and engineer",
        "oneOf": [{"required": ["team"]}, {"required": ["engineer"]}],
        "properties": {"team": {"type": "string"}, "engineer": {"type": "string"}},
    },
    "CalendarFeed": {
        "type": "object",
        "required": ["id", "team", "engineer", "created_by", "created_at", "revoked_at"],
        "properties": {
            "id": {"type": "integer"},
            "team": _nullable("string"),
            "engineer": _nullable("string"),
            "created_by": {"type": "string"},
            "created_at": _TIME,
            "revoked_at": _nullable("string", format="date-time"),
            "revoked_by": _nullable("string"),
            "url": {"type": "string", "description": "only when created: the secret URL, shown once"},
            "message": {"type": "string"},
        },
    },
    "CalendarFeedList": {
        "type": "object", "required": ["feeds"],
        "properties": {"feeds": {"type": "array", "items": _ref("CalendarFeed")}},
    },
    "Queues": {
        "type": "object",
        "required": ["queues", "providers", "low_wait_warning_s", "low_waited_too_long_total"],
        "properties": {
            "queues": {"type": "array", "items": {
                "type": "object",
                "required": ["priority", "depth", "oldest_wait_s", "waiting_too_long"],
                "properties": {"priority": {"enum": ["high", "low"]}, "depth": {"type": "integer"},
                               "oldest_wait_s": _nullable("number"), "waiting_too_long": {"type": "integer"}},
            }},
            "providers": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "in_flight", "capacity", "reserved_for_high", "calls_per_second"],
                "properties": {"name": {"type": "string"}, "in_flight": {"type": "integer"},
                               "capacity": {"type": "integer"}, "reserved_for_high": {"type": "integer"},
                               "calls_per_second": _nullable("number")},
            }},
            "low_wait_warning_s": {"type": "number"},
            "low_waited_too_long_total": {"type": "integer"},
        },
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Readiness": {
        "type": "object", "required": ["status", "checks"],
        "properties": {"status": {"enum": ["ready", "not ready"]}, "checks": _TEXT_MAP,
                       "directories": {"type": "array", "description": "directory teams' groups (only when "
                                       "configured): status ok, stale (the last-known members in use while the "
                                       "directory is unreachable) or unavailable (never fetched: not ready), and "
                                       "the members who cannot be paged (unpageable_count; their names and "
                                       "reasons, unpageable, only for a request with an API token)",
                                       "items": {"type": "object"}}},
    },
    "Phone": {
        "type": "object",
        "required": ["number", "call", "calls", "sms"],
        "properties": {
            "number": {"type": "string"},
            "call": {"type": ["object", "null"], "description": "the current or last call: state, what it hears"},
            "calls": {"type": "integer"},
            "sms": {"type": "array", "items": {"type": "object"}},
            "reply": {"type": ["string", "null"], "description": "(reply only) the gateway's answer SMS"},
        },
    },
    "PhoneList": {
        "type": "object", "required": ["phones"],
        "properties": {"phones": {"type": "array", "items": _ref("Phone")}},
    },
    # ------------------------------------------------------------ request bodies
    "NewAlert": {
        "type": "object",
        "description": "Our own format. summary is required for trigger; dedup_key for acknowledge and resolve.",
        "properties": {
            "summary": {"type": "string", "maxLength": 1024},
            "details": {"type": "object"},
            "labels": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "priority": {"enum": ["high", "low"]},
            "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
            "team": {"type": "string", "minLength": 1},
            "action": {"enum": ["trigger", "acknowledge", "resolve"]},
        },
    },
    "AlertmanagerAlert": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"enum": ["firing", "resolved"]},
            "labels": _TEXT_MAP,
            "annotations": _TEXT_MAP,
            "startsAt": {"type": "string"},
            "endsAt": {"type": "string"},
            "generatorURL": {"type": "string"},
            "fingerprint": {"type": "string"},
        },
    },
    "AlertmanagerWebhook": {
        "type": "object",
        "description": "Alertmanager webhook v4: one alert per fingerprint, driven by each alert's status.",
        "required": ["alerts"],
        "properties": {
            "version": {"const": "4"},
            "receiver": {"type": "string"},
            "status": {"type": "string"},
            "externalURL": {"type": "string"},
            "groupKey": {"type": "string"},
            "truncatedAlerts": {"type": "integer", "minimum": 0},
            "groupLabels": _TEXT_MAP,
            "commonLabels": _TEXT_MAP,
            "commonAnnotations": _TEXT_MAP,
            "alerts": {"type": "array", "items": _ref("AlertmanagerAlert")},
        },
    },
    "GrafanaWebhook": {
        "type": "object",
        "description": "Grafana Alerting's webhook contact point: Alertmanager's shape plus orgId, title, message.",
        "required": ["alerts"],
        "properties": {
            "version": {"const": "1"},
            "orgId": {"type": "integer"},
            "title": {"type": "string"},
            "message": {"type": "string"},
            "receiver": {"type": "string"},
            "externalURL": {"type": "string"},
            "groupKey": {"type": "string"},
            "truncatedAlerts": {"type": "integer", "minimum": 0},
            "alerts": {"type": "array", "items": {"allOf": [_ref("AlertmanagerAlert"), {
                "type": "object",
                "properties": {"orgId": {"type": "integer"}, "valueString": {"type": "string"},
                               "values": {"type": "object"}, "silenceURL": {"type": "string"},
                               "dashboardURL": {"type": "string"}, "panelURL": {"type": "string"}},
            }]}},
        },
    },
    "SplunkWebhook": {
        "type": "object",
        "description": "Splunk's webhook alert action: each run triggers; the same search and row is one alert.",
        "required": ["sid"],
        "properties": {
            "sid": {"type": "string", "minLength": 1},
            "search_name": {"type": "string"},
            "app": {"type": "string"},
            "owner": {"type": "string"},
            "results_link": {"type": "string"},
            "result": {"type": "object", "additionalProperties": {
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
        },
    },
    "NewRelicWebhook": {
        "type": "object",
        "description": "A New Relic workflow's webhook, its default payload template (variant names of other "
                       "templates are read too: issueId, issuePageUrl, severity, ...). The issue id is the dedup "
                       "key; CREATED/ACTIVATED trigger, ACKNOWLEDGED (or acknowledgedBy) acknowledges, "
                       "CLOSED/DEACTIVATED resolve.",
        "required": ["id", "state"],
        "properties": {
            "id": {"type": ["string", "integer"]},
            "issueUrl": {"type": "string"},
            "title": {"type": "string"},
            "priority": {"enum": ["CRITICAL", "HIGH", "MEDIUM", "LOW"]},
            "impactedEntities": {"type": "array", "items": {"type": ["string", "object"]}},
            "totalIncidents": {"type": "integer"},
            "state": {"enum": ["CREATED", "ACTIVATED", "ACKNOWLEDGED", "CLOSED", "DEACTIVATED"]},
            "trigger": {"type": "string"},
            "isCorrelated": {"type": ["boolean", "string"]},
            "createdAt": {"type": "integer"},
            "updatedAt": {"type": "integer"},
            "sources": {"type": "array", "items": {"type": "string"}},
            "alertPolicyNames": {"type": "array", "items": {"type": "string"}},
            "alertConditionNames": {"type": "array", "items": {"type": "string"}},
            "workflowName": {"type": "string"},
            "acknowledgedBy": {"type": ["string", "null"]},
            "labels": {"type": "object"},
        },
    },
    "PagerDutyEvent": {
        "type": "object",
        "description": "PagerDuty Events API v2. routing_key is an API token or a route's routing_key.",
        "required": ["routing_key", "event_action"],
        "properties": {
            "routing_key": {"type": "string", "minLength": 1},
            "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
            "dedup_key": {"type": "string", "maxLength": 255},
            "payload": {
                "type": "object",
                "required": ["summary", "source", "severity"],
                "properties": {
                    "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "source": {"type": "string", "minLength": 1},
                    "severity": {"enum": ["critical", "error", "warning", "info"]},
                    "timestamp": {"type": "string"},
                    "component": {"type": "string"},
                    "group": {"type": "string"},
                    "class": {"type": "string"},
                    "custom_details": {},
                },
            },
            "client": {"type": "string"},
            "client_url": {"type": "string"},
            "links": {"type": "array", "items": {"type": "object"}},
            "images": {"type": "array", "items": {"type": "object"}},
        },
    },
    "DirectCall": {
        "type": "object",
        "description": "Exactly one of to (a phone number) and team (its primary is called).",
        "required": ["message"],
        "properties": {
            "to": {"type": "string"},
            "team": {"type": "string"},
            "message": {"type": "string", "minLength": 1, "maxLength": 1000},
            "priority": {"enum": ["high", "low"]},
        },
    },
    "DirectSms": {
        "type": "object",
        "description": "Exactly one of to (a phone number) and team (its primary is texted).",
        "required": ["message"],
        "properties": {
            "to": {"type": "string"},
            "team": {"type": "string"},
            "message": {"type": "string", "minLength": 1, "maxLength": 1600},
            "priority": {"enum": ["high", "low"]},
        },
    },
    "AlertAction": {
        "type": "object",
        "properties": {
            "by": {"type": "string", "minLength": 1, "maxLength": 200,
                   "description": "who did it (default: the API token's name)"},
            "priority": {"const": "high", "description": "escalate only: raise the alert's priority"},
        },
    },
    "Digits": {"type": "object", "required": ["digits"],
               "properties": {"digits": {"type": "string", "pattern": "^[0-9*#]{1,20}$"}}},
    "Reply": {"type": "object", "required": ["text"],
              "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 1600}}},
    "Dial": {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}},
    "TwilioForm": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Twilio's webhook parameters (CallSid, CallStatus, Digits, ...)"},
    "NotificationRule": {
        "type": "object", "required": ["via", "after", "after_s"],
        "properties": {"via": {"enum": ["call", "sms"]},
                       "after": {"type": "string", "description": "after the step starts, e.g. 0s, 1m"},
                       "after_s": {"type": "integer", "minimum": 0}},
    },
    "NewNotificationRules": {
        "type": "object", "required": ["rules"], "additionalProperties": False,
        "properties": {"rules": {
            "type": "array", "minItems": 1, "maxItems": 10,
            "description": "each rule is one page on its channel, due `after` the step starts (0s: at once)",
            "items": {"type": "object", "required": ["via"], "additionalProperties": False,
                      "properties": {"via": {"enum": ["call", "sms"]},
                                     "after": {"type": ["string", "number"],
                                               "description": "a duration (20s, 1m, 1h30m) or seconds; "
                                                              "default 0, at most 1 day"}}}}},
    },
    "NotificationRules": {
        "type": "object",
        "required": ["engineer", "source", "rules", "config_rules", "changed_by", "changed_at"],
        "properties": {
            "engineer": {"type": "object", "required": ["id", "name"],
                         "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
            "source": {"enum": ["api", "config", "steps"],
                       "description": "set at run time, from the YAML, or none (each step's via)"},
            "rules": {"type": "array", "items": _ref("NotificationRule"), "description": "in force, by delay"},
            "config_rules": {"type": "array", "items": _ref("NotificationRule"), "description": "the YAML's"},
            "changed_by": _nullable("string", description="the API token that set the rules in force"),
            "changed_at": _nullable("string", format="date-time"),
        },
    },
}

_ERROR = _ref("Error")
RESPONSES: dict[str, Schema] = {
    "BadJson": _json(_ERROR, f"malformed_json: not UTF-8, not JSON, or nested deeper than {MAX_DEPTH} levels"),
    "Unauthorized": {
        **_json(_ERROR, "unauthorized: a missing or wrong token"),
        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
    },
    "NotFound": _json(_ERROR, "not_found"),
    "Conflict": _json(_ERROR, "the resource's state does not allow it"),
    "TooLarge": _json(_ERROR, "body_too_large: over server.max_body_bytes"),
    "Invalid": _json(_ERROR, "invalid_field (details.field names it), no_route, ..."),
    "Forbidden": _json(_ERROR, "forbidden: the token's role is too low (details.role_needed names the role)"),
}


def _use(*names: str) -> dict[str, Schema]:
    codes = {"BadJson": "400", "Unauthorized": "401", "Forbidden": "403", "NotFound": "404", "Conflict": "409",
             "TooLarge": "413", "Invalid": "422"}
    return {codes[name]: {"$ref": f"#/components/responses/{name}"} for name in names}


_BODY_ERRORS = ("BadJson", "Unauthorized", "TooLarge", "Invalid")


def _body(name: str, *, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


_ALERT_ID: Schema = {"name": "alert_id", "in": "path", "required": True,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
_TEAM: Schema = {"name": "team", "in": "path", "required": True, "schema": {"type": "string"},
                 "description": "a team id of the config"}
_OVERRIDE_ID: Schema = {"name": "override_id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
_ENGINEER: Schema = {"name": "engineer", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "an engineer id of the config"}
_NUMBER: Schema = {"name": "number", "in": "path", "required": True,
                   "schema": {"type": "string"}, "description": "the phone's number, E.164 (+15550000001)"}


def _action(verb: str) -> Schema:
    return {
        "summary": f"{verb.capitalize()} an alert",
        "tags": ["alerts"],
        "parameters": [_ALERT_ID],
        "requestBody": _body("AlertAction", required=False),
        "responses": {"200": _json(_ref("ChangedAlert"), f"the alert; changed: whether this {verb} changed it"),
                      **_use(*_BODY_ERRORS, "NotFound", "Conflict")},
    }


def _sandbox_action(summary: str, body: str | None = None) -> Schema:
    operation: Schema = {
        "summary": summary,
        "tags": ["sandbox"],
        "parameters": [_NUMBER],
        "responses": {"200": _json(_ref("Phone"), "the phone afterwards"), **_use(*_BODY_ERRORS, "Conflict")},
    }
    if body is not None:
        operation["requestBody"] = _body(body)
    return operation


_PUBLIC: list[Schema] = []

OPERATIONS: dict[tuple[str, str], Schema] = {
    ("GET", "/healthz"): {"summary": "Liveness: the process answers", "tags": ["health"], "security": _PUBLIC,
                          "responses": {"200": _json(_ref("Health"), "alive")}},
    ("GET", "/readyz"): {"summary": "Readiness: store, scheduler and each provider", "tags": ["health"],
                         "security": _PUBLIC,
                         "responses": {"200": _json(_ref("Readiness"), "ready"),
                                       "503": _json(_ref("Readiness"), "not ready; checks say what is not")}},
    ("GET", "/openapi.json"): {"summary": "This description of the API", "tags": ["health"], "security": _PUBLIC,
                               "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}},
    ("POST", "/api/v1/alerts"): {
        "summary": "Trigger, acknowledge or resolve an alert (our own format)",
        "tags": ["alerts"],
        "requestBody": _body("NewAlert"),
        "responses": {"202": _json(_ref("IngestResult"), "a new alert; its first step starts now"),
                      "200": _json(_ref("IngestResult"), "an open alert with this dedup_key already exists, "
                                                         "or it was acknowledged or resolved"),
                      **_use(*_BODY_ERRORS, "NotFound")},
    },
    ("GET", "/api/v1/alerts"): {
        "summary": "List alerts, newest first",
        "tags": ["alerts"],
        "parameters": [
            {"name": "status", "in": "query", "schema": {"enum": ["triggered", "acknowledged", "resolved"]}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
            {"name": "before_id", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
        ],
        "responses": {"200": _json(_ref("AlertList"), "alerts"), **_use("Unauthorized", "Invalid")},
    },
    ("GET", "/api/v1/alerts/{alert_id}"): {
        "summary": "One alert: status, escalation, pages with outcomes, timeline",
        "tags": ["alerts"],
        "parameters": [_ALERT_ID],
        "responses": {"200": _json(_ref("AlertDetail"), "the alert"), **_use("Unauthorized", "NotFound")},
    },
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): _action("acknowledge"),
    ("POST", "/api/v1/alerts/{alert_id}/resolve"): _action("resolve"),
    ("POST", "/api/v1/alerts/{alert_id}/escalate"): _action("escalate"),
    ("POST", "/api/v1/integrations/alertmanager"): {
        "summary": "Alertmanager webhook (v4)", "tags": ["integrations"],
        "requestBody": _body("AlertmanagerWebhook"),
        "responses": {"202": _json(_ref("IngestResults"), "at least one new alert"),
                      "200": _json(_ref("IngestResults"), "nothing new"), **_use(*_BODY_ERRORS)},
    },
    ("POST", "/api/v1/integrations/grafana"): {
        "summary": "Grafana Alerting webhook contact point", "tags": ["integrations"],
        "requestBody": _body("GrafanaWebhook"),
        "responses": {"202": _json(_ref("IngestResults"), "at least one new alert"),
                      "200": _json(_ref("IngestResults"), "nothing new"), **_use(*_BODY_ERRORS)},
    },
    ("POST", "/api/v1/integrations/newrelic"): {
        "summary": "New Relic workflow webhook (default payload template)", "tags": ["integrations"],
        "requestBody": _body("NewRelicWebhook"),
        "responses": {"202": _json(_ref("IngestResults"), "a new alert"),
                      "200": _json(_ref("IngestResults"), "nothing new (the issue's alert is already open, or "
                                                          "it was acknowledged or resolved)"),
                      **_use(*_BODY_ERRORS)},
    },
    ("POST", "/api/v1/integrations/splunk"): {
        "summary": "Splunk webhook alert action (the token may come as ?token=)", "tags": ["integrations"],
        "security": [{"bearerAuth": []}, {"queryToken": []}],
        "requestBody": _body("SplunkWebhook"),
        "responses": {"202": _json(_ref("IngestResults"), "a new alert"),
                      "200": _json(_ref("IngestResults"), "this search and row is already open"),
                      **_use(*_BODY_ERRORS)},
    },
    ("POST", "/v2/enqueue"): {
        "summary": "PagerDuty Events API v2",
        "description": "Authorized by a bearer token, or by the body's routing_key (an API token or a route's "
                       "routing_key). Errors in PagerDuty's shape.",
        "tags": ["integrations"],
        "security": [{"bearerAuth": []}, {}],
        "requestBody": _body("PagerDutyEvent"),
        "responses": {"202": _json(_ref("PagerDutyAccepted"), "processed"),
                      "400": _json(_ref("PagerDutyError"), "invalid event"),
                      "401": _json(_ref("PagerDutyError"), "unknown routing_key and no valid token"),
                      **_use("TooLarge")},
    },
    ("POST", "/api/v1/calls"): {
        "summary": "Call a number or a team's primary with a message; pressing 1 acknowledges", "tags": ["direct"],
        "requestBody": _body("DirectCall"),
        "responses": {"202": _json(_ref("Direct"), "the call is placed"), **_use(*_BODY_ERRORS, "Conflict")},
    },
    ("POST", "/api/v1/sms"): {
        "summary": "Text a number or a team's primary; a reply acknowledges", "tags": ["direct"],
        "requestBody": _body("DirectSms"),
        "responses": {"202": _json(_ref("Direct"), "the SMS is sent"), **_use(*_BODY_ERRORS, "Conflict")},
    },
    ("GET", "/api/v1/oncall"): {
        "summary": "Who is on call, per team, and until when", "tags": ["oncall"],
        "parameters": [{"name": "team", "in": "query", "schema": {"type": "string"}},
                       {"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"}}],
        "responses": {"200": _json(_ref("OnCall"), "on call"), **_use("Unauthorized", "Invalid")},
    },
    ("GET", "/api/v1/teams/{team}/overrides"): {
        "summary": "A team's overrides: the YAML's (source config) and those added at run time (source api)",
        "tags": ["oncall"],
        "parameters": [_TEAM],
        "responses": {"200": _json(_ref("OverrideList"), "overrides"), **_use("Unauthorized", "NotFound")},
    },
    ("POST", "/api/v1/teams/{team}/overrides"): {
        "summary": "Add an override; it takes effect at once (responder)",
        "tags": ["oncall"],
        "parameters": [_TEAM],
        "requestBody": _body("NewOverride"),
        "responses": {"201": _json(_ref("Override"), "added"),
                      **_use(*_BODY_ERRORS, "NotFound", "Conflict")},  # 409: too_many_overrides
    },
    ("DELETE", "/api/v1/teams/{team}/overrides/{override_id}"): {
        "summary": "Remove an override added at run time (responder)",
        "tags": ["oncall"],
        "parameters": [_TEAM, _OVERRIDE_ID],
        "responses": {"200": _json(_ref("Override"), "removed (deleted_by, deleted_at set)"),
                      **_use("Unauthorized", "NotFound")},
    },
    ("GET", "/api/v1/calendar-feeds"): {
        "summary": "Calendar feeds not revoked, without their secrets (admin)", "tags": ["calendar"],
        "responses": {"200": _json(_ref("CalendarFeedList"), "feeds"), **_use("Unauthorized")},
    },
    ("POST", "/api/v1/calendar-feeds"): {
        "summary": "Create a team's or an engineer's calendar feed; its secret URL is shown only now (admin)",
        "tags": ["calendar"],
        "requestBody": _body("NewCalendarFeed"),
        "responses": {"201": _json(_ref("CalendarFeed"), "created, with url"), **_use(*_BODY_ERRORS)},
    },
    ("DELETE", "/api/v1/calendar-feeds/{feed_id}"): {
        "summary": "Revoke a calendar feed: its URL answers 404 from now on (admin)", "tags": ["calendar"],
        "parameters": [{"name": "feed_id", "in": "path", "required": True,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}],
        "responses": {"200": _json(_ref("CalendarFeed"), "revoked"), **_use("Unauthorized", "NotFound")},
    },
    ("GET", "/calendar/{secret}.ics"): {
        "summary": "On-call shifts as iCalendar (RFC 5545): a week back, twelve weeks ahead",
        "description": "Authenticated by the secret in the URL alone (calendar apps send no headers); "
                       "unknown or revoked is 404.",
        "tags": ["calendar"],
        "security": _PUBLIC,
        "parameters": [{"name": "secret", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,100}$"}}],
        "responses": {"200": {"description": "the feed",
                              "content": {"text/calendar": {"schema": {"type": "string"}}}},
                      **_use("NotFound")},
    },
    ("GET", "/api/v1/queues"): {
        "summary": "Calls waiting per priority, and lines in use", "tags": ["operations"],
        "responses": {"200": _json(_ref("Queues"), "queues"), **_use("Unauthorized")},
    },
    ("GET", "/metrics"): {
        "summary": "The same for Prometheus", "tags": ["operations"],
        "responses": {"200": {"description": "Prometheus text format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **_use("Unauthorized")},
    },
    ("GET", "/api/v1/sandbox/phones"): {
        "summary": "Every simulated phone", "tags": ["sandbox"],
        "responses": {"200": _json(_ref("PhoneList"), "phones"), **_use("Unauthorized")},
    },
    ("GET", "/api/v1/sandbox/phones/{number}"): {
        "summary": "A simulated phone: its call, what it hears, its SMS", "tags": ["sandbox"],
        "parameters": [_NUMBER],
        "responses": {"200": _json(_ref("Phone"), "the phone"), **_use("Unauthorized", "Invalid")},
    },
    ("POST", "/api/v1/sandbox/phones/{number}/answer"): _sandbox_action("Answer the ringing call"),
    ("POST", "/api/v1/sandbox/phones/{number}/press"): _sandbox_action("Press keys", "Digits"),
    ("POST", "/api/v1/sandbox/phones/{number}/reject"): _sandbox_action("Reject the ringing call"),
    ("POST", "/api/v1/sandbox/phones/{number}/hangup"): _sandbox_action("Hang up"),
    ("POST", "/api/v1/sandbox/phones/{number}/dial"): _sandbox_action("Call a number (a hotline)", "Dial"),
    ("POST", "/api/v1/sandbox/phones/{number}/reply"): _sandbox_action("Send an SMS to the gateway", "Reply"),
    ("GET", "/api/v1/engineers/{engineer}/notification-rules"): {
        "summary": "An engineer's personal notification rules in force, and where they come from",
        "tags": ["oncall"],
        "parameters": [_ENGINEER],
        "responses": {"200": _json(_ref("NotificationRules"), "the rules"), **_use("Unauthorized", "NotFound")},
    },
    ("PUT", "/api/v1/engineers/{engineer}/notification-rules"): {
        "summary": "Replace an engineer's notification rules (responder); in force from their next page",
        "tags": ["oncall"],
        "parameters": [_ENGINEER],
        "requestBody": _body("NewNotificationRules"),
        "responses": {"200": _json(_ref("NotificationRules"), "the rules now"),
                      **_use(*_BODY_ERRORS, "NotFound")},
    },
    ("DELETE", "/api/v1/engineers/{engineer}/notification-rules"): {
        "summary": "Go back to the YAML's notification rules, or each step's via (responder)",
        "tags": ["oncall"],
        "parameters": [_ENGINEER],
        "responses": {"200": _json(_ref("NotificationRules"), "the rules now"), **_use("Unauthorized", "NotFound")},
    },
}


def _twilio_operation(path: str) -> Schema:
    """Every Twilio webhook: a signed form POST answered with TwiML."""
    return {
        "summary": f"Twilio webhook {path.removeprefix('/twilio/')}",
        "tags": ["twilio"],
        "security": [{"twilioSignature": []}],
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": _ref("TwilioForm")}}},
        "responses": {"200": {"description": "TwiML", "content": {"text/xml": {"schema": {"type": "string"}}}},
                      "403": {"description": "missing or wrong X-Twilio-Signature",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }


def _undocumented(path: str) -> Schema:
    return {"summary": UNDOCUMENTED, "tags": [UNDOCUMENTED],
            "responses": {"default": _json(_ERROR, "see the code")}}


def _with_path_parameters(operation: Schema, path: str) -> Schema:
    """Every ``{name}`` in the path is a parameter; ones the operation does not describe are strings."""
    described = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
    extra = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
             for name in re.findall(r"\{(\w+)", path) if name not in described]
    return {**operation, "parameters": [*operation.get("parameters", []), *extra]} if extra else operation


_ROLE_KINDS = (Auth.TOKEN, Auth.TOKEN_OR_QUERY, Auth.TOKEN_OR_ROUTING_KEY)


def _with_role(operation: Schema, role: Role) -> Schema:
    """A token route: the role it needs (``x-role``), and 403 when the token's is lower."""
    responses = operation.get("responses", {})
    if role is not Role.VIEWER and "403" not in responses:
        forbidden = (_json(_ref("PagerDutyError"), "the token's role is too low") if "400" in responses
                     and "PagerDutyError" in str(responses["400"]) else {"$ref": "#/components/responses/Forbidden"})
        responses = {**responses, "403": forbidden}
    return {**operation, "x-role": role.value, "responses": responses}


def operation_for(method: str, path: str, kind: Auth, role: Role | None = None) -> Schema:
    found = OPERATIONS.get((method, path))
    if found is None:
        found = _provider_operation(method, path) if kind is Auth.PROVIDER else _undocumented(path)
    if kind in _ROLE_KINDS and role is not None:
        found = _with_role(found, role)
    return _with_path_parameters(found, path)


def document(app: web.Application) -> Schema:
    """The OpenAPI 3.1 document of the routes ``app`` serves (HEAD, implied by GET, is left out, and so is
    the catch-all that answers 404/405 for everything else)."""
    paths: dict[str, dict[str, Schema]] = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None or is_catch_all(route):
            continue
        if route.resource.canonical.startswith("/console"):  # the console's HTML pages
            continue
        path = route.resource.canonical
        paths.setdefault(path, {})[route.method.lower()] = operation_for(
            route.method, path, declared(route.handler), declared_role(route.handler, route.method))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "On-call telephony gateway",
            "version": "1",
            "description": "Alerts in over HTTP; calls and SMS out to the engineers on call. Errors are JSON "
                           '{"error", "message", "details"} with a 4xx; every endpoint but health and this '
                           "document needs an API token as a bearer token. Each operation's x-role is the "
                           "token role it needs (viewer < responder < admin); a lower one gets 403.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "an API token (api_tokens)"},
                "queryToken": {"type": "apiKey", "in": "query", "name": "token",
                               "description": "Splunk only: it can set nothing but a URL"},
                "twilioSignature": {"type": "apiKey", "in": "header", "name": "X-Twilio-Signature",
                                    "description": "HMAC-SHA1 over server.public_url + path and the form"},
                "kavenegarSecret": {"type": "apiKey", "in": "query", "name": "secret",
                                    "description": "kavenegar.inbound_secret: Kavenegar signs nothing"},
            },
        },
        "security": [{"bearerAuth": []}],
    }


@routes.get("/openapi.json")
@auth(Auth.NONE)
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


# ------------------------------------------------ maintenance windows and heartbeats (gateway/web/maintenance.py)

_WINDOW_ID: Schema = {"name": "window_id", "in": "path", "required": True,
                      "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
SCHEMAS.update({
    "NewMaintenance": {
        "type": "object",
        "required": ["matchers", "end"],
        "properties": {
            "matchers": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"type": "string"},
                         "description": 'Alertmanager-style matchers, e.g. service="db" (all must match)'},
            "start": {**_TIME, "description": "default now; ISO 8601 with a UTC offset, or read in time_zone"},
            "end": {**_TIME, "description": "after start, at most 90 days later, not in the past"},
            "time_zone": {"type": "string", "description": "IANA zone for start and end written without offset"},
            "action": {"enum": ["suppress", "low_priority"], "default": "suppress"},
            "comment": {"type": "string", "maxLength": 1024},
        },
    },
    "Maintenance": {
        "type": "object",
        "required": ["id", "name", "source", "matchers", "action", "comment", "state", "recurring", "start", "end"],
        "properties": {
            "id": _nullable("integer", description="run-time windows only"),
            "name": {"type": "string"},
            "source": {"enum": ["config", "api"]},
            "matchers": {"type": "array", "items": {"type": "string"}},
            "action": {"enum": ["suppress", "low_priority"]},
            "comment": {"type": "string"},
            "state": {"enum": ["active", "upcoming", "ended"]},
            "recurring": {"type": "boolean", "description": "from time windows (during:)"},
            "held_alerts": {"type": "array", "items": {"type": "integer"},
                            "description": "alerts it holds now (recorded, not paged yet)"},
            "start": _nullable("string", format="date-time", description="this or the next occurrence"),
            "end": _nullable("string", format="date-time", description="when it ends or ended"),
            "created_by": {"type": "string"},
            "created_at": _TIME,
            "ended_by": _nullable("string"),
            "ended_at": _nullable("string", format="date-time"),
        },
    },
    "MaintenanceList": {"type": "object", "required": ["windows"],
                        "properties": {"windows": {"type": "array", "items": _ref("Maintenance")}}},
    "Heartbeat": {
        "type": "object",
        "required": ["name", "state", "last_check_in", "deadline", "interval_s", "grace_s", "labels", "team"],
        "properties": {
            "name": {"type": "string"},
            "state": {"enum": ["ok", "late", "never"],
                      "description": "never: no check-in yet and its first deadline (from start-up) not passed"},
            "last_check_in": _nullable("string", format="date-time"),
            "deadline": _TIME,
            "interval_s": {"type": "number"},
            "grace_s": {"type": "number"},
            "labels": _TEXT_MAP,
            "team": _nullable("string"),
        },
    },
    "HeartbeatList": {"type": "object", "required": ["heartbeats"],
                      "properties": {"heartbeats": {"type": "array", "items": _ref("Heartbeat")}}},
})
OPERATIONS.update({
    ("GET", "/api/v1/maintenance"): {
        "summary": "Maintenance windows: the YAML's and those added at run time, active, upcoming or ended",
        "tags": ["maintenance"],
        "responses": {"200": _json(_ref("MaintenanceList"), "windows"), **_use("Unauthorized")},
    },
    ("POST", "/api/v1/maintenance"): {
        "summary": "Add a maintenance window: matching alerts are recorded, not paged (or paged at low priority) "
                   "until it ends (responder)",
        "tags": ["maintenance"],
        "requestBody": _body("NewMaintenance"),
        "responses": {"201": _json(_ref("Maintenance"), "added"), **_use(*_BODY_ERRORS, "Conflict")},
    },
    ("POST", "/api/v1/maintenance/{window_id}/end"): {
        "summary": "End a run-time window now: its held alerts still open start paging (responder)",
        "tags": ["maintenance"],
        "parameters": [_WINDOW_ID],
        "responses": {"200": _json(_ref("Maintenance"), "ended (ended_by, ended_at set)"),
                      **_use("Unauthorized", "NotFound", "Conflict")},
    },
    ("GET", "/api/v1/heartbeats"): {
        "summary": "Heartbeat monitors: last check-in, deadline, state", "tags": ["maintenance"],
        "responses": {"200": _json(_ref("HeartbeatList"), "heartbeats"), **_use("Unauthorized")},
    },
    ("POST", "/api/v1/heartbeats/{name}"): {
        "summary": "Check in: records it and resolves the heartbeat's late alert (responder)",
        "tags": ["maintenance"],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "a heartbeat of the config"}],
        "responses": {"200": _json(_ref("Heartbeat"), "checked in"), **_use("Unauthorized", "NotFound")},
    },
})


def _provider_operation(method: str, path: str) -> Schema:
    """A provider's webhook: Kavenegar's inbound forward, or Twilio's."""
    return _kavenegar_operation(method) if path.startswith("/kavenegar/") else _twilio_operation(path)


def _kavenegar_operation(method: str) -> Schema:
    """Kavenegar forwarding an SMS received on the sender line (the URL set in its panel, with the secret)."""
    names = ("from", "to", "message", "messageid")
    fields = {"type": "object", "required": ["from", "message"],
              "properties": {name: {"type": "string"} for name in names}}
    request: Schema = (
        {"parameters": [{"name": name, "in": "query", "required": name in ("from", "message"),
                         "schema": {"type": "string"}} for name in names]} if method == "GET"
        else {"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": fields}}}})
    return {
        "summary": "Kavenegar forwards an SMS received on the line (an engineer's reply)",
        "description": "Fields as a form POST, or as query parameters of a GET. The reply to the engineer is sent "
                       "back through Kavenegar's REST API.",
        "tags": ["kavenegar"],
        "security": [{"kavenegarSecret": []}],
        **request,
        "responses": {"200": {"description": "taken", "content": {"text/plain": {"schema": {"type": "string"}}}},
                      "400": _json(_ERROR, "a field is missing, or the form cannot be read"),
                      "403": _json(_ERROR, "missing or wrong secret"),
                      "422": _json(_ERROR, "from is not a phone number"),
                      "503": _json(_ERROR, "the SMS provider is not open yet")},
    }


# The signed action links of emails and chat posts (gateway/web/action_links.py): HTML pages, no API token.
_LINK_TOKEN = {"name": "token", "in": "path", "required": True,
               "description": "the signed token from the email or chat post",
               "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]+[.][A-Za-z0-9_-]+$"}}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_LINK_PAGES = {
    status: {"description": text, "content": _HTML}
    for status, text in (("403", "not a genuine link (cut or changed)"),
                         ("409", "the alert is already acknowledged or resolved: nothing changed"),
                         ("410", "the link has expired, or (POST) was used already"),
                         ("429", "too many links that were not genuine from one address (a minute's pause)"))
}
# No such alert (a page), or no such path at all (an empty token: the JSON 404 of every unknown path)
_LINK_PAGES["404"] = {"description": "no such alert", "content": {**_HTML, **RESPONSES["NotFound"]["content"]}}
OPERATIONS.update({
    ("GET", "/a/{token}"): {
        "summary": "An action link: what it would do, with a button to confirm (changes nothing)",
        "description": "Mail scanners fetch links, so a GET never acts. Authenticated by the signed token alone.",
        "tags": ["action links"], "security": _PUBLIC, "parameters": [_LINK_TOKEN],
        "responses": {"200": {"description": "the confirmation page",
                              "content": {"text/html": {"schema": {"type": "string"}}}}, **_LINK_PAGES},
    },
    ("POST", "/a/{token}"): {
        "summary": "Use an action link once: acknowledge or resolve in the name of whom it was sent to",
        "description": "Authenticated by the signed token alone; its one use is recorded in the store.",
        "tags": ["action links"], "security": _PUBLIC, "parameters": [_LINK_TOKEN],
        "responses": {"200": {"description": "done",
                              "content": {"text/html": {"schema": {"type": "string"}}}}, **_LINK_PAGES},
    },
})
