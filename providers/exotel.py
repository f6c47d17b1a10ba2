"""Exotel (India voice and SMS): calls connected to the merchant's call flow, SMS with DLT ids,
the number-metadata DND lookup, the live check of an account against its ExoPhones, and the
parsers of the callbacks Exotel sends to
/webhooks/exotel/{token}/{passthru,call-status,sms-status,sms}.

An SMS to the shop's number (an ExoPhone or short code enabled for incoming SMS) comes in one
of two shapes: the JSON POST of Exotel's incoming-SMS callback (SmsSid, Direction, Sender,
ReceivedOn, MessageBody, ReceivedTime), or the query of an SMS app's "Send a Reply" applet
given our URL (SmsSid, From, To, Date, Body).

Exotel signs no callback: the secret token in the callback path is the web route's check.
Exotel writes Indian numbers in the national form with a leading 0 (09812345678); the parsers
return E.164.

How Exotel refuses a call to a DND number that is not whitelisted is not documented: any 4xx
answer but 401 and 429 whose message or code names DND, NDNC, NCPR or "do not disturb" is taken
for that refusal (code DND), so the flow falls back at once instead of retrying.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import phonenumbers

from providers.base import (
    DND,
    INVALID_NUMBER,
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
)
from providers.events import CallStatus, InboundMessage, KeypadInput, MessageStatus, MissedCall
from providers.http import Answer, exchange

PROVIDER = "exotel"
API_HOST = "api.exotel.com"  # Singapore cluster; Mumbai is api.in.exotel.com
FLOW_URL = "http://my.exotel.com/{sid}/exoml/start_voice/{flow_id}"
REGION = "IN"
NO_FLOW = "NO_FLOW"

_DND = re.compile(r"(?<![a-z])(dnd|ndnc|ncpr)(?![a-z])|do[\s_-]*not[\s_-]*disturb", re.I)
_INVALID_NUMBER = re.compile(
    r"invalid\s+(recipient|(phone\s+|mobile\s+)?number)|not\s+a\s+valid\s+(phone\s+)?number",
    re.I,
)
# DetailedStatusCodes (Exotel's SMS status glossary). 23005 and 23010 appear only in the newer
# docs, whose numbering partly conflicts with the glossary.
_DND_CODES = frozenset({"23005"})
_INVALID_NUMBER_CODES = frozenset({"23010"})
_TEMPLATE_CODES = frozenset({"23082", "23181", "23182", "23183", "23184", "23185", "23186"})
_DELIVERED_TO_HANDSET = ("DELIVERED_TO_HANDSET", "20005")
_SMS_STATUS = {
    "queued": "queued",
    "sending": "queued",
    "submitted": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "failed": "failed",
    "expired": "undelivered",
    "undelivered": "undelivered",
}
_SMS_REFUSED = frozenset({"failed", "failed_dnd"})
_CALL_STATUS = {
    "ringing": "ringing",
    "in-progress": "in-progress",
    "completed": "completed",
    "busy": "busy",
    "no-answer": "no-answer",
    "failed": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
}
_INCOMING = frozenset({"incoming", "inbound"})
_ACCOUNT_SID = re.compile(r"account[\s_-]*sid", re.I)
_KEYPAD = re.compile(r"[0-9*#]{0,16}")
# Inbound values are stored in columns this wide (ids; error codes); longer is not Exotel's.
_MAX_ID, _MAX_CODE, _MAX_NUMBER = 128, 64, 20
_MAX_CALL_SECONDS = 86_400
_DURATION_FIELDS = ("ConversationDuration", "Duration", "DialCallDuration")
_XML_FIELD = "<{0}>(.*?)</{0}>"


class ExotelClient:
    """Places flow calls, sends DLT SMS and looks up DND numbers through one Exotel account."""

    name = PROVIDER

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        account_sid: str,
        api_key: str,
        api_token: str,
        subdomain: str = API_HOST,
        api_url: str = "",
        timeout_seconds: float = 15.0,
    ) -> None:
        self._http = http
        self._sid = account_sid
        self._account_path = quote(account_sid, safe="")
        self._headers = {
            "Authorization": aiohttp.encode_basic_auth(api_key, api_token),
            "Accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.base_url = (api_url or f"https://{subdomain}").rstrip("/")

    def flow_url(self, flow_id: str) -> str:
        """The `Url` that connects an answered call to the merchant's call flow (app)."""
        return FLOW_URL.format(sid=self._sid, flow_id=flow_id)

    async def send_sms(self, request: SmsRequest) -> SendReceipt:
        """Hand one transactional SMS to Exotel; raises ProviderError."""
        form = {
            "From": request.sender,
            "To": request.to,
            "Body": request.body,
            "EncodingType": "unicode" if request.unicode else "plain",
            "SmsType": "transactional",
        }
        optional = {
            "DltEntityId": request.dlt_entity_id,
            "DltTemplateId": request.dlt_template_id,
            "StatusCallback": request.status_callback,
            "CustomField": request.reference,
        }
        form |= {key: value for key, value in optional.items() if value}
        where = "exotel sms"
        message = _resource(
            await self._request("POST", "Sms/send.json", form, where), "SMSMessage"
        )
        status = _text(message.get("Status")).lower()
        if status in _SMS_REFUSED:
            code = _text(message.get("DetailedStatusCode"))
            raise _refusal(where, 200, code, f"{status} {_text(message.get('DetailedStatus'))}")
        return SendReceipt(
            provider_message_id=_sid(message, where), status=_SMS_STATUS.get(status, "queued")
        )

    async def place_call(self, request: CallRequest) -> CallReceipt:
        """Dial the customer, then connect them to the merchant's flow; raises ProviderError."""
        where = "exotel call"
        if not request.flow_id:
            raise ProviderError(f"{where}: no call flow id", retryable=False, code=NO_FLOW)
        form = {
            "From": request.to,
            "CallerId": request.caller_id,
            "Url": self.flow_url(request.flow_id),
            "CallType": "trans",
            "TimeOut": str(request.timeout_seconds),
        }
        if request.status_callback:
            # CustomField comes back in the StatusCallback only with the 'terminal' event.
            form |= {
                "StatusCallback": request.status_callback,
                "StatusCallbackEvents[0]": "terminal",
            }
        if request.reference:
            form["CustomField"] = request.reference
        call = _resource(await self._request("POST", "Calls/connect.json", form, where), "Call")
        status = _text(call.get("Status")).lower()
        return CallReceipt(provider_call_id=_sid(call, where), status=status or "queued")

    async def bridge_call(
        self, first: str, second: str, *, caller_id: str, timeout_seconds: int = 30
    ) -> CallReceipt:
        """Exotel's connect-two-numbers call: `first` (an agent) is dialled, then `second`
        (the customer), both seeing the ExoPhone `caller_id`; raises ProviderError."""
        where = "exotel bridge call"
        form = {
            "From": first,
            "To": second,
            "CallerId": caller_id,
            "CallType": "trans",
            "TimeOut": str(timeout_seconds),
        }
        call = _resource(await self._request("POST", "Calls/connect.json", form, where), "Call")
        status = _text(call.get("Status")).lower()
        return CallReceipt(provider_call_id=_sid(call, where), status=status or "queued")

    async def is_dnd(self, number: str) -> bool:
        """Whether Exotel's number metadata puts an Indian number on the DND (NCPR) registry."""
        where = "exotel numbers"
        parsed = _parse_phone(number)
        if parsed is None:
            raise ProviderError(
                f"{where}: {number!r} is not a phone number", retryable=False, code=INVALID_NUMBER
            )
        if phonenumbers.region_code_for_number(parsed) != REGION:
            return False
        path = f"Numbers/{parsed.national_number}.json"
        metadata = _resource(await self._request("GET", path, None, where), "Numbers")
        dnd = _text(metadata.get("DND")).strip().lower()
        if dnd not in ("yes", "no"):
            raise ProviderError(
                f"{where}: DND is {metadata.get('DND')!r}", retryable=False, code="BAD_RESPONSE"
            )
        return dnd == "yes"

    async def check_account(self, numbers: Sequence[str]) -> AccountCheck:
        """The SMS and voice capabilities of `numbers`, which must all be ExoPhones of the
        account (matched on their national digits, so 0-prefixed, 91 and +91 forms all do);
        raises CheckFailed naming the input Exotel refused. Exotel reports no account name."""
        where = "exotel exophones"
        answer = await self._exchange("GET", "v2_beta", "IncomingPhoneNumbers", None, where)
        if answer.status in (401, 403, 404):
            code, message = _rest_exception(_json_object(answer.text), answer.text)
            field = "api_token"
            # 403: the account is suspended or may not use the API; 404: no such account.
            if answer.status != 401 or _ACCOUNT_SID.search(f"{code} {message}"):
                field = "account_sid"
            raise CheckFailed(field, message or f"HTTP {answer.status}")
        listing = _answer(where, answer.status, answer.retry_after, answer.text)
        items = listing.get("incoming_phone_numbers")
        if not isinstance(items, list):
            raise ProviderError(
                f"{where}: answer has no incoming_phone_numbers",
                retryable=False,
                code="BAD_RESPONSE",
            )
        exophones: dict[tuple[int, int], dict[str, Any]] = {}
        for item in items:
            parsed = _parse_phone(_text(_dict(item).get("phone_number")))
            if parsed is not None:
                exophones[parsed.country_code, parsed.national_number] = item
        held = []
        for index, raw in enumerate(numbers):
            field = f"numbers.{index}"
            parsed = _parse_phone(raw)
            if parsed is None:
                raise CheckFailed(field, f"{raw} is not a phone number")
            exophone = exophones.get((parsed.country_code, parsed.national_number))
            if exophone is None:
                raise CheckFailed(field, f"{raw} is not an ExoPhone of this Exotel account")
            capabilities = _dict(exophone.get("capabilities"))
            held.append(
                NumberCapabilities(
                    number=_text(exophone.get("phone_number")),
                    sms=capabilities.get("sms") is True,
                    voice=capabilities.get("voice") is True,
                )
            )
        return AccountCheck(name="", numbers=tuple(held))

    async def _request(
        self, method: str, path: str, form: dict[str, str] | None, where: str
    ) -> dict[str, Any]:
        answer = await self._exchange(method, "v1", path, form, where)
        return _answer(where, answer.status, answer.retry_after, answer.text)

    async def _exchange(
        self, method: str, version: str, path: str, form: dict[str, str] | None, where: str
    ) -> Answer:
        url = f"{self.base_url}/{version}/Accounts/{self._account_path}/{path}"
        return await exchange(
            self._http,
            method,
            url,
            where,
            client_timeout=self._timeout,
            data=form,
            headers=self._headers,
        )


