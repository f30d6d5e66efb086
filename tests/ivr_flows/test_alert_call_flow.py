from __future__ import annotations

import itertools
from dataclasses import FrozenInstanceError

import pytest

from ivr_flows.alert_call import AlertCallFlow, AlertCallState
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

MESSAGE = "Alert 42: disk full on db-1."
MENU = "Press 1 to acknowledge, 2 to pass it on, or star to hear this again."
GATHER = Gather(prompts=(Say(text=MESSAGE), Say(text=MENU)), num_digits=1, timeout_s=5)
SORRY = Say(text="Sorry, that is not an option.")
GOODBYE = (Say(text="No answer received. Goodbye."), Hangup())


def run(flow: AlertCallFlow, *events: Event) -> list[Step[AlertCallState]]:
    steps = [flow.start()]
    for event in events:
        steps.append(flow.on_event(steps[-1].state, event))
    return steps


def outcomes(steps: list[Step[AlertCallState]]) -> list[FlowOutcome]:
    return [step.outcome for step in steps if step.outcome is not None]


def flow(**kwargs: object) -> AlertCallFlow:
    return AlertCallFlow(message=MESSAGE, **kwargs)  # type: ignore[arg-type]


def test_start_waits_for_answer_without_actions() -> None:
    step = flow().start()
    assert step.actions == ()
    assert step.outcome is None
    assert step.state == AlertCallState(phase="waiting", attempts=0, machine=False, outcome=None)


def test_answer_puts_the_whole_message_inside_one_gather() -> None:
    step = run(flow(), Answered())[-1]
    assert step.actions == (GATHER,)
    assert step.outcome is None
    assert step.state.phase == "menu"


def test_gather_timeout_is_a_parameter() -> None:
    (gather,) = run(flow(gather_timeout_s=9), Answered())[-1].actions
    assert isinstance(gather, Gather)
    assert gather.timeout_s == 9
    assert gather.num_digits == 1


@pytest.mark.parametrize(
    ("events", "actions", "outcome"),
    [
        pytest.param(
            [DigitsReceived(digits="1")],
            (Say(text="Acknowledged. Thank you."), Hangup()),
            FlowOutcome.ACKNOWLEDGED,
            id="1-acknowledges",
        ),
        pytest.param(
            [DigitsReceived(digits="2")],
            (Say(text="Passing it on. Goodbye."), Hangup()),
            FlowOutcome.DECLINED,
            id="2-declines",
        ),
        pytest.param(
            [DigitsReceived(digits="12")],
            (Say(text="Acknowledged. Thank you."), Hangup()),
            FlowOutcome.ACKNOWLEDGED,
            id="only-first-digit-counts-12",
        ),
        pytest.param(
            [DigitsReceived(digits="21")],
            (Say(text="Passing it on. Goodbye."), Hangup()),
            FlowOutcome.DECLINED,
            id="only-first-digit-counts-21",
        ),
        pytest.param([DigitsReceived(digits="*")], (GATHER,), None, id="star-repeats"),
        pytest.param([DigitsReceived(digits="5")], (SORRY, GATHER), None, id="5-invalid"),
        pytest.param([DigitsReceived(digits="#")], (SORRY, GATHER), None, id="hash-invalid"),
        pytest.param([DigitsReceived(digits="0")], (SORRY, GATHER), None, id="0-invalid"),
        pytest.param([NoInput()], (GATHER,), None, id="silence-asks-again"),
        pytest.param([DigitsReceived(digits="")], (GATHER,), None, id="empty-digits-is-silence"),
        pytest.param(
            [NoInput(), NoInput(), NoInput()], GOODBYE, FlowOutcome.NO_ANSWER, id="3-silences"
        ),
        pytest.param(
            [DigitsReceived(digits="9"), DigitsReceived(digits="8"), DigitsReceived(digits="7")],
            (SORRY, *GOODBYE),
            FlowOutcome.NO_ANSWER,
            id="3-invalid-keys",
        ),
        pytest.param(
            [NoInput(), DigitsReceived(digits="9"), NoInput()],
            GOODBYE,
            FlowOutcome.NO_ANSWER,
            id="silences-and-invalid-keys-count-together",
        ),
        pytest.param(
            [NoInput(), NoInput(), DigitsReceived(digits="1")],
            (Say(text="Acknowledged. Thank you."), Hangup()),
            FlowOutcome.ACKNOWLEDGED,
            id="acknowledge-on-last-attempt",
        ),
        pytest.param(
            [DigitsReceived(digits="*")] * 6 + [NoInput(), NoInput()],
            (GATHER,),
            None,
            id="star-does-not-count",
        ),
        pytest.param(
            [DigitsReceived(digits="*")] * 6 + [NoInput(), NoInput(), NoInput()],
            GOODBYE,
            FlowOutcome.NO_ANSWER,
            id="star-then-3-silences",
        ),
        pytest.param([HungUp(cause="normal")], (), FlowOutcome.HUNG_UP, id="hang-up-in-menu"),
        pytest.param([NoInput(), HungUp()], (), FlowOutcome.HUNG_UP, id="hang-up-after-silence"),
        pytest.param([Answered()], (), None, id="second-answer-ignored"),
        pytest.param([NobodyAccepted()], (), None, id="irrelevant-event-ignored"),
        pytest.param(
            [RecordingFinished(url="https://x/r.wav")], (), None, id="recording-event-ignored"
        ),
    ],
)
def test_menu_transitions(
    events: list[Event], actions: tuple[Action, ...], outcome: FlowOutcome | None
) -> None:
    steps = run(flow(), Answered(), *events)
    assert steps[-1].actions == actions
    assert steps[-1].outcome == outcome
    assert outcomes(steps) == ([] if outcome is None else [outcome])
    assert steps[-1].state.outcome == outcome


