from __future__ import annotations

import itertools

import pytest

from ivr_flows.hotline import HotlineCallerFlow, HotlineState
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    EngineerConnected,
    Event,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NobodyAccepted,
    NoInput,
    Record,
    RecordingFinished,
    Say,
    Step,
)

GREETING = "You have reached the Example on-call hotline."
HOLD_TEXT = Say(text="Please hold while we reach the on-call engineer.")
MENU = Gather(
    prompts=(
        Say(text=GREETING),
        Say(text="If this is an emergency, press 1. Otherwise, press 2."),
    ),
    num_digits=1,
    timeout_s=5,
)
SORRY = Say(text="Sorry, that is not an option.")
ANN = EngineerConnected(engineer_name="Ann", call_id="page-7")
CONNECT = (Say(text="Connecting you to Ann."), Bridge(call_id="page-7"))
VOICEMAIL_PROMPT = (
    Say(
        text="Sorry, nobody is available right now. "
        "Please leave a message after the beep, then hang up."
    ),
    Record(max_seconds=120, beep=True),
)
RECORDED = RecordingFinished(url="https://rec.example/1.wav", duration_s=14)
SAVED = (
    Say(text="Thank you. Your message has been passed on to the team. Goodbye."),
    Hangup(),
)


def run(flow: HotlineCallerFlow, *events: Event) -> list[Step[HotlineState]]:
    steps = [flow.start()]
    for event in events:
        steps.append(flow.on_event(steps[-1].state, event))
    return steps


def outcomes(steps: list[Step[HotlineState]]) -> list[FlowOutcome]:
    return [step.outcome for step in steps if step.outcome is not None]


def plain(**kwargs: object) -> HotlineCallerFlow:
    return HotlineCallerFlow(greeting=GREETING, **kwargs)  # type: ignore[arg-type]


def menu(**kwargs: object) -> HotlineCallerFlow:
    return plain(priority_menu=True, **kwargs)


def test_start_waits_for_answer_without_actions() -> None:
    step = plain().start()
    assert step.actions == ()
    assert step.outcome is None
    assert step.state == HotlineState()
    assert step.state.phase == "waiting"
    assert step.state.priority is None


@pytest.mark.parametrize("priority", ["low", "high"])
def test_without_menu_greets_and_holds_at_default_priority(priority: str) -> None:
    step = run(plain(default_priority=priority), Answered())[-1]
    assert step.actions == (Say(text=GREETING), HOLD_TEXT, Hold(priority=priority))
    assert step.state.phase == "holding"
    assert step.state.priority == priority
    assert step.outcome is None


def test_with_menu_asks_for_priority_inside_a_gather() -> None:
    step = run(menu(), Answered())[-1]
    assert step.actions == (MENU,)
    assert step.state.phase == "menu"
    assert step.state.priority is None


@pytest.mark.parametrize(
    ("events", "actions", "phase", "priority"),
    [
        pytest.param(["1"], (HOLD_TEXT, Hold(priority="high")), "holding", "high", id="1-high"),
        pytest.param(["2"], (HOLD_TEXT, Hold(priority="low")), "holding", "low", id="2-low"),
        pytest.param(
            ["19"], (HOLD_TEXT, Hold(priority="high")), "holding", "high", id="first-digit"
        ),
        pytest.param(["5"], (SORRY, MENU), "menu", None, id="5-repeats-menu"),
        pytest.param(["*"], (SORRY, MENU), "menu", None, id="star-repeats-menu"),
        pytest.param(["#"], (SORRY, MENU), "menu", None, id="hash-repeats-menu"),
        pytest.param([None], (MENU,), "menu", None, id="silence-repeats-menu"),
        pytest.param([""], (MENU,), "menu", None, id="empty-digits-is-silence"),
        pytest.param(
            ["5", "1"], (HOLD_TEXT, Hold(priority="high")), "holding", "high", id="retry-then-1"
        ),
        pytest.param(
            [None, None, None],
            (HOLD_TEXT, Hold(priority="low")),
            "holding",
            "low",
            id="3-silences-hold-at-default",
        ),
        pytest.param(
            ["7", None, "8"],
            (SORRY, HOLD_TEXT, Hold(priority="low")),
            "holding",
            "low",
            id="3-misses-hold-at-default",
        ),
    ],
)
def test_priority_menu(
    events: list[str | None], actions: tuple[Action, ...], phase: str, priority: str | None
) -> None:
    evts: list[Event] = [NoInput() if d is None else DigitsReceived(digits=d) for d in events]
    steps = run(menu(), Answered(), *evts)
    assert steps[-1].actions == actions
    assert steps[-1].state.phase == phase
    assert steps[-1].state.priority == priority
    assert outcomes(steps) == []