def parse_passthru(query: Mapping[str, Any]) -> KeypadInput | MissedCall:
    """The event of a Passthru applet's GET: a call to our missed-call ExoPhone, or IVR input."""
    call_id = _id(query, "CallSid")
    if _required(query, "Direction").lower() in _INCOMING:
        return MissedCall(
            provider=PROVIDER,
            call_id=call_id,
            from_phone=_phone(query, "CallFrom"),
            to=_phone(query, "CallTo"),
        )
    # Exotel wraps the Gather applet's digits in double quotes: digits=%221%22.
    digits = _param(query, "digits").strip().strip('"')
    if not _KEYPAD.fullmatch(digits):
        raise ValueError(f"digits: not keypad input: {digits[:20]!r}")
    return KeypadInput(
        provider=PROVIDER,
        call_id=call_id,
        digits=digits,
        reference=_param(query, "CustomField"),
    )


def parse_call_status(params: Mapping[str, Any]) -> CallStatus:
    """The event of a call StatusCallback, posted as a form or as JSON."""
    raw = _required(params, "Status").lower()
    status = _CALL_STATUS.get(raw)
    if status is None:
        raise ValueError(f"Status: unknown call status {raw!r}")
    return CallStatus(
        provider=PROVIDER,
        call_id=_id(params, "CallSid"),
        status=status,
        duration_seconds=_duration(params),
        reference=_param(params, "CustomField"),
    )


