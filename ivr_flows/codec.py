"""Flows and their states as plain JSON-able data, so a call in progress outlives its gateway process.

A flow is an immutable dataclass of parameters and its state another; both hold only text, numbers,
booleans, None and :class:`FlowOutcome`. ``dump`` names the flow's kind; ``load`` rebuilds both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ivr_flows.alert_call import AlertCallFlow, AlertCallState
from ivr_flows.hotline import HotlineCallerFlow, HotlineState
from ivr_flows.model import Flow, FlowOutcome
from ivr_flows.not_in_service import NotInServiceFlow, NotInServiceState
from ivr_flows.screening import ScreeningFlow, ScreeningState

#: kind -> (flow class, state class); a kind is stored, so never rename one
KINDS: dict[str, tuple[type[Any], type[Any]]] = {
    "alert_call": (AlertCallFlow, AlertCallState),
    "screening": (ScreeningFlow, ScreeningState),
    "hotline_caller": (HotlineCallerFlow, HotlineState),
    "not_in_service": (NotInServiceFlow, NotInServiceState),
}
_KIND_OF = {flow: kind for kind, (flow, _) in KINDS.items()}


class UnknownFlow(ValueError):
    """Stored data that names no known flow (or a flow that cannot be stored)."""


def dump(flow: Flow[Any], state: object) -> dict[str, Any]:
    kind = _KIND_OF.get(type(flow))
    if kind is None:
        raise UnknownFlow(f"{type(flow).__name__} cannot be stored")
    return {"kind": kind, "flow": _fields(flow), "state": _fields(state)}


def load(data: dict[str, Any]) -> tuple[Flow[Any], Any]:
    try:
        flow_type, state_type = KINDS[data["kind"]]
        return _build(flow_type, data["flow"]), _build(state_type, data["state"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UnknownFlow(f"stored flow cannot be read: {exc!r}") from None


def _fields(value: object) -> dict[str, Any]:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise UnknownFlow(f"{type(value).__name__} is not a dataclass")
    return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}


def _plain(value: object) -> object:
    if isinstance(value, FlowOutcome):
        return value.value
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise UnknownFlow(f"a flow field holds {type(value).__name__}, which cannot be stored")


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in known}  # a field dropped since it was stored is ignored
    if "outcome" in values and values["outcome"] is not None:
        values["outcome"] = FlowOutcome(values["outcome"])
    return cls(**values)
