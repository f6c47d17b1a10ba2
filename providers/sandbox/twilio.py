"""A fake Twilio on 127.0.0.1: the Messages, Calls and Content APIs, the account and its
IncomingPhoneNumbers (for the live check of an account), and signed callbacks.

Answers in Twilio's wire shapes (wire-formats.md section 2): 201 JSON resources, error bodies
`{"code", "message", "more_info", "status"}`, 401 with code 20003 to any request whose Basic
auth is not the configured account sid and token; records the form fields of each create request.
Serves the tests and the sandbox (where it is the demo shop's Twilio, on the sandbox's clock).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from clock import Clock
from providers.sandbox.server import FakeServer

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token"
API_VERSION = "2010-04-01"
WHATSAPP_PREFIX = "whatsapp:"
_VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_CALLBACK_HEADERS = {"User-Agent": "TwilioProxy/1.1"}


@dataclass
class _Content:
    sid: str
    text: str
    status: str
    name: str
    language: str


@dataclass
class _Number:
    sid: str
    phone_number: str
    friendly_name: str
    sms: bool
    voice: bool
    mms: bool


@dataclass
class _Failure:
    status: int
    code: int
    retry_after: int | None


class _Refused(Exception):
    def __init__(
        self, status: int, code: int, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


class FakeTwilio(FakeServer):
    """Twilio's REST API for one account, in memory on loopback, and its callback sender."""

    party = "twilio"

    def __init__(
        self,
        *,
        account_sid: str = ACCOUNT_SID,
        auth_token: str = AUTH_TOKEN,
        friendly_name: str = "My first Twilio account",
        clock: Clock | None = None,
    ) -> None:
        if clock is not None:
            self.clock = clock
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.friendly_name = friendly_name
        self.status = "active"  # or "suspended", "closed"
        # Form fields of every authenticated create request, answered 201 or refused.
        self.messages: list[dict[str, str | list[str]]] = []
        self.calls: list[dict[str, str | list[str]]] = []
        self._parties: dict[str, tuple[str, str]] = {}  # sid -> (From, To)
        self._placed: dict[str, dict[str, str | list[str]]] = {}
        self._accepted: dict[str, dict[str, str | list[str]]] = {}
        self._contents: dict[str, _Content] = {}
        self._opted_out: set[str] = set()
        self._invalid: set[str] = set()
        self._failures: list[_Failure] = []
        self._numbers: dict[str, _Number] = {}

    def routes(self, app: web.Application) -> None:
        """The provider API this fake answers."""
        accounts = f"/{API_VERSION}/Accounts/{{sid}}"
        app.router.add_get(f"{accounts}.json", self._fetch_account)
        app.router.add_get(f"{accounts}/IncomingPhoneNumbers.json", self._list_numbers)
        app.router.add_post(f"{accounts}/Messages.json", self._create_message)
        app.router.add_post(f"{accounts}/Calls.json", self._create_call)
        app.router.add_get("/v1/Content/{sid}", self._fetch_content)
        app.router.add_get("/v1/Content/{sid}/ApprovalRequests", self._fetch_approval)

    async def summary(self, request: web.Request) -> str:
        """Whom a call or message is for (and the message's text), or what was read."""
        if request.method == "POST":
            form = await request.post()
            if request.path.endswith("/Calls.json"):
                return f"call {form.get('To', '?')} from {form.get('From', '?')}"
            body = form.get("Body") or f"template {form.get('ContentSid', '?')}"
            return f"message to {form.get('To', '?')} from {form.get('From', '?')}: {body}"
        if request.path.endswith("/IncomingPhoneNumbers.json"):
            return f"number lookup {request.query.get('PhoneNumber', '(all)')}"
        if request.path.startswith("/v1/Content/"):
            return f"content template {request.match_info.get('sid', '?')}"
        return "account check"

    @property
    def placed_calls(self) -> dict[str, dict[str, str | list[str]]]:
        """The calls Twilio accepted, by CallSid: the create form of each (live, in order)."""
        return self._placed

    @property
    def accepted_messages(self) -> dict[str, dict[str, str | list[str]]]:
        """The messages Twilio accepted, by MessageSid: the create form of each (in order)."""
        return self._accepted

    # State -------------------------------------------------------------------------------

    def add_content(
        self,
        sid: str,
        text: str,
        status: str = "approved",
        *,
        name: str = "",
        language: str = "en",
    ) -> None:
        """Store a Content template (`{{1}}` variables) with its WhatsApp approval status."""
        self._contents[sid] = _Content(sid, text, status, name or f"template_{sid[-6:]}", language)

    def add_number(
        self,
        number: str,
        *,
        sms: bool = True,
        voice: bool = True,
        mms: bool = False,
        friendly_name: str = "",
    ) -> None:
        """Give the account an IncomingPhoneNumber (E.164) with these capabilities."""
        self._numbers[number] = _Number(
            _sid("PN"), number, friendly_name or number, sms=sms, voice=voice, mms=mms
        )

    def opt_out(self, number: str) -> None:
        """The number replied STOP: messages to it are refused with 21610."""
        self._opted_out.add(number)

    def invalid(self, number: str) -> None:
        """Messages and calls to the number are refused with 21211 (invalid 'To')."""
        self._invalid.add(number)

    def fail_next(
        self, count: int, status: int = 503, retry_after: int | None = None, code: int = 0
    ) -> None:
        """Refuse the next `count` API requests with `status` and Twilio error `code`."""
        code = code or (20429 if status == 429 else 20500 if status >= 500 else 20001)
        self._failures.extend(_Failure(status, code, retry_after) for _ in range(count))

    # Callbacks -----------------------------------------------------------------------------

    async def send_inbound(
        self,
        url: str,
        *,
        from_: str,
        to: str,
        body: str,
        whatsapp: bool = False,
        button_payload: str | None = None,
        auth_token: str | None = None,
        opt_out_type: str | None = None,
    ) -> tuple[int, str]:
        """POST an inbound SMS or WhatsApp message (a button press with `button_payload`; a
        keyword Advanced Opt-Out answered itself with `opt_out_type`)."""
        sid = _sid("SM")
        prefix = WHATSAPP_PREFIX if whatsapp else ""
        params = {
            "ToCountry": "IN",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": prefix + to,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": prefix + from_,
            "ApiVersion": API_VERSION,
        }
        if whatsapp:
            params |= {"ProfileName": "Customer", "WaId": from_.lstrip("+")}
        if button_payload is not None:
            params |= {"ButtonText": body, "ButtonPayload": button_payload}
        if opt_out_type is not None:
            params["OptOutType"] = opt_out_type
        return await self._post_signed(url, params, auth_token)

    async def send_status(
        self,
        url: str,
        message_sid: str,
        status: str,
        error_code: str | None = None,
        *,
        auth_token: str | None = None,
    ) -> tuple[int, str]:
        """POST a message status callback (MessageStatus, and ErrorCode on failure)."""
        params = {
            "MessageSid": message_sid,
            "SmsSid": message_sid,
            "AccountSid": self.account_sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": API_VERSION,
            **self._from_to(message_sid),
        }
        if error_code is not None:
            params["ErrorCode"] = error_code
        return await self._post_signed(url, params, auth_token)

    async def send_call_status(
        self,
        url: str,
        call_sid: str,
        status: str,
        duration: int,
        *,
        auth_token: str | None = None,
    ) -> tuple[int, str]:
        """POST the call's final status callback with its duration in seconds."""
        params = self._voice_params(call_sid, status) | {
            "CallDuration": str(duration),
            "Timestamp": format_datetime(self.clock.now()),
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
        }
        return await self._post_signed(url, params, auth_token)

    async def send_gather(
        self, url: str, call_sid: str, digits: str, *, auth_token: str | None = None
    ) -> tuple[int, str]:
        """POST a Gather's action request; no `Digits` when nothing was pressed."""
        params = self._voice_params(call_sid, "in-progress")
        if digits:
            params["Digits"] = digits
        return await self._post_signed(url, params, auth_token)

    async def post_voice(
        self, url: str, call_sid: str, *, auth_token: str | None = None
    ) -> tuple[int, str]:
        """POST the answered call's request for TwiML to the call's `Url`."""
        return await self._post_signed(
            url, self._voice_params(call_sid, "in-progress"), auth_token
        )

    def _voice_params(self, call_sid: str, status: str) -> dict[str, str]:
        return {
            "CallSid": call_sid,
            "AccountSid": self.account_sid,
            "CallStatus": status,
            "Direction": "outbound-api",
            "ApiVersion": API_VERSION,
            **self._from_to(call_sid),
        }

    def _from_to(self, sid: str) -> dict[str, str]:
        if sid not in self._parties:
            return {}
        sender, recipient = self._parties[sid]
        return {"From": sender, "To": recipient}

    async def _post_signed(
        self, url: str, params: dict[str, str], auth_token: str | None
    ) -> tuple[int, str]:
        if self._http is None:
            raise RuntimeError("FakeTwilio.start() has not been called")
        token = self.auth_token if auth_token is None else auth_token
        signature = RequestValidator(token).compute_signature(url, params)
        headers = {**_CALLBACK_HEADERS, "X-Twilio-Signature": signature}
        async with self._http.post(url, data=params, headers=headers) as response:
            return response.status, await response.text()

    # REST API ------------------------------------------------------------------------------

    async def _create_message(self, request: web.Request) -> web.Response:
        try:
            form, fields = await self._authorized_form(request, self.messages)
            to, sender = _field(form, "To", 21604), _field(form, "From", 21603)
            content = self._content_for(form)
            body = form.get("Body", "")
            if content is not None:
                body = _render(content.text, form.get("ContentVariables", ""))
            elif not body:
                raise _Refused(400, 21602, "Message body is required.")
            number = to.removeprefix(WHATSAPP_PREFIX)
            if number in self._invalid:
                raise _Refused(400, 21211, f"Invalid 'To' Phone Number: {number}")
            if number in self._opted_out:
                raise _Refused(400, 21610, "Attempt to send to unsubscribed recipient")
        except _Refused as refused:
            return self._error(refused)
        sid = _sid("SM")
        self._parties[sid] = (sender, to)
        self._accepted[sid] = fields
        now = format_datetime(self.clock.now())
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        return web.json_response(resource, status=201)

    async def _create_call(self, request: web.Request) -> web.Response:
        try:
            form, fields = await self._authorized_form(request, self.calls)
            to, sender = _field(form, "To", 21201), _field(form, "From", 21213)
            if not form.get("Twiml"):  # Twilio takes the call's TwiML inline, or its URL
                _field(form, "Url", 21205)
            if to in self._invalid:
                raise _Refused(400, 21211, f"Invalid 'To' Phone Number: {to}")
        except _Refused as refused:
            return self._error(refused)
        sid = _sid("CA")
        self._parties[sid] = (sender, to)
        self._placed[sid] = fields
        now = format_datetime(self.clock.now())
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": sender,
            "from_formatted": sender,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {"notifications": f"{uri}/Notifications.json"},
            "to": to,
            "to_formatted": to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }
        return web.json_response(resource, status=201)

    async def _fetch_account(self, request: web.Request) -> web.Response:
        try:
            self._authorized_read(request)
        except _Refused as refused:
            return self._error(refused)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}"
        now = format_datetime(self.clock.now())
        resource = {
            "auth_token": self.auth_token,
            "date_created": now,
            "date_updated": now,
            "friendly_name": self.friendly_name,
            "owner_account_sid": self.account_sid,
            "sid": self.account_sid,
            "status": self.status,
            "subresource_uris": {
                name: f"{uri}/{name}.json"
                for name in ("Calls", "IncomingPhoneNumbers", "Messages", "Balance")
            },
            "type": "Full",
            "uri": f"{uri}.json",
        }
        return web.json_response(resource)

    async def _list_numbers(self, request: web.Request) -> web.Response:
        try:
            self._authorized_read(request)
        except _Refused as refused:
            return self._error(refused)
        # PhoneNumber is a pattern of digits: a partial number matches, "*" is any digit.
        wanted = request.query.get("PhoneNumber", "")
        digits = re.sub(r"[^0-9*]", "", wanted)
        pattern = re.compile(re.escape(digits).replace(r"\*", r"[0-9]"))
        numbers = [
            number
            for number in self._numbers.values()
            if pattern.search(re.sub(r"[^0-9]", "", number.phone_number))
        ]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"
        query = f"?PhoneNumber={quote(wanted)}&PageSize=50" if wanted else "?PageSize=50"
        page = {
            "end": max(0, len(numbers) - 1),
            "first_page_uri": f"{uri}{query}&Page=0",
            "incoming_phone_numbers": [self._number_resource(number) for number in numbers],
            "next_page_uri": None,
            "page": 0,
            "page_size": 50,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{uri}{query}&Page=0",
        }
        return web.json_response(page)

    def _number_resource(self, number: _Number) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{number.sid}"
        now = format_datetime(self.clock.now())
        return {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {
                "fax": False,
                "mms": number.mms,
                "sms": number.sms,
                "voice": number.voice,
            },
            "date_created": now,
            "date_updated": now,
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": number.friendly_name,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": number.phone_number,
            "sid": number.sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status": "in-use",
            "status_callback": "",
            "status_callback_method": "POST",
            "subresource_uris": {"assigned_add_ons": f"{uri}/AssignedAddOns.json"},
            "trunk_sid": None,
            "uri": f"{uri}.json",
            "voice_application_sid": None,
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": None,
            "voice_method": "POST",
            "voice_receive_mode": "voice",
            "voice_url": None,
        }

    async def _fetch_content(self, request: web.Request) -> web.Response:
        try:
            content = self._known_content(request)
        except _Refused as refused:
            return self._error(refused)
        url = f"https://content.twilio.com/v1/Content/{content.sid}"
        now = format_datetime(self.clock.now())
        resource = {
            "sid": content.sid,
            "account_sid": self.account_sid,
            "friendly_name": content.name,
            "language": content.language,
            "variables": {},
            "types": {"twilio/text": {"body": content.text}},
            "url": url,
            "date_created": now,
            "date_updated": now,
            "links": {
                "approval_fetch": f"{url}/ApprovalRequests",
                "approval_create": f"{url}/ApprovalRequests/whatsapp",
            },
        }
        return web.json_response(resource)

    async def _fetch_approval(self, request: web.Request) -> web.Response:
        try:
            content = self._known_content(request)
        except _Refused as refused:
            return self._error(refused)
        resource = {
            "sid": content.sid,
            "account_sid": self.account_sid,
            "url": f"https://content.twilio.com/v1/Content/{content.sid}/ApprovalRequests",
            "whatsapp": {
                "type": "whatsapp",
                "name": content.name,
                "category": "UTILITY",
                "content_type": "twilio/text",
                "status": content.status,
                "rejection_reason": "",
                "allow_category_change": True,
            },
        }
        return web.json_response(resource)

    def _known_content(self, request: web.Request) -> _Content:
        self._authorize(request)
        content = self._contents.get(request.match_info["sid"])
        if content is None:
            raise _Refused(404, 20404, f"The requested resource {request.path} was not found")
        return content

    def _content_for(self, form: MultiDict[str]) -> _Content | None:
        sid = form.get("ContentSid")
        if sid is None:
            return None
        if sid not in self._contents:
            raise _Refused(400, 21655, "The ContentSid is Invalid")
        return self._contents[sid]

    async def _authorized_form(
        self, request: web.Request, log: list[dict[str, str | list[str]]]
    ) -> tuple[MultiDict[str], dict[str, str | list[str]]]:
        """The posted form, and its fields as recorded in `log`."""
        self._authorize(request)
        if request.match_info["sid"] != self.account_sid:
            raise _Refused(404, 20404, f"The requested resource {request.path} was not found")
        form = MultiDict((key, str(value)) for key, value in (await request.post()).items())
        fields = _fields(form)
        log.append(fields)
        if self._failures:
            failure = self._failures.pop(0)
            raise _Refused(failure.status, failure.code, "Injected failure", failure.retry_after)
        return form, fields

    def _authorized_read(self, request: web.Request) -> None:
        self._authorize(request)
        if request.match_info["sid"] != self.account_sid:
            raise _Refused(404, 20404, f"The requested resource {request.path} was not found")
        if self._failures:
            failure = self._failures.pop(0)
            raise _Refused(failure.status, failure.code, "Injected failure", failure.retry_after)

    def _authorize(self, request: web.Request) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            login, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            login = password = ""
        if scheme != "Basic" or (login, password) != (self.account_sid, self.auth_token):
            raise _Refused(401, 20003, "Authenticate")

    def _error(self, refused: _Refused) -> web.Response:
        body = {
            "code": refused.code,
            "message": refused.message,
            "more_info": f"https://www.twilio.com/docs/errors/{refused.code}",
            "status": refused.status,
        }
        headers = {}
        if refused.retry_after is not None:
            headers["Retry-After"] = str(refused.retry_after)
        return web.json_response(body, status=refused.status, headers=headers)


def _fields(form: MultiDict[str]) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {}
    for key in dict.fromkeys(form):
        values = form.getall(key)
        fields[key] = values[0] if len(values) == 1 else values
    return fields


def _field(form: MultiDict[str], name: str, code: int) -> str:
    value = form.get(name, "")
    if not value:
        raise _Refused(400, code, f"A '{name}' parameter is required.")
    return value


def _render(text: str, variables: str) -> str:
    values: dict[str, Any] = json.loads(variables) if variables else {}
    return _VARIABLE.sub(lambda match: str(values.get(match.group(1), match.group(0))), text)


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)