def parse_sms_status(params: Mapping[str, Any]) -> MessageStatus:
    """The event of an SMS StatusCallback; a DND refusal is a failure with error_code DND."""
    message_id = _id(params, "SmsSid")
    raw = _required(params, "Status").lower()
    detailed = _param(params, "DetailedStatus")
    code = _param(params, "DetailedStatusCode")
    if len(code) > _MAX_CODE:
        raise ValueError(f"DetailedStatusCode: longer than {_MAX_CODE} characters")
    if raw == "failed_dnd" or (raw == "failed" and (code in _DND_CODES or _DND.search(detailed))):
        return MessageStatus(PROVIDER, message_id, "failed", error_code=DND, error=detailed or raw)
    status = _SMS_STATUS.get(raw)
    if status is None:
        raise ValueError(f"Status: unknown SMS status {raw!r}")
    if status == "sent" and (detailed in _DELIVERED_TO_HANDSET or code in _DELIVERED_TO_HANDSET):
        status = "delivered"
    if status in ("failed", "undelivered"):
        return MessageStatus(PROVIDER, message_id, status, error_code=code, error=detailed)
    return MessageStatus(PROVIDER, message_id, status)


def parse_inbound_sms(params: Mapping[str, Any]) -> InboundMessage:
    """An SMS a customer sent to the shop's number, in either of Exotel's shapes."""
    message_id = _id(params, "SmsSid")
    direction = _param(params, "Direction").lower()
    if direction and direction not in _INCOMING:
        raise ValueError(f"Direction: {direction[:20]!r} is not an incoming SMS")
    # The incoming-SMS callback's names, else the SMS app's.
    sender, number, body = (
        ("Sender", "ReceivedOn", "MessageBody") if "Sender" in params else ("From", "To", "Body")
    )
    raw_to = _required(params, number)
    parsed = _parse_phone(raw_to)
    # A short code (56070) is no phone number: it is kept as Exotel gave it.
    to = (
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if parsed
        else raw_to
    )
    if len(to) > _MAX_NUMBER:
        raise ValueError(f"{number}: longer than {_MAX_NUMBER} characters")
    return InboundMessage(
        provider=PROVIDER,
        message_id=message_id,
        channel="sms",
        from_phone=_phone(params, sender),
        to=to,
        text=_param(params, body),
    )


