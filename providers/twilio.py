"""Twilio: SMS, WhatsApp and IVR calls through twilio-python's async client, the parsers and
signature check of Twilio's callbacks, and the TwiML of our IVR.

Every failure is a ProviderError, classified where the HTTP answer is still whole: in the
transport, because twilio-python's exceptions drop the response headers (Retry-After).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import phonenumbers
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Gather, VoiceResponse

from providers.base import (
    INVALID_NUMBER,
    OPTED_OUT,
    OUTSIDE_SESSION_WINDOW,
    TEMPLATE_NOT_APPROVED,
    UNAUTHORIZED,
    AccountCheck,
    CallReceipt,
    CallRequest,
    CheckFailed,
    NumberCapabilities,
    ProviderError,
    SendReceipt,
    SmsRequest,
    TemplateInfo,
    WhatsAppButtons,
    WhatsAppTemplate,
)
from providers.events import CallStatus, InboundMessage, KeypadInput, MessageStatus
from providers.http import exchange

PROVIDER = "twilio"
API_URL = "https://api.twilio.com"
SIGNATURE_HEADER = "X-Twilio-Signature"
WHATSAPP_PREFIX = "whatsapp:"
NOT_CONFIGURED = "NOT_CONFIGURED"

# Twilio error codes (twilio.com/docs/api/errors) the flows act on; any other 4xx keeps its
# Twilio code as ProviderError.code.
_ERROR_CODES = {
    20003: UNAUTHORIZED,  # authenticate
    21610: OPTED_OUT,  # the recipient replied STOP
    21211: INVALID_NUMBER,  # invalid 'To' phone number
    21214: INVALID_NUMBER,  # 'To' phone number cannot be reached (calls)
    21217: INVALID_NUMBER,  # phone number does not appear to be valid (calls)
    21408: INVALID_NUMBER,  # no permission to send to the 'To' number's region
    21612: INVALID_NUMBER,  # 'To' not currently reachable via SMS
    21614: INVALID_NUMBER,  # 'To' is not a valid mobile number
    13224: INVALID_NUMBER,  # Twilio does not call this number, or it is invalid
    63003: INVALID_NUMBER,  # the channel could not find the 'To' address (not on WhatsApp)
    63024: INVALID_NUMBER,  # invalid WhatsApp recipient
    21655: TEMPLATE_NOT_APPROVED,  # ContentSid is not a usable Content template
    63016: OUTSIDE_SESSION_WINDOW,
}
_THROTTLED_CODE = 20429
_MESSAGE_STATUSES = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "queued",
    "sent": "sent",
    # Some recipients got it, not all: no promise of delivery, and no failure either.
    "partially_delivered": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
_CALL_STATUSES = frozenset(
    {"ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"}
)
# (Say language, voice) per shop language. Polly.Aditi speaks Indian English and Hindi; the
# default voice ("man") does not speak hi-IN. Another shop language falls back to English.
_SPEECH = {"en": ("en-IN", "Polly.Aditi"), "hi": ("hi-IN", "Polly.Aditi")}
# Callback values are stored in columns this wide (sids; error codes; numbers); longer ones
# are not Twilio's.
_MAX_ID, _MAX_CODE, _MAX_NUMBER = 128, 64, 20
_MAX_CALL_SECONDS = 86_400
# Advanced Opt-Out's keyword families; a value Twilio adds later is an ordinary message.
_OPT_OUT_TYPES = frozenset({"STOP", "START", "HELP"})
_KEYPAD = re.compile(r"[0-9*#]{0,16}")


class TwilioClient:
    """Sends SMS and WhatsApp messages and places IVR calls through one Twilio account."""

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        api_url: str = API_URL,
        *,
        whatsapp_from: str = "",
        status_callback: str = "",
        timeout_seconds: float = 15.0,
    ) -> None:
        """`status_callback` is where WhatsApp sends report (their requests carry no URL)."""
        self._http = _Transport(api_url, timeout_seconds)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._whatsapp_from = whatsapp_from
        self._status_callback = status_callback

    async def aclose(self) -> None:
        """Close the HTTP session."""
        await self._http.close()

    async def send_sms(self, request: SmsRequest) -> SendReceipt:
        """Create one SMS (Twilio picks GSM-7 or UCS-2 itself)."""
        message = await self._client.messages.create_async(
            to=request.to,
            from_=request.sender,
            body=request.body,
            status_callback=request.status_callback or None,
        )
        return _receipt(message.sid, message.status)

    async def send_template(self, request: WhatsAppTemplate) -> SendReceipt:
        """Send an approved Content template, its params as variables "1", "2", ...

        The buttons' payloads are the action ids written in the Content template; Twilio takes
        none at send time, so `request.postbacks` must match them.
        """
        variables = {str(n): value for n, value in enumerate(request.params, start=1)}
        message = await self._client.messages.create_async(
            to=WHATSAPP_PREFIX + request.to,
            from_=self._whatsapp_sender(),
            content_sid=request.template_id,
            content_variables=json.dumps(variables, ensure_ascii=False) if variables else None,
            status_callback=self._status_callback or None,
        )
        return _receipt(message.sid, message.status)

    async def send_buttons(self, request: WhatsAppButtons) -> SendReceipt:
        """Send a session message whose buttons are numbered text lines ("1. Confirm").

        Twilio sends real quick-reply buttons only from a Content template, so a session
        message degrades: the customer answers with the digit, a typed reply.
        """
        message = await self._client.messages.create_async(
            to=WHATSAPP_PREFIX + request.to,
            from_=self._whatsapp_sender(),
            body=numbered_text(request),
            status_callback=self._status_callback or None,
        )
        return _receipt(message.sid, message.status)

    async def template(self, template_id: str) -> TemplateInfo:
        """A Content template's WhatsApp approval status, name, text and language."""
        content = self._client.content.v1.contents(template_id)
        resource = await content.fetch_async()
        # GET /v1/Content/{sid}/ApprovalRequests answers {"whatsapp": {"name", "category",
        # "status": "approved" | "pending" | "rejected" | ..., "rejection_reason", ...}}
        # (Twilio changelog 2024-08-12, content-api-flows-approval).
        approval = await content.approval_fetch().fetch_async()
        whatsapp = approval.whatsapp if isinstance(approval.whatsapp, dict) else {}
        status = whatsapp.get("status")
        return TemplateInfo(
            template_id=template_id,
            name=_str(whatsapp.get("name")) or _str(resource.friendly_name),
            status=status.upper() if isinstance(status, str) and status else "UNSUBMITTED",
            text=_template_text(resource.types),
            language=_str(resource.language),
        )

    async def place_call(self, request: CallRequest) -> CallReceipt:
        """Call the customer; Twilio fetches our IVR's TwiML from `answer_url` on answer."""
        call = await self._client.calls.create_async(
            to=request.to,
            from_=request.caller_id,
            url=request.answer_url,
            status_callback=request.status_callback or None,
            status_callback_event=["completed"] if request.status_callback else None,
            timeout=request.timeout_seconds,
        )
        if not call.sid:
            raise ProviderError(
                "twilio call: answer has no sid", retryable=False, code="BAD_RESPONSE"
            )
        return CallReceipt(provider_call_id=call.sid, status=call.status or "queued")

    async def bridge_call(
        self, first: str, second: str, *, caller_id: str, timeout_seconds: int = 30
    ) -> CallReceipt:
        """Call `first` (an agent); once answered, TwiML given inline dials `second` (the
        customer), both seeing `caller_id`."""
        response = VoiceResponse()
        response.dial(second, caller_id=caller_id, timeout=timeout_seconds)
        call = await self._client.calls.create_async(
            to=first, from_=caller_id, twiml=str(response), timeout=timeout_seconds
        )
        if not call.sid:
            raise ProviderError(
                "twilio call: answer has no sid", retryable=False, code="BAD_RESPONSE"
            )
        return CallReceipt(provider_call_id=call.sid, status=call.status or "queued")

    async def check_account(self, numbers: Sequence[str]) -> AccountCheck:
        """The account's name and the SMS and voice capabilities of `numbers`, which must all
        be numbers of the account; raises CheckFailed naming the input Twilio refused."""
        account = self._client.api.v2010.accounts(self._client.account_sid)
        try:
            resource = await account.fetch_async()
        except _Refusal as refused:
            # Twilio cannot tell a wrong sid from a wrong token: both fail Basic auth.
            if refused.status == 401:
                raise CheckFailed("auth_token", refused.reason) from None
            if refused.status == 404:
                raise CheckFailed("account_sid", refused.reason) from None
            raise
        if resource.status != "active":
            raise CheckFailed(
                "account_sid", f"the Twilio account is {resource.status or 'not active'}"
            )
        held = []
        for index, raw in enumerate(numbers):
            field = f"numbers.{index}"
            try:
                number = _e164(raw, field)
            except ValueError:
                raise CheckFailed(field, f"{raw} is not an E.164 phone number") from None
            # PhoneNumber is a pattern that partial numbers match too: keep the exact one.
            found = await account.incoming_phone_numbers.list_async(phone_number=number)
            match = next((item for item in found if item.phone_number == number), None)
            if match is None:
                raise CheckFailed(field, f"{raw} is not a number of this Twilio account")
            capabilities = match.capabilities if isinstance(match.capabilities, dict) else {}
            held.append(
                NumberCapabilities(
                    number=number,
                    sms=capabilities.get("sms") is True,
                    voice=capabilities.get("voice") is True,
                )
            )
        return AccountCheck(name=_str(resource.friendly_name), numbers=tuple(held))

    def _whatsapp_sender(self) -> str:
        if not self._whatsapp_from:
            raise ProviderError(
                "twilio: no WhatsApp sender number is configured",
                retryable=False,
                code=NOT_CONFIGURED,
            )
        return WHATSAPP_PREFIX + self._whatsapp_from


