"""Flow actions -> TwiML documents.

Choices, and why:

- **Gather** holds all its prompts, so a key pressed during the message is
  kept, and posts to its action even on silence (``actionOnEmptyResult``),
  which the webhook turns into ``NoInput``.
- **Hold** is ``<Play>`` of the music once, then ``<Redirect>`` to
  ``hold_url``: the caller loops through the gateway. The gateway takes the
  caller out at once by redirecting the live call over REST
  (``calls(sid).update(url=...)``), and every loop is also a fallback: the
  hold URL can answer with the bridge or voicemail TwiML if that REST update
  was lost, and it shows the caller is still there. ``<Enqueue>`` was not
  chosen: ``<Dial><Queue>`` takes the head of a Twilio queue, while the
  gateway decides itself which waiting caller goes to which engineer.
- **Bridge** is ``<Dial><Conference>`` in a room named after the engineer's
  call (:func:`conference_name`). The engineer's leg, once it has pressed 1,
  is given ``Bridge(call_id=<its own call id>)`` and waits in the room; the
  caller's flow emits ``Bridge(call_id=<engineer call id>)`` and joins the
  same room, whichever arrives first. Either leaving ends the room for both.
- **Record** needs ``record_action_url``: the recording's URL arrives there.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather as TwimlGather
from twilio.twiml.voice_response import VoiceResponse

from ivr_flows.model import Action, Bridge, Gather, Hangup, Hold, Play, Record, Say

# Twilio's own hold music, the one its docs and twimlets use.
DEFAULT_HOLD_MUSIC_URL = (
    "http://com.twilio.sounds.music.s3.amazonaws.com/MARKOVICHAMP-Borghestral.mp3"
)

_ROOM_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def conference_name(call_id: str) -> str:
    """The conference room that bridges a caller to the engineer on call ``call_id``."""
    return "bridge-" + _ROOM_UNSAFE.sub("_", call_id)


def render(
    actions: Sequence[Action],
    *,
    gather_action_url: str,
    language_default: str = "en-US",
    record_action_url: str | None = None,
    hold_url: str | None = None,
    recording_status_url: str | None = None,
    default_music_url: str = DEFAULT_HOLD_MUSIC_URL,
) -> str:
    """One TwiML document for the actions a flow step returned."""
    response = VoiceResponse()
    for action in actions:
        match action:
            case Say() | Play():
                _prompt(response, action, language_default)
            case Gather():
                gather = TwimlGather(
                    input="dtmf",
                    num_digits=action.num_digits,
                    timeout=action.timeout_s,
                    action=gather_action_url,
                    method="POST",
                    action_on_empty_result=True,
                )
                for prompt in action.prompts:
                    _prompt(gather, prompt, language_default)
                response.append(gather)
            case Hold():
                if hold_url is None:
                    raise ValueError("rendering Hold needs hold_url")
                music = default_music_url if action.music == "default" else action.music
                response.play(music, loop=1)
                response.redirect(hold_url, method="POST")
            case Bridge():
                dial = response.dial()
                dial.conference(
                    conference_name(action.call_id),
                    start_conference_on_enter=True,
                    end_conference_on_exit=True,
                    beep=False,
                    wait_url="",
                )
            case Record():
                if record_action_url is None:
                    raise ValueError("rendering Record needs record_action_url")
                response.record(
                    max_length=action.max_seconds,
                    play_beep=action.beep,
                    action=record_action_url,
                    method="POST",
                    recording_status_callback=recording_status_url,
                    recording_status_callback_method="POST" if recording_status_url else None,
                )
            case Hangup():
                response.hangup()
            case _:
                raise TypeError(f"not a flow action: {action!r}")
    return str(response.to_xml())


def joined(first: str, then: str) -> str:
    """One TwiML document that runs the verbs of ``first``, then those of ``then`` ("" is none)."""
    if not first:
        return then
    if not then:
        return first
    head = ET.fromstring(first)
    head.extend(list(ET.fromstring(then)))
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(head, encoding="unicode")


def render_hangup(message: str | None = None, *, language: str = "en-US") -> str:
    """End a call politely: for unknown, finished or replayed callbacks."""
    response = VoiceResponse()
    if message:
        response.say(message, language=language)
    response.hangup()
    return str(response.to_xml())


def render_message(text: str) -> str:
    """The reply to an inbound SMS: one message, or an empty ``<Response/>`` for none."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response.to_xml())


def _prompt(parent: VoiceResponse | TwimlGather, prompt: Say | Play, language_default: str) -> None:
    if isinstance(prompt, Say):
        parent.say(prompt.text, language=prompt.language or language_default)
    else:
        parent.play(prompt.prompt)