def _answer(where: str, status: int, retry_after: str | None, text: str) -> dict[str, Any]:
    if status == 429:
        raise ProviderError(
            f"{where}: throttled (HTTP 429)",
            retryable=True,
            code="THROTTLED",
            retry_after=_retry_after(retry_after),
        )
    if status >= 500:
        raise ProviderError(
            f"{where}: HTTP {status}",
            retryable=True,
            code=f"HTTP_{status}",
            retry_after=_retry_after(retry_after),
        )
    body = _json_object(text)
    if 200 <= status < 300:
        if body is None:
            raise ProviderError(
                f"{where}: answer is not a JSON object: {text[:200]!r}",
                retryable=False,
                code="BAD_RESPONSE",
            )
        return body
    code, message = _rest_exception(body, text)
    raise _refusal(where, status, code, message)


def _refusal(where: str, status: int, code: str, message: str) -> ProviderError:
    """The permanent ProviderError of a refused request, by Exotel's code and message."""
    detail = " ".join(part for part in (code, message) if part)
    description = f"{where}: HTTP {status}: {detail or 'no detail'}"
    if status != 401 and (code in _DND_CODES or _DND.search(detail)):
        kind = DND
    elif status in (401, 403):
        # 403: valid credentials, but the account may not do this (inactive, no balance).
        kind = UNAUTHORIZED
    elif code in _TEMPLATE_CODES:
        kind = TEMPLATE_NOT_APPROVED
    elif code in _INVALID_NUMBER_CODES or _INVALID_NUMBER.search(message):
        kind = INVALID_NUMBER
    elif code.isdigit():
        kind = f"EXOTEL_{code}"
    else:
        kind = f"HTTP_{status}"
    return ProviderError(description, retryable=False, code=kind)