def test_menu_gives_up_to_the_configured_default_priority() -> None:
    steps = run(menu(default_priority="high", max_attempts=2), Answered(), NoInput(), NoInput())
    assert steps[-1].actions == (HOLD_TEXT, Hold(priority="high"))
    assert steps[-1].state.priority == "high"


@pytest.mark.parametrize("digits", ["1", "2", "5"])
def test_digits_while_holding_are_ignored(digits: str) -> None:
    steps = run(menu(), Answered(), DigitsReceived(digits="2"), DigitsReceived(digits=digits))
    assert steps[-1] == Step(state=steps[-2].state)
    assert steps[-1].state.priority == "low"


@pytest.mark.parametrize("flow", [plain(), menu()], ids=["plain", "menu"])
def test_engineer_connected_while_holding_bridges(flow: HotlineCallerFlow) -> None:
    prefix: list[Event] = [Answered()]
    if flow.priority_menu:
        prefix.append(DigitsReceived(digits="1"))
    steps = run(flow, *prefix, ANN)
    assert steps[-1].actions == CONNECT
    assert steps[-1].outcome == FlowOutcome.CONNECTED
    assert steps[-1].state.phase == "connected"
    assert steps[-1].state.engineer_name == "Ann"
    assert steps[-1].state.call_id == "page-7"


@pytest.mark.parametrize(
    "later", [HungUp(), NobodyAccepted(), ANN, RECORDED, DigitsReceived(digits="1")]
)
def test_nothing_happens_after_connected(later: Event) -> None:
    steps = run(plain(), Answered(), ANN, later)
    assert steps[-1] == Step(state=steps[-2].state)
    assert outcomes(steps) == [FlowOutcome.CONNECTED]


def test_nobody_accepted_offers_voicemail() -> None:
    steps = run(plain(), Answered(), NobodyAccepted())
    assert steps[-1].actions == VOICEMAIL_PROMPT
    assert steps[-1].state.phase == "voicemail"
    assert steps[-1].outcome is None


def test_voicemail_length_is_a_parameter() -> None:
    step = run(plain(max_voicemail_s=30), Answered(), NobodyAccepted())[-1]
    assert step.actions[-1] == Record(max_seconds=30, beep=True)


def test_recording_finished_ends_with_voicemail() -> None:
    steps = run(plain(), Answered(), NobodyAccepted(), RECORDED)
    assert steps[-1].actions == SAVED
    assert steps[-1].outcome == FlowOutcome.VOICEMAIL
    assert steps[-1].state.recording_url == "https://rec.example/1.wav"


def test_hang_up_after_recording_keeps_voicemail() -> None:
    steps = run(plain(), Answered(), NobodyAccepted(), RECORDED, HungUp())
    assert outcomes(steps) == [FlowOutcome.VOICEMAIL]
    assert steps[-1] == Step(state=steps[-2].state)


def test_hang_up_during_recording_without_recording_is_abandoned() -> None:
    steps = run(plain(), Answered(), NobodyAccepted(), HungUp())
    assert steps[-1].actions == ()
    assert outcomes(steps) == [FlowOutcome.ABANDONED]
    assert steps[-1].state.recording_url is None


def test_nobody_accepted_without_voicemail_says_goodbye() -> None:
    steps = run(plain(voicemail=False), Answered(), NobodyAccepted())
    assert steps[-1].actions == (
        Say(text="Sorry, nobody is available right now. Goodbye."),
        Hangup(),
    )
    assert steps[-1].outcome == FlowOutcome.NO_ANSWER


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param([], id="before-answer"),
        pytest.param([Answered()], id="in-menu"),
        pytest.param([Answered(), NoInput()], id="in-menu-after-retry"),
        pytest.param([Answered(), DigitsReceived(digits="1")], id="holding"),
    ],
)
def test_hang_up_before_connected_is_abandoned(prefix: list[Event]) -> None:
    steps = run(menu(), *prefix, HungUp(cause="caller"))
    assert steps[-1].actions == ()
    assert outcomes(steps) == [FlowOutcome.ABANDONED]


