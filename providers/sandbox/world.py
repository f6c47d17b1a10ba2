"""The sandbox's outside world: the demo shop's Shopify, the shop's Exotel and Twilio, the
platform's Gupshup, Telegram with the merchant's chat, and the customers' phones, all in this
process and driven from the sandbox page.

`SandboxWorld` starts the four fakes, plays the merchant's side in Shopify (`world.shop`:
create, mark along the journey, cancel) and the customers' side on their phones (answer or let
a call ring out, give a missed call, reply, press a WhatsApp button). Everything reaches our
app the way the real parties would send it: signed Shopify webhooks, the providers' callbacks
and the carrier's shipment events, at the app's public URLs. A call rings the same phone
whichever provider placed it; answering a Twilio call plays our TwiML IVR (fetched and posted
back signed, as Twilio does) and the phone keeps what it said. Two numbers behave on their own:
one is on the DND registry (Exotel refuses to call it) and one never answers (its calls ring
out a moment after they arrive).

The merchant's Telegram chat with our bot is one chat of the simulated Bot API: the merchant
types in it (a reply to a message too) and presses the inline buttons of the bot's messages.

A phone can text the shop at any time, on SMS (through the provider the latest SMS came
through, to its number, or the shop's number there when it came from a sender id; with no SMS
yet, to the shop's Twilio number) and on WhatsApp.
The customers' SMS marketing consent in Shopify is shown with the shop; the merchant can
change it there (a customers/update webhook follows), and Shopify answers our own change of
it with the same webhook, as the real one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp

from clock import Clock
from providers.sandbox import shop as demo
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.gupshup import FakeGupshup
from providers.sandbox.phones import (
    COMPLETED,
    MISSED_CALL,
    NO_ANSWER,
    RINGING,
    TWILIO,
    Arrivals,
    Phone,
    PhoneBook,
    PhoneCall,
    SmsLine,
    Utterance,
    WhatsAppLine,
    e164,
)
from providers.sandbox.server import FakeServer, Received
from providers.sandbox.shop import (
    APP_KEY,
    APP_SECRET,
    CALLER_ID,
    EXOPHONE,
    SHOP_DOMAIN,
    TWILIO_NUMBER,
    Conflict,
    NotFound,
    ShopSide,
)
from providers.sandbox.shopify import FakeShopify
from providers.sandbox.telegram import Chat, ChatMessage, FakeTelegram
from providers.sandbox.twilio import FakeTwilio

_LOGGER = logging.getLogger(__name__)

DND_NUMBER = "+919999900001"
NEVER_ANSWERS = "+919999900002"
REQUEST_LOG = 300
CALL_SECONDS = 25
# Our IVR asks at most twice; a TwiML document that keeps asking is cut off after this many.
TWIML_TURNS = 6
# The merchant's Telegram chat with the bot (a private chat's id is its user's id).
MERCHANT_CHAT = 700_000_001
MERCHANT_NAME = "Demo merchant"
# The sandbox's bot: a token only its simulated Bot API knows.
BOT_TOKEN = "7000000000:SandboxBotTokenKnownOnlyToTheSimulatedBotApi"
BOT_USERNAME = "ordertalk_sandbox_bot"


@dataclass(frozen=True)
class AppLinks:
    """Where the simulated parties reach our app for the demo shop."""

    shopify_webhooks: str  # the address our app registers for every topic
    exotel_passthru: str  # the Passthru applet of the call flow and of the missed-call ExoPhone
    exotel_sms: str  # where Exotel passes on the SMS customers send to the shop's ExoPhone
    gupshup: str  # the Gupshup app's callback URL
    twilio_messages: str  # the Twilio number's "A message comes in" webhook
    shipments: str  # the shop's shipment webhook, given to its carrier and fulfilment platform


class SandboxWorld:
    """The fakes, the demo shop's orders and the customers' phones."""

    def __init__(
        self,
        clock: Clock,
        *,
        ring_out_after: float = 4.0,
        delivery_after: float = 0.5,
    ) -> None:
        self.clock = clock
        self.ring_out_after = ring_out_after
        self.delivery_after = delivery_after
        self.shopify = FakeShopify(api_key=APP_KEY, api_secret=APP_SECRET, clock=clock)
        self.exotel = FakeExotel(clock=clock)
        self.gupshup = FakeGupshup(clock=clock)
        self.twilio = FakeTwilio(friendly_name=f"{demo.SHOP_NAME} (simulated)", clock=clock)
        self.telegram = FakeTelegram(BOT_TOKEN, username=BOT_USERNAME, clock=clock)
        self.book = PhoneBook(self.exotel, self.gupshup, self.twilio)
        self.special_numbers = {"dnd": DND_NUMBER, "never_answers": NEVER_ANSWERS}
        self.requests: deque[Received] = deque(maxlen=REQUEST_LOG)
        self.links: AppLinks | None = None
        self.version = 0
        self._waiters: set[asyncio.Event] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._consents: dict[int, str] = {}  # each Shopify customer's SMS consent, last seen
        self.shop = ShopSide(self.shopify, clock, self._webhook, self._shipment, self._changed)
        self._carrier: aiohttp.ClientSession | None = None

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the fakes on loopback and set up the demo shop's accounts."""
        for fake in self._fakes():
            fake.watch(self._received)
            await fake.start()
        self.shop.install()
        for exophone in (demo.CALLER_ID, demo.EXOPHONE):
            self.exotel.add_exophone(exophone)
        self.twilio.add_number(TWILIO_NUMBER, friendly_name=f"{demo.SHOP_NAME} line")
        self.exotel.mark_dnd(DND_NUMBER)
        for number in self.special_numbers.values():
            self.book.phone(number)
        for template in demo.DEMO_TEMPLATES:
            self.gupshup.add_template(
                template.template_id,
                template.element_name,
                text=template.text,
                buttons=template.buttons,
            )
        self._carrier = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Stop the background deliveries and the fakes."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for fake in reversed(self._fakes()):
            await fake.close()
        if self._carrier is not None:
            await self._carrier.close()
            self._carrier = None

    def _fakes(self) -> tuple[FakeServer, ...]:
        return (self.shopify, self.exotel, self.gupshup, self.twilio, self.telegram)

    def connect(self, links: AppLinks) -> None:
        """Point the simulated parties at our app (once the demo shop exists)."""
        self.links = links

    # Changes -----------------------------------------------------------------------------

    async def wait_changed(self, version: int, seconds: float) -> int:
        """Wait until the world changes past `version` (at most `seconds`); its version."""
        if self.version != version:
            return self.version
        event = asyncio.Event()
        self._waiters.add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), seconds)
        finally:
            self._waiters.discard(event)
        return self.version

    def _changed(self) -> None:
        for customer_id, customer in self._shop_customers().items():
            self._consents.setdefault(customer_id, _consent_key(customer))
        self.version += 1
        for event in self._waiters:
            event.set()

    def _received(self, received: Received) -> None:
        self.requests.append(received)
        self._react(self.book.sync(self.clock.now()))
        if received.party == "shopify":
            # Shopify tells apps of a consent changed through its API too (our own: the echo).
            for customer in self._consent_changes():
                update = partial(self._webhook, "customers/update", copy.deepcopy(customer))
                self._later(self.delivery_after, update)
        self._changed()

    def _react(self, arrivals: Arrivals) -> None:
        for phone, call in arrivals.calls:
            if phone.number == NEVER_ANSWERS and call.status == RINGING:
                self._later(self.ring_out_after, partial(self._ring_out_unanswered, call))
        for _phone, line, form in arrivals.sms:
            if form.get("StatusCallback"):
                self._later(self.delivery_after, partial(self._sms_delivered, line, form))
        for phone, wa_line in arrivals.whatsapp:
            self._later(self.delivery_after, partial(self._whatsapp_delivered, phone, wa_line))

    def _later(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            try:
                await action()
            except Exception:
                _LOGGER.exception("sandbox: a simulated callback failed")

        task = asyncio.create_task(run(), name="sandbox-world")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ring_out_unanswered(self, call: PhoneCall) -> None:
        if call.status == RINGING:
            await self._end_call(call, NO_ANSWER)

    async def _sms_delivered(self, line: SmsLine, form: dict[str, str]) -> None:
        if line.party == TWILIO:
            await self.twilio.send_status(form["StatusCallback"], line.sid, "delivered")
            return
        await self.exotel.sms_status(
            form["StatusCallback"],
            sms_sid=line.sid,
            status="sent",
            detailed_status="DELIVERED_TO_HANDSET",
            detailed_status_code="20005",
        )

    async def _whatsapp_delivered(self, phone: Phone, line: WhatsAppLine) -> None:
        await self.gupshup.send_event(
            self._links().gupshup, gs_id=line.gs_id, status="delivered", destination=phone.number
        )

    async def _webhook(self, topic: str, payload: dict[str, Any]) -> None:
        url = self._links().shopify_webhooks
        status = await self.shopify.send_webhook(
            url, topic, SHOP_DOMAIN, payload, triggered_at=self.clock.now()
        )
        if status != 200:
            _LOGGER.warning("sandbox: our app answered %s %s with HTTP %s", topic, url, status)

    async def _shipment(self, event: dict[str, Any]) -> None:
        """The carrier's (or fulfilment platform's) shipment event, to the shop's webhook."""
        if self._carrier is None:
            raise Conflict("the sandbox is not started")
        url = self._links().shipments
        async with self._carrier.post(url, json=event) as response:
            await response.read()
            if response.status != 202:
                _LOGGER.warning(
                    "sandbox: our app answered a shipment event with HTTP %s", response.status
                )

    # The customer's side: phones -----------------------------------------------------------

    async def answer(self, number: str, digits: str) -> dict[str, Any]:
        """Pick up the ringing call, press `digits` (none: just listen), then hang up."""
        phone, call = self._ringing(number)
        call.status = COMPLETED
        self._changed()
        if call.party == TWILIO:
            await self._play_twiml(call, digits)
        elif digits:
            await self.exotel.passthru(
                self._links().exotel_passthru,
                call_sid=call.call_id,
                call_from=phone.number,
                call_to=call.form.get("CallerId", CALLER_ID),
                direction="outbound-dial",
                digits=digits,
                custom_field=call.form.get("CustomField"),
            )
        await self._end_call(call, COMPLETED)
        return call.json()

    async def _play_twiml(self, call: PhoneCall, digits: str) -> None:
        """Play our IVR as Twilio does: fetch the TwiML of the call's Url, say its <Say>s, and
        post each <Gather> its key (one per Gather, none once `digits` are used up) until it
        hangs up or has nothing more to say."""
        keys = list(digits)
        status, twiml = await self.twilio.post_voice(str(call.form["Url"]), call.call_id)
        for _turn in range(TWIML_TURNS):
            if status != 200:
                self._heard(call, "ivr", f"(the call failed: our app answered HTTP {status})")
                return
            gather = None
            for verb in ET.fromstring(twiml):
                if verb.tag == "Say":
                    self._heard(call, "ivr", verb.text or "")
                elif verb.tag == "Gather":
                    for say in verb.iter("Say"):
                        self._heard(call, "ivr", say.text or "")
                    gather = verb
                    break
            if gather is None:
                return  # a <Hangup/>, or the end of the document: Twilio hangs up
            key = keys.pop(0) if keys else ""
            self._heard(call, "customer", f"pressed {key}" if key else "(pressed nothing)")
            status, twiml = await self.twilio.send_gather(
                str(gather.get("action")), call.call_id, key
            )

    def _heard(self, call: PhoneCall, speaker: str, text: str) -> None:
        call.transcript.append(Utterance(speaker, text.strip()))
        self._changed()

    async def ring_out(self, number: str) -> dict[str, Any]:
        """Let the ringing call ring out unanswered."""
        _phone, call = self._ringing(number)
        await self._end_call(call, NO_ANSWER)
        return call.json()

    async def missed_call(self, number: str) -> dict[str, Any]:
        """Call the shop's missed-call ExoPhone and hang up before it is answered."""
        phone = self._phone(number)
        call = PhoneCall(f"missed{secrets.token_hex(14)}", MISSED_CALL, self.clock.now())
        phone.calls.append(call)
        self._changed()
        await self.exotel.passthru(
            self._links().exotel_passthru,
            call_sid=call.call_id,
            call_from=phone.number,
            call_to=EXOPHONE,
            direction="incoming",
        )
        return call.json()

    async def reply(self, number: str, channel: str, text: str) -> dict[str, Any]:
        """Send a text message from the customer's phone (an SMS answers the latest SMS)."""
        phone = self._phone(number)
        if channel == "sms":
            return await self._reply_sms(phone, text)
        line = WhatsAppLine("in", text, self.clock.now())
        phone.whatsapp.append(line)
        self._changed()
        await self.gupshup.send_text(self._links().gupshup, from_phone=phone.number, text=text)
        return line.json()

    async def _reply_sms(self, phone: Phone, text: str) -> dict[str, Any]:
        received = phone.last_sms()
        # No handset can answer a sender id (a DLT header such as DEMOSH): the customer texts
        # the shop's number at the provider of the latest SMS (its ExoPhone, its Twilio number),
        # which passes the message on to us; with no SMS yet, the shop's Twilio number.
        party = received.party if received is not None else TWILIO
        shop_number = TWILIO_NUMBER if party == TWILIO else EXOPHONE
        to = received.number if received is not None and e164(received.number) else shop_number
        line = SmsLine("in", text, self.clock.now(), party=party, number=to)
        phone.sms.append(line)
        self._changed()
        if party == TWILIO:
            status, _body = await self.twilio.send_inbound(
                self._links().twilio_messages, from_=phone.number, to=to, body=text
            )
        else:
            status, _body = await self.exotel.inbound_sms(
                self._links().exotel_sms, from_phone=phone.number, to=to, body=text
            )
        if status != 200:
            _LOGGER.warning("sandbox: our app answered an inbound SMS with HTTP %s", status)
        return line.json()

    async def press_button(self, number: str, title: str) -> dict[str, Any]:
        """Press a button of the latest WhatsApp message that has buttons."""
        phone = self._phone(number)
        message = phone.with_buttons()
        if message is None:
            raise NotFound(f"no WhatsApp message with buttons on {phone.number}")
        if title not in message.buttons:
            raise NotFound(
                f"the latest WhatsApp message has no button {title!r} "
                f"(it has {', '.join(message.buttons)})"
            )
        line = WhatsAppLine("in", title, self.clock.now())
        phone.whatsapp.append(line)
        self._changed()
        await self.gupshup.send_button_reply(
            self._links().gupshup,
            from_phone=phone.number,
            title=title,
            reply_id=message.msgid or None,
            # A template's button press names the template message it answers.
            context_gs_id=message.gs_id if message.template else None,
        )
        return line.json()

    # The merchant's side: the Telegram chat with our bot ------------------------------------

    def merchant_chat(self) -> Chat:
        return self.telegram.chat(MERCHANT_CHAT, MERCHANT_NAME)

    def merchant_message(self, message_id: int) -> ChatMessage:
        """A message the merchant's chat still shows."""
        chat = self.merchant_chat()
        found = next((m for m in chat.messages if m.message_id == message_id), None)
        if found is None or found.deleted:
            raise NotFound(f"no message {message_id} in the merchant's chat")
        return found

    async def merchant_types(self, text: str, reply_to: int | None = None) -> None:
        """The merchant sends `text` to the bot (a reply to a message still shown, if given);
        returns once the bot has handled it (it is posted to our webhook)."""
        if reply_to is not None:
            self.merchant_message(reply_to)
        status = await self.telegram.type(MERCHANT_CHAT, text, reply_to)
        self._warn_unless_handled(status)
        self._changed()

    async def merchant_presses(self, message_id: int, data: str) -> None:
        """The merchant taps the inline button carrying `data` under a message of the bot."""
        message = self.merchant_message(message_id)
        if not any(data == button for row in message.buttons for _label, button in row):
            raise NotFound(f"message {message_id} has no such button")
        self._warn_unless_handled(await self.telegram.press(MERCHANT_CHAT, message_id, data))
        self._changed()

    @staticmethod
    def _warn_unless_handled(status: int) -> None:
        # 0: no webhook yet, the update waits for one (or for a poll), as on Telegram.
        if status not in (0, 200):
            _LOGGER.warning("sandbox: our app answered a Telegram update with HTTP %s", status)

    # The merchant's side: customers in Shopify --------------------------------------------

    async def set_sms_consent(self, number: str, subscribed: bool) -> dict[str, Any]:
        """Change a customer's SMS marketing consent in the shop's Shopify admin, as the
        merchant does; Shopify tells our app with customers/update."""
        normal = e164(number)
        customer = next(
            (c for c in self._shop_customers().values() if e164(str(c.get("phone"))) == normal),
            None,
        )
        if normal is None or customer is None:
            raise NotFound(f"no customer of the shop has the phone {number!r}")
        consent = dict(customer.get("sms_marketing_consent") or {})
        consent |= {
            "state": "subscribed" if subscribed else "unsubscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": self.clock.now().isoformat(),
        }
        customer["sms_marketing_consent"] = consent
        self._consents[int(customer["id"])] = _consent_key(customer)
        self._changed()
        await self._webhook("customers/update", customer)
        return _customer_json(customer)

    def _consent_changes(self) -> list[dict[str, Any]]:
        """The customers whose SMS consent an API call just changed (ours, in the sandbox)."""
        changed = []
        for customer_id, customer in self._shop_customers().items():
            key = _consent_key(customer)
            if self._consents.setdefault(customer_id, key) != key:
                changed.append(customer)
            self._consents[customer_id] = key
        return changed

    def _shop_customers(self) -> dict[int, dict[str, Any]]:
        return {int(c["id"]): c for c in self.shopify.customers(SHOP_DOMAIN)}

    def _phone(self, number: str) -> Phone:
        normal = e164(number)
        if normal is None:
            raise NotFound(f"not a phone number: {number!r}")
        return self.book.phone(normal)

    def _ringing(self, number: str) -> tuple[Phone, PhoneCall]:
        phone = self.book.find(number)
        call = phone.ringing() if phone is not None else None
        if phone is None or call is None:
            raise NotFound(f"no call is ringing on {number}")
        return phone, call

    async def _end_call(self, call: PhoneCall, status: str) -> None:
        call.status = status
        self._changed()
        callback = call.form.get("StatusCallback")
        duration = CALL_SECONDS if status == COMPLETED else 0
        if callback and call.party == TWILIO:
            await self.twilio.send_call_status(str(callback), call.call_id, status, duration)
        elif callback:
            await self.exotel.call_status(
                callback,
                call_sid=call.call_id,
                status=status,
                duration=duration,
            )

    def _links(self) -> AppLinks:
        if self.links is None:
            raise Conflict("the sandbox is not connected to the app yet")
        return self.links

    # State ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The world's part of the sandbox state: special numbers, orders, phones, requests."""
        orders = self.shop.orders()
        for order in orders:
            if order["phone"]:
                self.book.phone(order["phone"])  # every customer's phone, even before a word
        return {
            "special_numbers": dict(self.special_numbers),
            "orders": orders,
            "customers": [_customer_json(c) for c in self._shop_customers().values()],
            "notification_templates": [t.json() for t in demo.DEMO_TEMPLATES],
            "phones": [phone.json() for phone in self.book.phones.values()],
            "requests": [
                {
                    "at": received.at.isoformat(),
                    "party": received.party,
                    "method": received.method,
                    "path": received.path,
                    "summary": received.summary,
                }
                for received in self.requests
            ],
        }


def _customer_json(customer: dict[str, Any]) -> dict[str, Any]:
    """A customer as the sandbox's shop view shows them."""
    name = " ".join(filter(None, (customer.get("first_name"), customer.get("last_name"))))
    consent = customer.get("sms_marketing_consent") or {}
    return {
        "id": str(customer["id"]),
        "name": name,
        "phone": e164(str(customer.get("phone") or "")) or "",
        "sms_consent": consent.get("state") or "not_subscribed",
        "sms_consent_updated_at": consent.get("consent_updated_at"),
    }


def _consent_key(customer: dict[str, Any]) -> str:
    return json.dumps(customer.get("sms_marketing_consent"), sort_keys=True, default=str)