def _rest_exception(body: dict[str, Any] | None, text: str) -> tuple[str, str]:
    """The (Code, Message) of a RestException in JSON, in XML, or the start of the raw text."""
    if body is not None:
        wrapper = _dict(body.get("TwilioResponse"))
        found = _dict(body.get("RestException") or wrapper.get("RestException"))
        fields = {str(key).lower(): value for key, value in found.items()}
        if fields:
            return _text(fields.get("code")).strip(), _text(fields.get("message")).strip()
    xml = [re.search(_XML_FIELD.format(tag), text, re.S) for tag in ("Code", "Message")]
    if any(xml):
        code, message = (match.group(1).strip() if match else "" for match in xml)
        return code, message
    return "", text[:200].strip()


def _resource(body: dict[str, Any], name: str) -> dict[str, Any]:
    resource = body.get(name, _dict(body.get("TwilioResponse")).get(name))
    if not isinstance(resource, dict):
        raise ProviderError(f"exotel: answer has no {name}", retryable=False, code="BAD_RESPONSE")
    return resource


def _sid(resource: dict[str, Any], where: str) -> str:
    sid = _text(resource.get("Sid")).strip()
    if not sid:
        raise ProviderError(f"{where}: answer has no Sid", retryable=False, code="BAD_RESPONSE")
    return sid


def _retry_after(header: str | None) -> float | None:
    """Seconds to wait from a Retry-After of seconds or of an HTTP date."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            moment = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = (moment - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _param(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{key}: must be text, not {type(value).__name__}")
    return str(value)


def _required(params: Mapping[str, Any], key: str) -> str:
    value = _param(params, key).strip()
    if not value:
        raise ValueError(f"{key}: missing")
    return value


def _id(params: Mapping[str, Any], key: str) -> str:
    value = _required(params, key)
    if len(value) > _MAX_ID:
        raise ValueError(f"{key}: longer than {_MAX_ID} characters")
    return value


def _phone(params: Mapping[str, Any], key: str) -> str:
    raw = _required(params, key)
    number = _parse_phone(raw)
    if number is None:
        raise ValueError(f"{key}: not a phone number: {raw!r}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse_phone(raw: str) -> phonenumbers.PhoneNumber | None:
    """A valid number from E.164 or Indian national form (0-prefixed, or 91 without the +)."""
    try:
        number = phonenumbers.parse(raw.strip(), REGION)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _duration(params: Mapping[str, Any]) -> int:
    # A flow call has no second leg, so ConversationDuration can be 0 while Duration counts the
    # time in the flow: the largest duration given is the call's.
    durations = [0]
    for key in _DURATION_FIELDS:
        value = params.get(key)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None or value == "":
            continue
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value) if len(value.strip()) <= 6 else _MAX_CALL_SECONDS + 1
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key}: not a number of seconds: {str(value)[:20]!r}")
        if value > _MAX_CALL_SECONDS:
            raise ValueError(f"{key}: longer than a day: {value}")
        durations.append(value)
    return max(durations)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
