"""One Twilio call as the provider sees it: its session, and what Twilio's next webhook needs.

The flow's side of a call (state, outcome, what was reported) is its
:class:`~providers.call_session.CallSession`, run by the call-session runner.
The Twilio side that a restarted gateway needs to serve the call's next
webhook lives in the session's ``extra`` (text only, saved with the session):
the CallSid, the far end's number, whether it was answered, which verb's
action may post next, the hold music, TwiML queued for the next fetch of the
hold URL, the bridged leg, whether the gateway canceled it. What only this
process can act on (a REST redirect on its way, a create whose answer was
lost, a caller's end waiting for a recording) stays in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from providers.call_session import CallSession


class _Text:
    """A text field of the call kept in its session's ``extra`` ("" when absent)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, call: TwilioCall, owner: object = None) -> str:
        return call.session.extra.get(self.key, "")

    def __set__(self, call: TwilioCall, value: str) -> None:
        call.put(self.key, value)


class _Flag:
    """A yes/no field of the call kept in its session's ``extra`` ("1", or absent)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, call: TwilioCall, owner: object = None) -> bool:
        return call.session.extra.get(self.key) == "1"

    def __set__(self, call: TwilioCall, value: bool) -> None:
        call.put(self.key, "1" if value else "")


@dataclass(slots=True, kw_only=True)
class TwilioCall:
    """A call the provider runs a flow on; ``changed``: ``extra`` changed since the session was saved."""

    session: CallSession
    caller_id: str = ""  # the number an outbound call is placed from (for a lost create's lookup)
    unsure_since: datetime | None = None  # a create's answer was lost at this time: placed or not, unknown
    redirecting: bool = False  # a REST redirect to the hold URL is on its way: it, not the loop, fetches `pending`
    ending: bool = False  # the final status came while a Record action may still be on its way
    changed: bool = False

    # Kept in session.extra, so they outlive this process:
    sid = _Text()  # Twilio's CallSid
    number = _Text()  # the far end (engineer or caller), E.164; "" when withheld
    answered = _Flag()  # our flow has started talking (answer webhook, or an inbound call)
    in_progress = _Flag()  # Twilio reported the call picked up
    expecting = _Text()  # "gather" | "record": the verb whose action webhook may come next
    music = _Text()  # the hold music of the caller's last Hold
    pending = _Text()  # TwiML for the next fetch of the hold URL (queued by notify)
    linked = _Text()  # the call bridged (or about to be bridged) with this one
    canceled = _Flag()  # hung up by the gateway

    @property
    def call_id(self) -> str:
        return self.session.call_id

    @property
    def outbound(self) -> bool:
        return self.session.outbound

    def put(self, key: str, value: str) -> None:
        """Set (or, with "", remove) one of the call's stored fields; notes whether it changed."""
        extra = self.session.extra
        if value and extra.get(key) != value:
            extra[key] = value
            self.changed = True
        elif not value and key in extra:
            del extra[key]
            self.changed = True
