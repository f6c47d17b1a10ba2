"""A fake Exotel on 127.0.0.1: connect-to-flow calls, SMS sends and number metadata (v1 JSON
endpoints), the account's ExoPhones (v2_beta), state in memory, and senders of the callbacks
Exotel makes.

Answers in Exotel's shapes (`{"Call": {...}}`, `{"SMSMessage": {...}}`, `{"RestException":
{...}}`) with 32-hex Sids, and records the form of every authenticated send. Callbacks go out as
Exotel sends them: Passthru as a GET with 0-prefixed national numbers and quoted digits, the call
StatusCallback as multipart/form-data (or JSON), the SMS StatusCallback as a urlencoded form,
a customer's SMS to an ExoPhone as the incoming-SMS JSON callback (or an SMS app's GET).
Serves the tests and the sandbox (where it is the demo shop's Exotel, on the sandbox's clock).
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import phonenumbers
from aiohttp import web

from clock import Clock
from providers.sandbox.server import FakeServer
from providers.sms import measure

IST = timezone(timedelta(hours=5, minutes=30))
# Exotel sends this constant instead of the end time of a call that is still going on.
PASSTHRU_END_TIME = "1970-01-01 05:30:00"
AUTH_FAILED = "Authentication failed. Invalid API Key or Token."
SID_MISMATCH = "Account SID is invalid or does not match credentials."
# The shape of Exotel's refusal of a DND number that is not whitelisted is undocumented; this is
# the assumption providers/exotel.py detects (a 403 whose message names DND/NCPR).
DND_REFUSAL = (
    "Call to {number} not allowed: the number is on the DND (NCPR) registry and not whitelisted"
)
DLT_STATUSES = {
    23080: "SENDER_BLOCKED_BY_DLT",
    23081: "ENTITY_BLOCKED_BY_DLT",
    23082: "TEMPLATE_BLOCKED_BY_DLT",
    23083: "FAILED_DLT_SCRUBBING_ERROR",
    23084: "FAILED_DLT_CONSENT_ERROR",
    23181: "DLT_TEMPLATE_ID_INVALID",
    23182: "DLT_TEMPLATE_NOT_FOUND",
    23183: "DLT_TEMPLATE_ID_INACTIVE",
    23184: "DLT_TEMPLATE_ID_BLACKLISTED",
    23185: "DLT_TEMPLATE_DOES_NOT_MATCH",
    23186: "DLT_LENGTH_EXCEEDED",
    23281: "DLT_ENTITY_NOT_FOUND",
}
MAX_BODY = 2000
_FLOW_URL = re.compile(
    r"https?://my(\.in)?\.exotel\.(com|in)/(?P<sid>[^/]+)/exoml/start_voice/\w+"
)


@dataclass(frozen=True)
class _ExoPhone:
    sid: str
    number: str  # E.164
    sms: bool
    voice: bool


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: str | None
    message: str
    code: str
    body: str | None


class FakeExotel(FakeServer):
    """Exotel's v1 voice, SMS and number-metadata API and callback sender, on loopback."""

    party = "exotel"

    def __init__(
        self,
        *,
        account_sid: str = "ordertalk1",
        api_key: str = "fake-exotel-key",
        api_token: str = "fake-exotel-token",
        clock: Clock | None = None,
    ) -> None:
        if clock is not None:
            self.clock = clock
        self.account_sid = account_sid
        self.api_key = api_key
        self.api_token = api_token
        self.sms: list[dict[str, str]] = []
        self.calls: list[dict[str, str]] = []
        self.lookups: list[str] = []
        self._sent: dict[str, dict[str, str]] = {}
        self._dialled: dict[str, dict[str, str]] = {}
        self._dnd: set[str] = set()
        self._exophones: dict[str, _ExoPhone] = {}
        self._rejected_templates: dict[str, int] = {}
        self._failures: list[_Failure] = []
        self._stalls = 0
        self._release = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        """The provider API this fake answers."""
        app.router.add_post("/v1/Accounts/{sid}/Sms/send.json", self._send_sms)
        app.router.add_post("/v1/Accounts/{sid}/Calls/connect.json", self._connect)
        app.router.add_get("/v1/Accounts/{sid}/Numbers/{number}.json", self._number)
        app.router.add_get("/v2_beta/Accounts/{sid}/IncomingPhoneNumbers", self._exophone_list)

    async def close(self) -> None:
        """Release stalled requests, then stop."""
        self._release.set()
        await super().close()

    async def summary(self, request: web.Request) -> str:
        """Whom a call or SMS is for (and the SMS text), or which number is looked up."""
        if request.path.endswith("/Calls/connect.json"):
            form = await _form(request)
            return (
                f"call {form.get('From', '?')} from {form.get('CallerId', '?')}, "
                f"flow {form.get('Url', '?').rsplit('/', 1)[-1]}"
            )
        if request.path.endswith("/Sms/send.json"):
            form = await _form(request)
            return f"SMS to {form.get('To', '?')} from {form.get('From', '?')}: {form.get('Body')}"
        if request.path.endswith("/IncomingPhoneNumbers"):
            return "ExoPhone list"
        return f"number lookup {request.match_info.get('number', '?')}"

    @property
    def placed_calls(self) -> dict[str, dict[str, str]]:
        """The calls Exotel accepted, by CallSid: the connect form of each (live, in order)."""
        return self._dialled

    @property
    def accepted_sms(self) -> dict[str, dict[str, str]]:
        """The SMS Exotel accepted, by SmsSid: the send form of each (live, in order)."""
        return self._sent

    def dlt_rejected(self, form: dict[str, str]) -> bool:
        """Whether an accepted SMS fails at once at DLT scrubbing (see `reject_template`)."""
        return form.get("DltTemplateId", "") in self._rejected_templates

    # State -----------------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 503,
        retry_after: float | str | None = None,
        *,
        message: str = "",
        code: str = "",
        body: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` (RestException, HTML page or `body`)."""
        header = None if retry_after is None else str(retry_after)
        self._failures.extend([_Failure(status, header, message, code, body)] * count)

    def stall_next(self, count: int) -> None:
        """Hold the next `count` requests without an answer until close()."""
        self._stalls += count

    def add_exophone(self, number: str, *, sms: bool = True, voice: bool = True) -> None:
        """Give the account an ExoPhone (any form of an Indian number) with these capabilities."""
        e164 = _e164(number)
        self._exophones[e164] = _ExoPhone(secrets.token_hex(16), e164, sms=sms, voice=voice)

    def mark_dnd(self, number: str) -> None:
        """Put a number on the DND registry: calls to it are refused, metadata says DND."""
        self._dnd.add(_e164(number))

    def reject_template(self, template_id: str, *, detailed_code: int = 23182) -> None:
        """Fail every SMS with this DltTemplateId at once with a DLT DetailedStatusCode."""
        self._rejected_templates[template_id] = detailed_code

    # Callbacks -------------------------------------------------------------------------

    async def passthru(
        self,
        url: str,
        *,
        call_sid: str,
        call_from: str,
        call_to: str,
        direction: str,
        digits: str | None = None,
        custom_field: str | None = None,
    ) -> tuple[int, str]:
        """GET the Passthru URL as the applet does; returns the answer's status and body."""
        now = self.clock.now().astimezone(IST)
        params = [
            ("CallSid", call_sid),
            ("CallFrom", national(call_from)),
            ("CallTo", national(call_to)),
            ("Direction", direction),
            ("Created", now.strftime("%a, %d %b %Y %H:%M:%S")),
            ("DialWhomNumber", ""),
        ]
        if direction == "incoming":
            params += [
                ("CallType", "call-attempt"),
                ("DialCallDuration", "0"),
                ("StartTime", _timestamp(now)),
                ("EndTime", PASSTHRU_END_TIME),
            ]
        else:
            params += [("HangupLatencyStartTimeExocc", ""), ("HangupLatencyStartTime", "")]
        params += [("From", national(call_from)), ("To", national(call_to))]
        if custom_field is not None:
            params.append(("CustomField", custom_field))
        params.append(("CurrentTime", _timestamp(now)))
        if digits is not None:
            params.append(("digits", f'"{digits}"'))
        async with self._sender().get(url, params=params) as response:
            return response.status, await response.text()

    async def call_status(
        self,
        url: str,
        *,
        call_sid: str,
        status: str,
        duration: int = 0,
        custom_field: str | None = None,
        as_json: bool = False,
    ) -> tuple[int, str]:
        """POST a call StatusCallback with the 'terminal' event's fields; returns the answer."""
        call = self._dialled.get(call_sid, {})
        now = self.clock.now().astimezone(IST)
        started = now - timedelta(seconds=duration + 5)
        fields: dict[str, Any] = {
            "CallSid": call_sid,
            "EventType": "terminal",
            "Status": status,
            "DateCreated": _timestamp(started),
            "DateUpdated": _timestamp(now),
            "To": None,
            "From": national(call["From"]) if "From" in call else None,
            "PhoneNumberSid": call.get("CallerId"),
            "StartTime": _timestamp(started),
            "EndTime": _timestamp(now),
            "ConversationDuration": duration,
            "Direction": "outbound-api",
            "RecordingUrl": None,
            "CustomField": call.get("CustomField") if custom_field is None else custom_field,
        }
        if as_json:
            leg = {"Number": fields["From"], "Type": "single", "OnCallDuration": duration}
            async with self._sender().post(url, json=fields | {"Legs": [leg]}) as response:
                return response.status, await response.text()
        form = aiohttp.FormData(default_to_multipart=True)
        for key, value in fields.items():
            form.add_field(key, "" if value is None else str(value))
        async with self._sender().post(url, data=form) as response:
            return response.status, await response.text()

    async def sms_status(
        self,
        url: str,
        *,
        sms_sid: str,
        status: str,
        detailed_status: str = "",
        detailed_status_code: str = "",
    ) -> tuple[int, str]:
        """POST an SMS StatusCallback as a urlencoded form; returns the answer."""
        sent = self._sent.get(sms_sid, {})
        form = {
            "SmsSid": sms_sid,
            "To": national(sent["To"]) if "To" in sent else "",
            "Status": status,
            "SmsUnits": str(_units(sent)),
            "DetailedStatus": detailed_status,
            "DetailedStatusCode": detailed_status_code,
            "DateSent": _timestamp(self.clock.now().astimezone(IST)),
            "CustomField": sent.get("CustomField", ""),
        }
        async with self._sender().post(url, data=form) as response:
            return response.status, await response.text()

    async def inbound_sms(
        self, url: str, *, from_phone: str, to: str, body: str, sms_app: bool = False
    ) -> tuple[int, str]:
        """Pass on an SMS a customer sent to `to` as Exotel's incoming-SMS callback (a JSON
        POST), or with `sms_app` as an SMS app's "Send a Reply" applet (a GET, HEAD first);
        returns the answer."""
        sms_sid = secrets.token_hex(16)
        now = self.clock.now()
        if sms_app:
            params = {
                "SmsSid": sms_sid,
                "From": national(from_phone),
                "To": national(to),
                "Date": _timestamp(now.astimezone(IST)),
                "Body": body,
            }
            async with self._sender().head(url) as response:
                if response.status != 200:
                    return response.status, ""
            async with self._sender().get(url, params=params) as response:
                return response.status, await response.text()
        callback = {
            "SmsSid": sms_sid,
            "Direction": "incoming",
            "Sender": _e164(from_phone),
            "ReceivedOn": national(to),
            "MessageBody": body,
            "ReceivedTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        async with self._sender().post(url, json=callback) as response:
            return response.status, await response.text()

    def _sender(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("FakeExotel.start() has not been called")
        return self._http

    # API -------------------------------------------------------------------------------

    async def _send_sms(self, request: web.Request) -> web.Response:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        form = await _form(request)
        self.sms.append(form)
        injected = await self._injected()
        if injected is not None:
            return injected
        missing = [key for key in ("From", "To", "Body") if not form.get(key)]
        if missing or form.get("EncodingType", "plain") not in ("plain", "unicode"):
            return _rest_exception(400, "Invalid Parameters")
        if len(form["Body"]) > MAX_BODY:
            return _rest_exception(400, "Invalid Parameters")
        if _valid(form["To"]) is None:
            return _rest_exception(400, f"Invalid Recipient [{form['To']}]")
        sid = secrets.token_hex(16)
        self._sent[sid] = form
        now = _timestamp(self.clock.now().astimezone(IST))
        status, detailed_code = "queued", 21010
        rejected = self._rejected_templates.get(form.get("DltTemplateId", ""))
        if rejected is not None:
            status, detailed_code = "failed", rejected
        message = {
            "Sid": sid,
            "AccountSid": self.account_sid,
            "From": form["From"],
            "To": national(form["To"]),
            "DateCreated": now,
            "DateUpdated": now,
            "DateSent": None,
            "Body": form["Body"],
            "Direction": "outbound-api",
            "Uri": f"/v1/Accounts/{self.account_sid}/SMS/Messages/{sid}.json",
            "Status": status,
            "Price": None,
            "SmsUnits": _units(form),
            "DetailedStatusCode": detailed_code,
            "DetailedStatus": DLT_STATUSES.get(detailed_code, "PENDING_TO_OPERATOR"),
        }
        return web.json_response({"SMSMessage": message})

    async def _connect(self, request: web.Request) -> web.Response:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        form = await _form(request)
        self.calls.append(form)
        injected = await self._injected()
        if injected is not None:
            return injected
        # Connect a number to a flow (Url), or two numbers: From first, then To.
        second = "To" if form.get("To") and not form.get("Url") else "Url"
        if any(not form.get(key) for key in ("From", "CallerId", second)):
            return _rest_exception(400, "Invalid Parameters")
        flow = _FLOW_URL.fullmatch(form.get("Url", ""))
        if second == "Url" and (flow is None or flow["sid"] != self.account_sid):
            return _rest_exception(400, f"Invalid Url [{form['Url']}]")
        if second == "To" and _valid(form["To"]) is None:
            return _rest_exception(400, f"Invalid number [{form['To']}]")
        if form.get("CallType", "trans") not in ("trans", "promo"):
            return _rest_exception(400, "Invalid Parameters")
        if not form.get("TimeOut", "0").isdigit():
            return _rest_exception(400, "Invalid Parameters")
        customer = _valid(form["From"])
        if customer is None:
            return _rest_exception(400, f"Invalid number [{form['From']}]")
        if customer in self._dnd:
            return _rest_exception(403, DND_REFUSAL.format(number=national(customer)))
        sid = secrets.token_hex(16)
        self._dialled[sid] = form
        now = _timestamp(self.clock.now().astimezone(IST))
        call = {
            "Sid": sid,
            "ParentCallSid": None,
            "DateCreated": now,
            "DateUpdated": now,
            "AccountSid": self.account_sid,
            "To": None,
            "From": national(customer),
            "PhoneNumberSid": form["CallerId"],
            "Status": "in-progress",
            "StartTime": now,
            "EndTime": None,
            "Duration": None,
            "Price": None,
            "Direction": "outbound-api",
            "AnsweredBy": None,
            "ForwardedFrom": None,
            "CallerName": None,
            "Uri": f"/v1/Accounts/{self.account_sid}/Calls/{sid}.json",
            "RecordingUrl": None,
        }
        return web.json_response({"Call": call})

    async def _number(self, request: web.Request) -> web.Response:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        raw = request.match_info["number"]
        self.lookups.append(raw)
        injected = await self._injected()
        if injected is not None:
            return injected
        number = _valid(raw)
        if number is None:
            return _rest_exception(400, f"Invalid number [{raw}]")
        metadata = {
            "PhoneNumber": national(number),
            "Circle": "KA",
            "CircleName": "Karnataka Telecom Circle",
            "Type": "Mobile",
            "Operator": "A",
            "OperatorName": "Airtel",
            "DND": "Yes" if number in self._dnd else "No",
        }
        return web.json_response({"Numbers": metadata})

    async def _exophone_list(self, request: web.Request) -> web.Response:
        refused = self._authenticate(request)
        if refused is not None:
            return refused
        injected = await self._injected()
        if injected is not None:
            return injected
        exophones = [
            {
                "sid": exophone.sid,
                "phone_number": exophone.number,
                "friendly_name": national(exophone.number),
                "capabilities": {"voice": exophone.voice, "sms": exophone.sms},
                "country": "IN",
                "region": "KA",
                "voice_url": None,
                "sms_url": None,
            }
            for exophone in self._exophones.values()
        ]
        return web.json_response({"page": 0, "page_size": 50, "incoming_phone_numbers": exophones})

    def _authenticate(self, request: web.Request) -> web.Response | None:
        expected = aiohttp.encode_basic_auth(self.api_key, self.api_token)
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return _rest_exception(401, AUTH_FAILED, "UNAUTHORIZED")
        if request.match_info["sid"] != self.account_sid:
            return _rest_exception(401, SID_MISMATCH, "INVALID_ACCOUNT_SID")
        return None

    async def _injected(self) -> web.Response | None:
        if self._stalls:
            self._stalls -= 1
            await self._release.wait()
        if not self._failures:
            return None
        failure = self._failures.pop(0)
        headers = {"Retry-After": failure.retry_after} if failure.retry_after else None
        if failure.body is not None:
            return web.Response(status=failure.status, text=failure.body, headers=headers)
        if failure.message or failure.code or failure.status == 429:
            message = failure.message or "Too Many Requests"
            return _rest_exception(failure.status, message, failure.code, headers)
        page = f"<html><body><h1>{failure.status}</h1></body></html>"
        return web.Response(
            status=failure.status, text=page, content_type="text/html", headers=headers
        )


def national(number: str) -> str:
    """An Indian number as Exotel writes it (0 and the national number); others unchanged."""
    parsed = _parse(number)
    if parsed is None or parsed.country_code != 91:
        return number
    return f"0{parsed.national_number}"


def _e164(number: str) -> str:
    valid = _valid(number)
    if valid is None:
        raise ValueError(f"not a phone number: {number!r}")
    return valid


def _valid(number: str) -> str | None:
    parsed = _parse(number)
    if parsed is None or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _parse(number: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(number.strip(), "IN")
    except phonenumbers.NumberParseException:
        return None


def _units(form: dict[str, str]) -> int:
    return measure(form["Body"]).segments if form.get("Body") else 1


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


async def _form(request: web.Request) -> dict[str, str]:
    return {key: str(value) for key, value in (await request.post()).items()}


def _rest_exception(
    status: int, message: str, code: str = "", headers: dict[str, str] | None = None
) -> web.Response:
    exception: dict[str, Any] = {"Status": status, "Message": message}
    if code:
        exception["Code"] = code
    return web.json_response({"RestException": exception}, status=status, headers=headers)
