from __future__ import annotations

import itertools

import pytest

from ivr_flows.model import (
    Action,
    Answered,
    DigitsReceived,
    EngineerConnected,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    HungUp,
    NobodyAccepted,
    NoInput,
    RecordingFinished,
    Say,
    Step,
)
from ivr_flows.screening import ScreeningFlow, ScreeningState

CALLER = "+1 555 777 0001"
GATHER = Gather(
    prompts=(
        Say(text=f"Hotline call from {CALLER}. Press 1 to accept."),
        Say(text="Press any other key to pass it on."),
    ),
    num_digits=1,
    timeout_s=6,
)
PASS_ON = (Say(text="Passing it on. Goodbye."), Hangup())


def run(flow: ScreeningFlow, *events: Event) -> list[Step[ScreeningState]]:
    steps = [flow.start()]
    for event in events:
        steps.append(flow.on_event(steps[-1].state, event))
    return steps


def outcomes(steps: list[Step[ScreeningState]]) -> list[FlowOutcome]:
    return [step.outcome for step in steps if step.outcome is not None]


def test_start_waits_for_answer_without_actions() -> None:
    step = ScreeningFlow(caller=CALLER).start()
    assert step == Step(state=ScreeningState(phase="waiting", machine=False, outcome=None))


def test_answer_asks_to_accept_naming_the_caller() -> None:
    step = run(ScreeningFlow(caller=CALLER), Answered())[-1]
    assert step.actions == (GATHER,)
    assert step.outcome is None


def test_unknown_caller_text_is_used_as_given() -> None:
    (gather,) = run(ScreeningFlow(caller="unknown number"), Answered())[-1].actions
    assert isinstance(gather, Gather)
    assert gather.prompts[0] == Say(text="Hotline call from unknown number. Press 1 to accept.")


def test_intro_replaces_the_default_first_prompt() -> None:
    f = ScreeningFlow(caller=CALLER, intro="Customer line. Press 1 to take it.", gather_timeout_s=4)
    (gather,) = run(f, Answered())[-1].actions
    assert gather == Gather(
        prompts=(
            Say(text="Customer line. Press 1 to take it."),
            Say(text="Press any other key to pass it on."),
        ),
        num_digits=1,
        timeout_s=4,
    )


@pytest.mark.parametrize(
    ("event", "actions", "outcome"),
    [
        pytest.param(
            DigitsReceived(digits="1"),
            (Say(text="Connecting you now."),),
            FlowOutcome.ACCEPTED,
            id="1-accepts-without-hangup",
        ),
        pytest.param(
            DigitsReceived(digits="13"),
            (Say(text="Connecting you now."),),
            FlowOutcome.ACCEPTED,
            id="first-digit-counts",
        ),
        pytest.param(DigitsReceived(digits="2"), PASS_ON, FlowOutcome.DECLINED, id="2-declines"),
        pytest.param(DigitsReceived(digits="9"), PASS_ON, FlowOutcome.DECLINED, id="9-declines"),
        pytest.param(DigitsReceived(digits="*"), PASS_ON, FlowOutcome.DECLINED, id="star-declines"),
        pytest.param(DigitsReceived(digits="31"), PASS_ON, FlowOutcome.DECLINED, id="31-declines"),
        pytest.param(DigitsReceived(digits=""), PASS_ON, FlowOutcome.DECLINED, id="empty-declines"),
        pytest.param(NoInput(), PASS_ON, FlowOutcome.DECLINED, id="silence-declines"),
        pytest.param(HungUp(cause="normal"), (), FlowOutcome.HUNG_UP, id="hang-up"),
        pytest.param(Answered(), (), None, id="second-answer-ignored"),
        pytest.param(NobodyAccepted(), (), None, id="irrelevant-ignored"),
        pytest.param(
            EngineerConnected(engineer_name="Ann", call_id="c"), (), None, id="irrelevant-ignored-2"
        ),
    ],
)
def test_menu_transitions(
    event: Event, actions: tuple[Action, ...], outcome: FlowOutcome | None
) -> None:
    steps = run(ScreeningFlow(caller=CALLER), Answered(), event)
    assert steps[-1].actions == actions
    assert steps[-1].outcome == outcome
    assert steps[-1].state.outcome == outcome
    assert outcomes(steps) == ([] if outcome is None else [outcome])


def test_machine_answer_hangs_up_as_no_answer_with_flag() -> None:
    steps = run(ScreeningFlow(caller=CALLER), Answered(machine=True), DigitsReceived(digits="1"))
    assert steps[1].actions == (Hangup(),)
    assert steps[1].outcome == FlowOutcome.NO_ANSWER
    assert steps[1].state.machine is True
    assert steps[2] == Step(state=steps[1].state)


@pytest.mark.parametrize(
    "event",
    [DigitsReceived(digits="1"), NoInput(), RecordingFinished(url="u"), NobodyAccepted()],
)
def test_events_before_answer_are_ignored(event: Event) -> None:
    f = ScreeningFlow(caller=CALLER)
    start = f.start()
    assert f.on_event(start.state, event) == Step(state=start.state)


def test_hang_up_before_answer_is_hung_up() -> None:
    step = run(ScreeningFlow(caller=CALLER), HungUp())[-1]
    assert (step.actions, step.outcome) == ((), FlowOutcome.HUNG_UP)


def test_hang_up_after_accepting_changes_nothing() -> None:
    steps = run(ScreeningFlow(caller=CALLER), Answered(), DigitsReceived(digits="1"), HungUp())
    assert outcomes(steps) == [FlowOutcome.ACCEPTED]
    assert steps[-1] == Step(state=steps[-2].state)


def test_outcome_reported_at_most_once_for_every_short_event_sequence() -> None:
    alphabet: list[Event] = [
        Answered(),
        Answered(machine=True),
        DigitsReceived(digits="1"),
        DigitsReceived(digits="2"),
        NoInput(),
        HungUp(),
    ]
    f = ScreeningFlow(caller=CALLER)
    for events in itertools.product(alphabet, repeat=4):
        steps = run(f, *events)
        found = outcomes(steps)
        assert len(found) <= 1, events
        if found:
            index = next(i for i, s in enumerate(steps) if s.outcome is not None)
            assert all(s == Step(state=steps[index].state) for s in steps[index + 1 :]), events
        first_answer = next((e for e in events if isinstance(e, Answered)), None)
        if first_answer is not None and first_answer.machine:
            assert FlowOutcome.ACCEPTED not in found, events


def test_language_and_texts_are_parameters() -> None:
    f = ScreeningFlow(
        caller=CALLER,
        language="fr-FR",
        decline_hint_text="autre touche",
        accepted_text="connexion",
        declined_text="au revoir",
    )
    (gather,) = run(f, Answered())[-1].actions
    assert isinstance(gather, Gather)
    assert [p.language for p in gather.prompts if isinstance(p, Say)] == ["fr-FR", "fr-FR"]
    assert gather.prompts[1] == Say(text="autre touche", language="fr-FR")
    assert run(f, Answered(), DigitsReceived(digits="1"))[-1].actions == (
        Say(text="connexion", language="fr-FR"),
    )
    assert run(f, Answered(), NoInput())[-1].actions == (
        Say(text="au revoir", language="fr-FR"),
        Hangup(),
    )


def test_rejects_nonsense_timeout() -> None:
    with pytest.raises(ValueError):
        ScreeningFlow(caller=CALLER, gather_timeout_s=0)
