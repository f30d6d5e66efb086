"""Flows and states survive a round trip through JSON (a call in progress outlives its process)."""

from __future__ import annotations

import json

import pytest

from ivr_flows import AlertCallFlow, DigitsReceived, HotlineCallerFlow, ScreeningFlow
from ivr_flows.codec import UnknownFlow, dump, load
from ivr_flows.model import Answered, FlowOutcome, Hangup, Say
from ivr_flows.not_in_service import NotInServiceFlow


@pytest.mark.parametrize("flow", [
    AlertCallFlow(message="Disk full on db-1", language="de-DE"),
    ScreeningFlow(caller="+1 555-777-0001"),
    HotlineCallerFlow(greeting="Hello", priority_menu=True),
    NotInServiceFlow(prompt="ss-noservice"),
])
def test_a_flow_and_its_state_come_back_equal_from_json(flow: object) -> None:
    step = flow.start()  # type: ignore[attr-defined]
    state = flow.on_event(step.state, Answered()).state  # type: ignore[attr-defined]
    stored = json.loads(json.dumps(dump(flow, state)))  # type: ignore[arg-type]
    again, state_again = load(stored)
    assert again == flow
    assert state_again == state


def test_an_outcome_comes_back_as_a_flow_outcome_and_the_flow_carries_on() -> None:
    flow = AlertCallFlow(message="m")
    state = flow.on_event(flow.start().state, Answered()).state
    done = flow.on_event(state, DigitsReceived(digits="1"))
    assert done.outcome == FlowOutcome.ACKNOWLEDGED
    _, state_again = load(json.loads(json.dumps(dump(flow, done.state))))
    assert state_again.outcome is FlowOutcome.ACKNOWLEDGED


def test_not_in_service_speaks_or_plays_then_hangs_up() -> None:
    assert NotInServiceFlow().start().actions == (Say(text="The number you have dialled is not in service."),
                                                  Hangup())


@pytest.mark.parametrize("data", [{}, {"kind": "nope", "flow": {}, "state": {}},
                                  {"kind": "alert_call", "flow": {"message": "m"}, "state": {"outcome": "x"}},
                                  {"kind": "alert_call", "flow": None, "state": {}}])
def test_unreadable_data_is_an_unknown_flow(data: dict[str, object]) -> None:
    with pytest.raises(UnknownFlow):
        load(data)


def test_a_flow_that_cannot_be_stored_says_so() -> None:
    class Other:
        pass

    with pytest.raises(UnknownFlow):
        dump(Other(), None)  # type: ignore[arg-type]