def test_attempts_count_silences_and_invalid_keys_but_not_star() -> None:
    steps = run(
        flow(max_attempts=10),
        Answered(),
        NoInput(),
        DigitsReceived(digits="*"),
        DigitsReceived(digits="4"),
        DigitsReceived(digits="*"),
    )
    assert [s.state.attempts for s in steps] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("max_attempts", [1, 2, 5])
def test_gives_up_after_max_attempts(max_attempts: int) -> None:
    steps = run(flow(max_attempts=max_attempts), Answered(), *[NoInput()] * max_attempts)
    assert [s.outcome for s in steps[:-1]] == [None] * (max_attempts + 1)
    assert steps[-1].outcome == FlowOutcome.NO_ANSWER
    assert steps[-1].actions == GOODBYE
    assert all(s.actions == (GATHER,) for s in steps[2:-1])


def test_machine_answer_hangs_up_as_no_answer_with_flag() -> None:
    step = run(flow(), Answered(machine=True))[-1]
    assert step.actions == (Hangup(),)
    assert step.outcome == FlowOutcome.NO_ANSWER
    assert step.state.machine is True


def test_human_answer_has_no_machine_flag() -> None:
    assert run(flow(), Answered())[-1].state.machine is False


@pytest.mark.parametrize(
    "later",
    [DigitsReceived(digits="1"), Answered(), Answered(machine=False), NoInput(), HungUp()],
)
def test_machine_never_acknowledges(later: Event) -> None:
    steps = run(flow(), Answered(machine=True), later, DigitsReceived(digits="1"))
    assert outcomes(steps) == [FlowOutcome.NO_ANSWER]
    assert steps[-1].actions == ()
    assert steps[-1].state.outcome == FlowOutcome.NO_ANSWER


@pytest.mark.parametrize(
    "event",
    [
        DigitsReceived(digits="1"),
        NoInput(),
        RecordingFinished(url="u"),
        EngineerConnected(engineer_name="Ann", call_id="c1"),
        NobodyAccepted(),
    ],
)
def test_events_before_answer_are_ignored(event: Event) -> None:
    start = flow().start()
    step = flow().on_event(start.state, event)
    assert step == Step(state=start.state)


def test_hang_up_before_answer_is_hung_up() -> None:
    step = run(flow(), HungUp(cause="cancel"))[-1]
    assert step.outcome == FlowOutcome.HUNG_UP
    assert step.actions == ()


@pytest.mark.parametrize(
    "first",
    [DigitsReceived(digits="1"), DigitsReceived(digits="2"), HungUp()],
)
@pytest.mark.parametrize(
    "later",
    [DigitsReceived(digits="1"), DigitsReceived(digits="2"), NoInput(), HungUp(), Answered()],
)
def test_outcome_is_reported_once_and_then_nothing_happens(first: Event, later: Event) -> None:
    steps = run(flow(), Answered(), first)
    done = steps[-1].state
    after = flow().on_event(done, later)
    assert after == Step(state=done)


def test_outcome_reported_at_most_once_for_every_short_event_sequence() -> None:
    alphabet: list[Event] = [
        Answered(),
        Answered(machine=True),
        DigitsReceived(digits="1"),
        DigitsReceived(digits="2"),
        DigitsReceived(digits="*"),
        DigitsReceived(digits="7"),
        NoInput(),
        HungUp(),
    ]
    f = flow()
    for events in itertools.product(alphabet, repeat=4):
        steps = run(f, *events)
        found = outcomes(steps)
        assert len(found) <= 1, events
        if found:
            index = next(i for i, s in enumerate(steps) if s.outcome is not None)
            assert all(s == Step(state=steps[index].state) for s in steps[index + 1 :]), events
        first_answer = next((e for e in events if isinstance(e, Answered)), None)
        if first_answer is not None and first_answer.machine:
            assert FlowOutcome.ACKNOWLEDGED not in found, events


def test_language_goes_on_every_say() -> None:
    f = flow(language="de-DE")
    sequences: list[list[Event]] = [
        [Answered(), DigitsReceived(digits="9"), DigitsReceived(digits="1")],
        [Answered(), DigitsReceived(digits="2")],
        [Answered(), NoInput(), DigitsReceived(digits="9"), NoInput()],
    ]
    says: list[Say] = []
    for events in sequences:
        for step in run(f, *events):
            for action in step.actions:
                prompts = action.prompts if isinstance(action, Gather) else (action,)
                says.extend(p for p in prompts if isinstance(p, Say))
    assert len(says) > 8
    assert {s.language for s in says} == {"de-DE"}


def test_texts_are_parameters() -> None:
    f = flow(
        menu_text="menu",
        acknowledged_text="ack",
        declined_text="dec",
        invalid_text="bad",
        no_answer_text="bye",
        max_attempts=2,
    )
    assert run(f, Answered())[-1].actions[0] == Gather(
        prompts=(Say(text=MESSAGE), Say(text="menu")), num_digits=1, timeout_s=5
    )
    assert run(f, Answered(), DigitsReceived(digits="1"))[-1].actions[0] == Say(text="ack")
    assert run(f, Answered(), DigitsReceived(digits="2"))[-1].actions[0] == Say(text="dec")
    assert run(f, Answered(), DigitsReceived(digits="3"))[-1].actions[0] == Say(text="bad")
    assert run(f, Answered(), NoInput(), NoInput())[-1].actions == (Say(text="bye"), Hangup())


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"gather_timeout_s": 0}])
def test_rejects_nonsense_parameters(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        flow(**kwargs)


def test_flow_and_state_are_frozen() -> None:
    f = flow()
    with pytest.raises(FrozenInstanceError):
        f.message = "x"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        f.start().state.attempts = 3  # type: ignore[misc]