class _Transport(AsyncTwilioHttpClient):
    """twilio-python's aiohttp client, pointed at `api_url` and raising ProviderErrors.

    A non-default `api_url` (a fake, the sandbox) receives every Twilio host's requests:
    api.twilio.com's and content.twilio.com's paths do not collide.
    """

    def __init__(self, api_url: str, timeout_seconds: float) -> None:
        # No session yet: aiohttp wants it made inside the running loop, at the first request.
        super().__init__(pool_connections=False, timeout=timeout_seconds)
        base = urlsplit(api_url.rstrip("/"))
        self._base = None if api_url.rstrip("/") == API_URL else (base.scheme, base.netloc)

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (twilio-python's signature)
        allow_redirects: bool = False,
    ) -> Response:
        """Send one request; a refusal, a timeout or a dropped connection is a ProviderError
        (see providers.http for which failures are in doubt)."""
        parts = urlsplit(url)
        if self._base is not None:
            url = urlunsplit((*self._base, parts.path, parts.query, parts.fragment))
        where = f"twilio {method} {parts.path}"
        if self.session is None:
            self.session = aiohttp.ClientSession()
        if auth is not None:
            # Send the header ourselves: aiohttp 3.14 deprecates the BasicAuth twilio-python makes.
            credentials = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers = {**(headers or {}), "Authorization": f"Basic {credentials}"}
        # twilio-python passes timeout=None, which aiohttp reads as "no timeout at all".
        answer = await exchange(
            self.session,
            method.upper(),
            url,
            where,
            client_timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            params=params,
            data=data,
            headers=headers,
            allow_redirects=allow_redirects,
        )
        response = Response(
            answer.status,
            answer.text,
            {"Retry-After": answer.retry_after} if answer.retry_after is not None else {},
        )
        if response.status_code >= 400:
            raise _refusal(where, response)
        return response


