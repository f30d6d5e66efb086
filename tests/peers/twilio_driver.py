"""Twilio's side of the webhooks: signed POSTs, and a TwiML interpreter that follows documents.

The signature is computed here from the documented algorithm (base64 of
HMAC-SHA1, keyed with the auth token, over the public URL followed by every
POST parameter as name + value, sorted by name), not with the SDK, so a test
can cross-check the two.

Requests are signed with the *public* URL (what Twilio believes it calls) and
sent to ``base_url`` (the server under test on 127.0.0.1), as through a
reverse proxy.

Answering-machine detection is simulated as Twilio documents it
(:meth:`TwilioDriver.pick_up`): with ``MachineDetection`` alone (synchronous)
the callee is held in silence while the detector listens and the first TwiML
request carries ``AnsweredBy``; with ``AsyncAmd=true`` the TwiML is fetched at
once, without ``AnsweredBy``, and the verdict is POSTed to
``AsyncAmdStatusCallback`` later (``CallSid``, ``AccountSid``, ``AnsweredBy``,
``MachineDetectionDuration``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urljoin

import aiohttp

from tests.peers.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, new_sid

Params = Mapping[str, str] | Iterable[tuple[str, str]]
Transcript = list[tuple[str, str]]

API_VERSION = "2010-04-01"
#: about how long Twilio's detector listens before its verdict (its docs: typically 2.5 to 4 s)
TYPICAL_AMD_S = 2.5


class DriverError(Exception):
    """The server answered something Twilio could not follow (or the test gave too few digits)."""


def twilio_signature(auth_token: str, url: str, params: Params) -> str:
    pairs = sorted(_pairs(params))
    payload = url + "".join(name + value for name, value in pairs)
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass(frozen=True, kw_only=True)
class CallLeg:
    """One call as Twilio describes it in every voice webhook."""

    from_: str
    to: str
    direction: str = "outbound-api"
    sid: str = field(default_factory=lambda: new_sid("CA"))

    def params(self, status: str, account_sid: str) -> dict[str, str]:
        return {
            "AccountSid": account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": status,
            "Direction": self.direction,
            "From": self.from_,
            "To": self.to,
            "Caller": self.from_,
            "Called": self.to,
        }


class TwilioDriver:
    """``async with TwilioDriver(base_url=..., auth_token=...) as twilio:`` posts like Twilio."""

    def __init__(
        self,
        *,
        base_url: str,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        public_base_url: str | None = None,
        recording_duration_s: int = 7,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_base_url = (public_base_url or base_url).rstrip("/")
        self.auth_token = auth_token
        self.account_sid = account_sid
        self.recording_duration_s = recording_duration_s
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.verdicts: set[asyncio.Task[tuple[int, str]]] = set()  # asynchronous AMD verdicts on their way
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        for task in list(self.verdicts):
            task.cancel()
        await asyncio.gather(*self.verdicts, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> TwilioDriver:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- requests

    def public_url(self, path_or_url: str, *, relative_to: str | None = None) -> str:
        """The absolute public URL of a path, or of a relative or absolute (public or local) URL."""
        url = urljoin(relative_to or self.public_base_url + "/", path_or_url)
        if url.startswith(self.base_url + "/") and self.base_url != self.public_base_url:
            url = self.public_base_url + url[len(self.base_url) :]
        if not url.startswith(self.public_base_url + "/"):
            raise DriverError(f"{url} is outside {self.public_base_url}")
        return url

    def sign(self, public_url: str, params: Params) -> str:
        return twilio_signature(self.auth_token, public_url, params)

    async def post(
        self,
        path_or_url: str,
        params: Params,
        *,
        signed: bool = True,
        signature: str | None = None,
        relative_to: str | None = None,
    ) -> tuple[int, str]:
        """POST form ``params`` as Twilio would; ``signature`` overrides the computed one."""
        if self._session is None:
            raise RuntimeError("TwilioDriver is not open")
        public = self.public_url(path_or_url, relative_to=relative_to)
        pairs = list(_pairs(params))
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        elif signed:
            headers["X-Twilio-Signature"] = self.sign(public, pairs)
        local = self.base_url + public[len(self.public_base_url) :]
        self.sent.append((public, dict(pairs)))
        async with self._session.post(local, data=pairs, headers=headers) as resp:
            return resp.status, await resp.text()

    # ------------------------------------------------------------------- voice

    async def answer(
        self, url: str, leg: CallLeg, *, answered_by: str | None = None
    ) -> tuple[int, str]:
        """The call was answered: Twilio fetches its TwiML from the call's ``Url``."""
        params = leg.params("in-progress", self.account_sid)
        if answered_by is not None:
            params["AnsweredBy"] = answered_by
        return await self.post(url, params)

    async def pick_up(
        self,
        created: Mapping[str, str],
        leg: CallLeg,
        *,
        answered_by: str = "human",
        amd_s: float | None = None,
    ) -> tuple[int, str]:
        """The callee of a call created with the form ``created`` picked up: what Twilio does next.

        Without ``MachineDetection``: the TwiML is fetched at once, no ``AnsweredBy``. With it alone
        (synchronous AMD): silence for ``amd_s`` while the detector listens, then the TwiML request
        with ``AnsweredBy``. With ``AsyncAmd=true``: the TwiML at once, no ``AnsweredBy``, and the
        verdict ``answered_by`` POSTed to ``AsyncAmdStatusCallback`` ``amd_s`` later (a task in
        ``verdicts``); with ``amd_s=None`` the test sends it itself with :meth:`amd_verdict`.
        """
        amd = created.get("MachineDetection") in ("Enable", "DetectMessageEnd")
        if amd and created.get("AsyncAmd", "").lower() != "true":
            await self._sleep(amd_s or 0)
            return await self.answer(created["Url"], leg, answered_by=answered_by)
        answer = await self.answer(created["Url"], leg)
        if amd and amd_s is not None:
            task = asyncio.ensure_future(self._later_verdict(created, leg, answered_by, amd_s))
            self.verdicts.add(task)
            task.add_done_callback(self.verdicts.discard)
        return answer

    async def amd_verdict(
        self, created: Mapping[str, str], leg: CallLeg, answered_by: str, *, detection_ms: int = 2500
    ) -> tuple[int, str]:
        """POST the asynchronous AMD verdict: ``human``, ``machine_start``, ``machine_end_beep``,
        ``machine_end_silence``, ``machine_end_other``, ``fax`` or ``unknown``."""
        if created.get("AsyncAmd", "").lower() != "true" or not created.get("AsyncAmdStatusCallback"):
            raise DriverError("the call was not created with AsyncAmd=true and an AsyncAmdStatusCallback")
        params = {
            "AccountSid": self.account_sid,
            "CallSid": leg.sid,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(detection_ms),
        }
        return await self.post(created["AsyncAmdStatusCallback"], params)

    async def _later_verdict(
        self, created: Mapping[str, str], leg: CallLeg, answered_by: str, after_s: float
    ) -> tuple[int, str]:
        await self._sleep(after_s)
        return await self.amd_verdict(created, leg, answered_by, detection_ms=int(after_s * 1000))

    async def incoming_call(self, url: str, leg: CallLeg) -> tuple[int, str]:
        """A caller dialled a number whose voice URL is ``url``."""
        return await self.post(url, leg.params("ringing", self.account_sid))

    async def status_callback(
        self,
        url: str,
        leg: CallLeg,
        status: str,
        *,
        answered_by: str | None = None,
        duration_s: int | None = None,
        sip_response_code: str | None = None,
    ) -> tuple[int, str]:
        """``CallStatus``: queued, initiated, ringing, in-progress, completed, busy,
        no-answer, failed or canceled; ``AnsweredBy``: human, machine_start, fax, unknown."""
        params = leg.params(status, self.account_sid)
        if answered_by is not None:
            params["AnsweredBy"] = answered_by
        if duration_s is not None:
            params["CallDuration"] = str(duration_s)
        if sip_response_code is not None:
            params["SipResponseCode"] = sip_response_code
        return await self.post(url, params)

    async def follow(
        self,
        twiml: str,
        *,
        leg: CallLeg,
        digits: Sequence[str | None] = (),
        url: str | None = None,
        max_redirects: int = 3,
    ) -> Transcript:
        """Run ``twiml`` as Twilio would and keep following what the server returns.

        ``digits`` answers each ``<Gather>`` in turn (``None``: the caller stays
        silent). ``url`` is where the document came from (for relative URLs).
        After ``max_redirects`` redirects the call is left ``("parked", url)``,
        as a caller looping in a hold. Returns what happened, in order:
        ``("say", text)``, ``("play", url)``, ``("gather", digits)``,
        ``("record", recording url)``, ``("redirect", url)``,
        ``("dial", "conference:<room>")``, ``("enqueue", queue)``,
        ``("hangup", "")``, ``("reject", reason)``, ``("end", "")`` when a
        document runs out of verbs (Twilio then hangs up).
        """
        transcript: Transcript = []
        pending = list(digits)
        current = self.public_url(url) if url else self.public_base_url + "/"
        redirects = 0
        document: str | None = twiml
        while document is not None:
            verbs = _parse(document)
            next_document: str | None = None
            for verb in verbs:
                tag = verb.tag
                if tag in ("Say", "Play"):
                    transcript.append((tag.lower(), (verb.text or "").strip()))
                elif tag == "Pause":
                    transcript.append(("pause", verb.get("length", "1")))
                elif tag == "Gather":
                    for prompt in verb:
                        transcript.append((prompt.tag.lower(), (prompt.text or "").strip()))
                    if not pending:
                        raise DriverError(f"a <Gather> at {current} and no digits left to press")
                    pressed = pending.pop(0)
                    transcript.append(("gather", pressed or ""))
                    if not pressed and verb.get("actionOnEmptyResult") != "true":
                        continue  # silence without actionOnEmptyResult: on to the next verb
                    params = leg.params("in-progress", self.account_sid)
                    params["Digits"] = pressed or ""
                    params["FinishedOnKey"] = ""
                    next_document, current = await self._fetch(verb, current, params)
                    break
                elif tag == "Record":
                    recording = (
                        f"https://api.twilio.com/{API_VERSION}/Accounts/"
                        f"{self.account_sid}/Recordings/{new_sid('RE')}"
                    )
                    transcript.append(("record", recording))
                    params = leg.params("in-progress", self.account_sid)
                    params["RecordingUrl"] = recording
                    params["RecordingDuration"] = str(self.recording_duration_s)
                    params["RecordingSid"] = recording.rsplit("/", 1)[1]
                    params["Digits"] = "hangup"
                    next_document, current = await self._fetch(verb, current, params)
                    break
                elif tag == "Redirect":
                    target = self.public_url((verb.text or "").strip(), relative_to=current)
                    if redirects >= max_redirects:
                        transcript.append(("parked", target))
                        return transcript
                    redirects += 1
                    transcript.append(("redirect", target))
                    params = leg.params("in-progress", self.account_sid)
                    next_document = await self._checked_post(target, params)
                    current = target
                    break
                elif tag == "Dial":
                    transcript.append(("dial", _dial_target(verb)))
                    return transcript
                elif tag == "Enqueue":
                    transcript.append(("enqueue", (verb.text or "").strip()))
                    return transcript
                elif tag == "Hangup":
                    transcript.append(("hangup", ""))
                    return transcript
                elif tag == "Reject":
                    transcript.append(("reject", verb.get("reason", "rejected")))
                    return transcript
                else:
                    raise DriverError(f"unsupported TwiML verb <{tag}>")
            else:
                transcript.append(("end", ""))
                return transcript
            document = next_document
        return transcript

    async def fetch(self, url: str, leg: CallLeg) -> str:
        """Fetch a call's new TwiML, as Twilio does after a REST redirect (``update(url=...)``)."""
        return await self._checked_post(url, leg.params("in-progress", self.account_sid))

    # --------------------------------------------------------------------- sms

    async def inbound_sms(
        self, url: str, *, from_: str, to: str, body: str, message_sid: str | None = None
    ) -> tuple[int, str]:
        sid = message_sid or new_sid("SM")
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": sid,
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "NumSegments": "1",
        }
        return await self.post(url, params)

    async def sms_status(
        self,
        url: str,
        *,
        message_sid: str,
        status: str,
        from_: str,
        to: str,
        error_code: str | None = None,
    ) -> tuple[int, str]:
        """``MessageStatus``: queued, sent, delivered, undelivered or failed."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "From": from_,
            "To": to,
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        return await self.post(url, params)

    # ---------------------------------------------------------------- internals

    async def _fetch(
        self, verb: ET.Element, current: str, params: dict[str, str]
    ) -> tuple[str, str]:
        """POST to a verb's ``action`` (Twilio uses the current document's URL when absent)."""
        target = self.public_url(verb.get("action") or current, relative_to=current)
        return await self._checked_post(target, params), target

    async def _checked_post(self, url: str, params: dict[str, str]) -> str:
        status, text = await self.post(url, params)
        if status != 200:
            raise DriverError(f"POST {url} answered {status}: {text[:200]}")
        return text


def _parse(document: str) -> list[ET.Element]:
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        raise DriverError(f"not XML: {exc}: {document[:200]!r}") from exc
    if root.tag != "Response":
        raise DriverError(f"TwiML root is <{root.tag}>, not <Response>")
    return list(root)


def _dial_target(dial: ET.Element) -> str:
    nouns = list(dial)
    if not nouns:
        return f"number:{(dial.text or '').strip()}"
    noun = nouns[0]
    return f"{noun.tag.lower()}:{(noun.text or '').strip()}"


def _pairs(params: Params) -> Iterable[tuple[str, str]]:
    if isinstance(params, Mapping):
        items: Iterable[tuple[str, str]] = params.items()
    else:
        items = params
    return [(str(k), str(v)) for k, v in items]
