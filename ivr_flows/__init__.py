"""Call flows as pure state machines: events in, actions and outcomes out."""

from __future__ import annotations

from ivr_flows.alert_call import AlertCallFlow, AlertCallState
from ivr_flows.hotline import HotlineCallerFlow, HotlineState
from ivr_flows.model import (
    Action,
    Answered,
    Bridge,
    DigitsReceived,
    EngineerConnected,
    Event,
    Flow,
    FlowOutcome,
    Gather,
    Hangup,
    Hold,
    HungUp,
    NobodyAccepted,
    NoInput,
    Play,
    Prompt,
    Record,
    RecordingFinished,
    Say,
    Step,
)
from ivr_flows.screening import ScreeningFlow, ScreeningState
from ivr_flows.sms_reply import SMS_HELP, SmsCommand, parse_sms_reply

__all__ = [
    "SMS_HELP",
    "Action",
    "AlertCallFlow",
    "AlertCallState",
    "Answered",
    "Bridge",
    "DigitsReceived",
    "EngineerConnected",
    "Event",
    "Flow",
    "FlowOutcome",
    "Gather",
    "Hangup",
    "Hold",
    "HotlineCallerFlow",
    "HotlineState",
    "HungUp",
    "NoInput",
    "NobodyAccepted",
    "Play",
    "Prompt",
    "Record",
    "RecordingFinished",
    "Say",
    "ScreeningFlow",
    "ScreeningState",
    "SmsCommand",
    "Step",
    "parse_sms_reply",
]