class _Refusal(ProviderError):
    """A permanent refusal that keeps its HTTP status and Twilio's own words (`reason`)."""

    def __init__(self, text: str, *, code: str, status: int, reason: str) -> None:
        super().__init__(text, retryable=False, code=code)
        self.status = status
        self.reason = reason


def _refusal(where: str, response: Response) -> ProviderError:
    status = response.status_code
    body = _json_object(response.text)
    code = body.get("code") if isinstance(body.get("code"), int) else None
    # Legacy errors carry "message"; RFC 9457 ones (newer APIs) "detail" and "title".
    message = _str(body.get("message")) or _str(body.get("detail")) or _str(body.get("title"))
    text = f"{where}: HTTP {status}" + (f", Twilio error {code}" if code else "")
    text += f": {message}" if message else ""
    retry_after = _retry_after(response.headers.get("Retry-After"))
    if status == 429 or code == _THROTTLED_CODE:
        return ProviderError(text, retryable=True, code="THROTTLED", retry_after=retry_after)
    if status >= 500:
        return ProviderError(text, retryable=True, code=f"HTTP_{status}", retry_after=retry_after)
    reason = message or f"HTTP {status}"
    if code:
        reason += f" (Twilio error {code})"
    if code in _ERROR_CODES:
        kind = _ERROR_CODES[code]
    elif status == 401:
        kind = UNAUTHORIZED
    else:
        kind = str(code) if code else f"HTTP_{status}"
    return _Refusal(text, code=kind, status=status, reason=reason)


