"""The customers' phones in the sandbox: what each number received from the fake Exotel,
Twilio and Gupshup (SMS, WhatsApp messages, calls) and what the customer did with them.

`PhoneBook.sync` reads what the fakes accepted since the last look; everything shown is what a
real handset would have seen (a refused call rings nowhere, a DLT-rejected SMS never arrives).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import phonenumbers

from providers.sandbox.exotel import FakeExotel
from providers.sandbox.gupshup import FakeGupshup, message_text
from providers.sandbox.twilio import WHATSAPP_PREFIX, FakeTwilio

REGION = "IN"
LINK = re.compile(r"https?://\S+/v/[A-Za-z0-9_-]+")
# A call's status as the phone saw it.
RINGING, COMPLETED, NO_ANSWER = "ringing", "completed", "no-answer"
REFUSED, MISSED_CALL = "refused", "missed-call"  # refused by the provider; given by the customer
EXOTEL, TWILIO = "exotel", "twilio"  # the parties a call or SMS came through


def e164(number: str, region: str = REGION) -> str | None:
    """The E.164 form of a number (read in `region` when local), or None if it is not valid."""
    try:
        parsed = phonenumbers.parse(number.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


@dataclass(frozen=True)
class Utterance:
    """One turn of a call as the customer lived it: what the IVR said, or the key pressed."""

    speaker: str  # ivr | customer
    text: str

    def json(self) -> dict[str, Any]:
        return {"speaker": self.speaker, "text": self.text}


@dataclass
class PhoneCall:
    call_id: str
    status: str
    at: datetime
    form: dict[str, Any] = field(default_factory=dict)  # the provider's create (connect) form
    party: str = EXOTEL
    caller: str = ""  # the number shown on the phone
    # What the call said and what was pressed, when the IVR is ours (Twilio fetches its TwiML
    # from us); an Exotel call plays the merchant's flow, which the sandbox cannot hear.
    transcript: list[Utterance] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "status": self.status,
            "at": _iso(self.at),
            "provider": self.party,
            "from": self.caller,
            "transcript": [line.json() for line in self.transcript],
        }


@dataclass(frozen=True)
class SmsLine:
    direction: str  # in | out
    body: str
    at: datetime
    sid: str = ""
    party: str = EXOTEL
    number: str = ""  # the other end: who sent it (out), or to whom it was sent (in)

    def json(self) -> dict[str, Any]:
        link = LINK.search(self.body)
        return {
            "direction": self.direction,
            "body": self.body,
            "at": _iso(self.at),
            "link": link.group(0) if link else None,
            "provider": self.party,
            "number": self.number,
        }


@dataclass(frozen=True)
class WhatsAppLine:
    direction: str
    body: str
    at: datetime
    buttons: tuple[str, ...] = ()  # quick replies
    msgid: str = ""  # our message id, which a button press refers to
    gs_id: str = ""  # Gupshup's id of an accepted message
    links: tuple[tuple[str, str], ...] = ()  # a template's URL buttons: (title, url)
    template: str = ""  # the template's id, for a template message

    def json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "body": self.body,
            "at": _iso(self.at),
            "buttons": [{"title": title} for title in self.buttons],
            "links": [{"title": title, "url": url} for title, url in self.links],
            "template": self.template,
        }


@dataclass
class Phone:
    number: str
    sms: list[SmsLine] = field(default_factory=list)
    whatsapp: list[WhatsAppLine] = field(default_factory=list)
    calls: list[PhoneCall] = field(default_factory=list)

    def ringing(self) -> PhoneCall | None:
        """The latest call still ringing, if any."""
        return next((call for call in reversed(self.calls) if call.status == RINGING), None)

    def last_sms(self) -> SmsLine | None:
        """The latest SMS this phone received, if any."""
        return next((line for line in reversed(self.sms) if line.direction == "out"), None)

    def with_buttons(self) -> WhatsAppLine | None:
        """The latest WhatsApp message received with buttons, if any."""
        return next(
            (line for line in reversed(self.whatsapp) if line.direction == "out" and line.buttons),
            None,
        )

    def json(self) -> dict[str, Any]:
        ringing = self.ringing()
        return {
            "number": self.number,
            "threads": {
                "sms": [line.json() for line in self.sms],
                "whatsapp": [line.json() for line in self.whatsapp],
            },
            "ringing": {
                "call_id": ringing.call_id,
                "since": _iso(ringing.at),
                "provider": ringing.party,
                "from": ringing.caller,
            }
            if ringing
            else None,
            "calls": [call.json() for call in self.calls],
        }


@dataclass
class Arrivals:
    """What reached the phones in one sync."""

    calls: list[tuple[Phone, PhoneCall]] = field(default_factory=list)
    sms: list[tuple[Phone, SmsLine, dict[str, str]]] = field(default_factory=list)
    whatsapp: list[tuple[Phone, WhatsAppLine]] = field(default_factory=list)


class PhoneBook:
    """Every phone the sandbox knows, in the order they first appeared."""

    def __init__(self, exotel: FakeExotel, gupshup: FakeGupshup, twilio: FakeTwilio) -> None:
        self.exotel = exotel
        self.gupshup = gupshup
        self.twilio = twilio
        self.phones: dict[str, Phone] = {}
        self._seen_calls = 0
        self._seen_sms = 0
        self._seen_whatsapp = 0
        self._seen_twilio_calls = 0
        self._seen_twilio_messages = 0

    def phone(self, number: str) -> Phone:
        if number not in self.phones:
            self.phones[number] = Phone(number)
        return self.phones[number]

    def find(self, number: str) -> Phone | None:
        normal = e164(number)
        return self.phones.get(normal) if normal else None

    def sync(self, now: datetime) -> Arrivals:
        """Take in what the fakes accepted since the last sync."""
        arrivals = Arrivals()
        self._sync_calls(now, arrivals)
        self._sync_sms(now, arrivals)
        self._sync_whatsapp(now, arrivals)
        self._sync_twilio_calls(now, arrivals)
        self._sync_twilio_messages(now, arrivals)
        return arrivals

    def _sync_calls(self, now: datetime, arrivals: Arrivals) -> None:
        attempts = self.exotel.calls[self._seen_calls :]
        self._seen_calls += len(attempts)
        sids = {id(form): sid for sid, form in self.exotel.placed_calls.items()}
        for index, form in enumerate(attempts, start=self._seen_calls - len(attempts)):
            number = e164(form.get("From", ""))
            if number is None:
                continue
            sid = sids.get(id(form))
            status = RINGING if sid else REFUSED
            call = PhoneCall(
                sid or f"refused-{index}", status, now, form, EXOTEL, form.get("CallerId", "")
            )
            phone = self.phone(number)
            phone.calls.append(call)
            arrivals.calls.append((phone, call))

    def _sync_sms(self, now: datetime, arrivals: Arrivals) -> None:
        attempts = self.exotel.sms[self._seen_sms :]
        self._seen_sms += len(attempts)
        sids = {id(form): sid for sid, form in self.exotel.accepted_sms.items()}
        for form in attempts:
            sid = sids.get(id(form))
            number = e164(form.get("To", ""))
            if sid is None or number is None or self.exotel.dlt_rejected(form):
                continue
            line = SmsLine("out", form.get("Body", ""), now, sid, EXOTEL, form.get("From", ""))
            phone = self.phone(number)
            phone.sms.append(line)
            arrivals.sms.append((phone, line, form))

    def _sync_whatsapp(self, now: datetime, arrivals: Arrivals) -> None:
        attempts = self.gupshup.messages[self._seen_whatsapp :]
        self._seen_whatsapp += len(attempts)
        ids = {id(fields): gs_id for gs_id, fields in self.gupshup.accepted.items()}
        for fields in attempts:
            gs_id = ids.get(id(fields))
            number = e164(f"+{fields.get('destination', '')}")
            if gs_id is None or number is None:
                continue
            line = _whatsapp_line(self.gupshup, fields, now, gs_id)
            phone = self.phone(number)
            phone.whatsapp.append(line)
            arrivals.whatsapp.append((phone, line))

    def _sync_twilio_calls(self, now: datetime, arrivals: Arrivals) -> None:
        attempts = self.twilio.calls[self._seen_twilio_calls :]
        self._seen_twilio_calls += len(attempts)
        sids = {id(form): sid for sid, form in self.twilio.placed_calls.items()}
        for index, form in enumerate(attempts, start=self._seen_twilio_calls - len(attempts)):
            number = e164(str(form.get("To", "")))
            if number is None:
                continue
            sid = sids.get(id(form))
            status = RINGING if sid else REFUSED
            call = PhoneCall(
                sid or f"refused-twilio-{index}", status, now, form, TWILIO, str(form.get("From"))
            )
            phone = self.phone(number)
            phone.calls.append(call)
            arrivals.calls.append((phone, call))

    def _sync_twilio_messages(self, now: datetime, arrivals: Arrivals) -> None:
        attempts = self.twilio.messages[self._seen_twilio_messages :]
        self._seen_twilio_messages += len(attempts)
        sids = {id(form): sid for sid, form in self.twilio.accepted_messages.items()}
        for form in attempts:
            sid = sids.get(id(form))
            to = str(form.get("To", ""))
            number = e164(to)
            # The demo's account has no WhatsApp sender: its messages are SMS only.
            if sid is None or number is None or to.startswith(WHATSAPP_PREFIX):
                continue
            line = SmsLine("out", str(form.get("Body", "")), now, sid, TWILIO, str(form["From"]))
            phone = self.phone(number)
            phone.sms.append(line)
            arrivals.sms.append((phone, line, {k: str(v) for k, v in form.items()}))


def _whatsapp_line(
    gupshup: FakeGupshup, fields: dict[str, Any], now: datetime, gs_id: str
) -> WhatsAppLine:
    template = fields.get("template")
    if isinstance(template, dict):
        template_id = str(template.get("id"))
        params = template.get("params") if isinstance(template.get("params"), list) else []
        view = gupshup.template_view(template_id, [str(param) for param in params])
        if view is None:  # not a template of the app: what was asked, as it was asked
            body = f"[template {template_id}] " + " | ".join(map(str, params))
            return WhatsAppLine("out", body, now, gs_id=gs_id, template=template_id)
        return WhatsAppLine(
            "out", view.text, now, view.replies, "", gs_id, view.links, template_id
        )
    message = fields.get("message")
    text, buttons = message_text(message)
    msgid = str(message.get("msgid") or "") if isinstance(message, dict) else ""
    return WhatsAppLine("out", text, now, tuple(buttons), msgid, gs_id)