@pytest.mark.parametrize(
    ("prefix", "event"),
    [
        pytest.param([], ANN, id="engineer-before-answer"),
        pytest.param([], NobodyAccepted(), id="nobody-before-answer"),
        pytest.param([Answered()], ANN, id="engineer-in-menu"),
        pytest.param([Answered()], NobodyAccepted(), id="nobody-in-menu"),
        pytest.param([Answered()], RECORDED, id="recording-in-menu"),
        pytest.param([Answered(), DigitsReceived(digits="2")], RECORDED, id="recording-holding"),
        pytest.param([Answered(), DigitsReceived(digits="2")], NoInput(), id="silence-holding"),
        pytest.param([Answered(), DigitsReceived(digits="2")], Answered(), id="answer-holding"),
        pytest.param(
            [Answered(), DigitsReceived(digits="2"), NobodyAccepted()],
            ANN,
            id="engineer-in-voicemail",
        ),
        pytest.param(
            [Answered(), DigitsReceived(digits="2"), NobodyAccepted()],
            DigitsReceived(digits="1"),
            id="digits-in-voicemail",
        ),
    ],
)
def test_irrelevant_events_are_ignored(prefix: list[Event], event: Event) -> None:
    steps = run(menu(), *prefix, event)
    assert steps[-1] == Step(state=steps[-2].state)


def test_outcome_reported_at_most_once_for_every_short_event_sequence() -> None:
    alphabet: list[Event] = [
        Answered(),
        DigitsReceived(digits="1"),
        DigitsReceived(digits="7"),
        NoInput(),
        HungUp(),
        ANN,
        NobodyAccepted(),
        RECORDED,
    ]
    for flow in (plain(), menu(), plain(voicemail=False)):
        for events in itertools.product(alphabet, repeat=4):
            steps = run(flow, *events)
            found = outcomes(steps)
            assert len(found) <= 1, events
            if found:
                index = next(i for i, s in enumerate(steps) if s.outcome is not None)
                assert all(s == Step(state=steps[index].state) for s in steps[index + 1 :]), events


def test_language_and_texts_are_parameters() -> None:
    f = menu(
        language="nl-NL",
        menu_text="druk 1",
        hold_text="even wachten",
        invalid_text="fout",
        connecting_text="verbinden met {engineer_name}",
        voicemail_text="spreek in",
        voicemail_saved_text="bedankt",
        gather_timeout_s=8,
    )
    steps = run(
        f,
        Answered(),
        DigitsReceived(digits="4"),
        DigitsReceived(digits="1"),
        NobodyAccepted(),
        RECORDED,
    )
    nl = "nl-NL"
    assert steps[1].actions == (
        Gather(
            prompts=(Say(text=GREETING, language=nl), Say(text="druk 1", language=nl)),
            num_digits=1,
            timeout_s=8,
        ),
    )
    assert steps[2].actions[0] == Say(text="fout", language=nl)
    assert steps[3].actions == (Say(text="even wachten", language=nl), Hold(priority="high"))
    assert steps[4].actions[0] == Say(text="spreek in", language=nl)
    assert steps[5].actions[0] == Say(text="bedankt", language=nl)
    connected = run(f, Answered(), DigitsReceived(digits="2"), ANN)[-1]
    assert connected.actions[0] == Say(text="verbinden met Ann", language=nl)
    no_vm_flow = plain(language=nl, voicemail=False, nobody_text="niemand")
    no_vm = run(no_vm_flow, Answered(), NobodyAccepted())
    assert no_vm[-1].actions[0] == Say(text="niemand", language=nl)
    assert no_vm[1].actions[:2] == (
        Say(text=GREETING, language=nl),
        Say(text=HOLD_TEXT.text, language=nl),
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"default_priority": "urgent"},
        {"max_attempts": 0},
        {"max_voicemail_s": 0},
        {"gather_timeout_s": 0},
    ],
)
def test_rejects_nonsense_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        plain(**kwargs)