def _receipt(sid: str | None, status: str | None) -> SendReceipt:
    if not sid:
        # Not retryable: Twilio may have taken the message, and a retry could send it twice.
        raise ProviderError(
            "twilio message: answer has no sid", retryable=False, code="BAD_RESPONSE"
        )
    return SendReceipt(provider_message_id=sid, status=_MESSAGE_STATUSES.get(status, "queued"))


def numbered_text(request: WhatsAppButtons) -> str:
    """The header, text and buttons of a session message as plain text, buttons numbered."""
    lines = [f"{n}. {button.title}" for n, button in enumerate(request.buttons, start=1)]
    text = f"{request.header}\n{request.text}" if request.header else request.text
    return "\n\n".join([text, "\n".join(lines)]) if lines else text


def _template_text(types: Any) -> str:
    if not isinstance(types, dict):
        return ""
    # The plain-text type when there is one, else the first type that has a body.
    candidates = [types.get("twilio/text"), *types.values()]
    bodies = (_str(c.get("body")) for c in candidates if isinstance(c, dict))
    return next((body for body in bodies if body), "")


# Callbacks ---------------------------------------------------------------------------------


def verify_signature(
    url: str, params: Mapping[str, str], signature: str | None, auth_token: str
) -> bool:
    """True when `signature` (X-Twilio-Signature) signs the public `url` and every posted param."""
    if not signature or not auth_token:
        return False
    # The signature of the URL as given, the usual case, costs one HMAC; the validator's
    # variants (the URL with and without its port, a JSON body's hash) two more.
    if "bodySHA256" not in url:
        signed = url + "".join(name + params[name] for name in sorted(params))
        digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
        if hmac.compare_digest(base64.b64encode(digest), signature.strip().encode()):
            return True
    return bool(RequestValidator(auth_token).validate(url, params, signature))


def parse_inbound_message(params: Mapping[str, str]) -> InboundMessage:
    """An SMS or WhatsApp message to one of our numbers, with the pressed button's payload."""
    sender = _required(params, "From")
    to = _required(params, "To").removeprefix(WHATSAPP_PREFIX)
    if len(to) > _MAX_NUMBER:
        raise ValueError(f"To: longer than {_MAX_NUMBER} characters")
    return InboundMessage(
        provider=PROVIDER,
        message_id=_required(params, "MessageSid", _MAX_ID),
        channel="whatsapp" if sender.startswith(WHATSAPP_PREFIX) else "sms",
        from_phone=_e164(sender, "From"),
        to=to,
        text=params.get("Body", ""),
        button=params.get("ButtonPayload") or params.get("ButtonText") or "",
        opt_out_type=_opt_out_type(params),
    )


def _opt_out_type(params: Mapping[str, str]) -> str:
    value = params.get("OptOutType", "").upper()
    return value if value in _OPT_OUT_TYPES else ""


def parse_message_status(params: Mapping[str, str]) -> MessageStatus:
    """A status callback of a message we sent, its status normalised (canceled is failed)."""
    raw = _required(params, "MessageStatus")
    if raw not in _MESSAGE_STATUSES:
        raise ValueError(f"MessageStatus: {raw!r} is not an outbound message status")
    error_code = params.get("ErrorCode", "")
    if len(error_code) > _MAX_CODE:
        raise ValueError(f"ErrorCode: longer than {_MAX_CODE} characters")
    # The codes the flows act on by their names, as the API's refusals carry them (a
    # WhatsApp message outside the 24-hour window usually fails here, after its 201).
    if error_code.isdigit() and int(error_code) in _ERROR_CODES:
        error_code = _ERROR_CODES[int(error_code)]
    return MessageStatus(
        provider=PROVIDER,
        message_id=_required(params, "MessageSid", _MAX_ID),
        status=_MESSAGE_STATUSES[raw],
        error_code=error_code,
        error=params.get("ErrorMessage", ""),
    )


def parse_call_status(params: Mapping[str, str]) -> CallStatus:
    """A call status callback: how the call ended and how long it lasted."""
    status = _required(params, "CallStatus")
    if status not in _CALL_STATUSES:
        raise ValueError(f"CallStatus: {status!r} is not a call status")
    duration = params.get("CallDuration", "") or "0"
    if not (
        duration.isascii()
        and duration.isdigit()
        and len(duration) <= 6
        and int(duration) <= _MAX_CALL_SECONDS
    ):
        raise ValueError(f"CallDuration: {duration[:20]!r} is not a call's length in seconds")
    return CallStatus(
        provider=PROVIDER,
        call_id=_required(params, "CallSid", _MAX_ID),
        status=status,
        duration_seconds=int(duration),
    )


def parse_voice(params: Mapping[str, str]) -> str:
    """The CallSid of an answered call asking for its TwiML."""
    call_sid = _required(params, "CallSid", _MAX_ID)
    if not (call_sid.isascii() and call_sid.isprintable()):
        raise ValueError("CallSid: not a Twilio call sid")
    return call_sid


def parse_gather(params: Mapping[str, str]) -> KeypadInput:
    """The key the customer pressed in the IVR ("" when the Gather timed out)."""
    digits = params.get("Digits", "")
    if not _KEYPAD.fullmatch(digits):
        raise ValueError(f"Digits: not keypad input: {digits[:20]!r}")
    return KeypadInput(
        provider=PROVIDER, call_id=_required(params, "CallSid", _MAX_ID), digits=digits
    )


def _required(params: Mapping[str, str], name: str, limit: int = 0) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise ValueError(f"{name}: missing")
    if limit and len(value) > limit:
        raise ValueError(f"{name}: longer than {limit} characters")
    return value


def _e164(raw: str, field: str) -> str:
    try:
        number = phonenumbers.parse(raw.removeprefix(WHATSAPP_PREFIX), None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{field}: {raw!r} is not an E.164 phone number") from exc
    # Possible, not valid: a number range newer than the phonenumbers metadata is still a reply.
    if not phonenumbers.is_possible_number(number):
        raise ValueError(f"{field}: {raw!r} is not an E.164 phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# TwiML -------------------------------------------------------------------------------------


def ivr_prompt(text: str, *, language: str, action_url: str, timeout_seconds: int = 5) -> str:
    """TwiML that speaks `text` and posts one pressed key, or none, to `action_url`."""
    say_language, voice = _SPEECH.get(language, _SPEECH["en"])
    gather = Gather(
        input="dtmf",
        num_digits=1,
        timeout=timeout_seconds,
        action=action_url,
        method="POST",
        # Post to the action even when nothing was pressed, instead of going on to the next verb.
        action_on_empty_result=True,
    )
    gather.say(text, voice=voice, language=say_language)
    return str(VoiceResponse().append(gather))


def ivr_goodbye(text: str, *, language: str) -> str:
    """TwiML that speaks `text` (if any) and hangs up."""
    say_language, voice = _SPEECH.get(language, _SPEECH["en"])
    response = VoiceResponse()
    if text:
        response.say(text, voice=voice, language=say_language)
    response.hangup()
    return str(response)


# Values ------------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def _json_object(text: str) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
