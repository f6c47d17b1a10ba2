"""Order verification end to end: a signed orders/create webhook into the real app, the real
worker and job handlers, calls and SMS through the fake Exotel, answers through its
callbacks, the customer's page and the OTP API, and the outcome in the fake Shopify."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import pytest
from sqlalchemy import func, select

from flows.channels.callback_urls import CallbackUrls
from flows.channels.messaging import SEND_JOB, MessageSender
from flows.shops import config as shop_config
from flows.verification.calls import CallPlacer
from flows.verification.runtime import CALL_JOB
from providers.exotel import ExotelClient
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.gupshup import FakeGupshup
from providers.sandbox.shopify import FakeShopify, order_payload
from providers.sms import is_gsm7
from settings import Settings
from storage.models import (
    Activity,
    Call,
    Customer,
    Job,
    Message,
    MissedCall,
    Order,
    Shop,
    Verification,
)
from tests.conftest import SECURITY
from tests.web.test_shopify import DOMAIN, TOKEN, connect, free_port, url

CUSTOMER = "+919876500001"
APP_KEY = "journeys-app-key"
APP_SECRET = "shpss_" + "fedcba9876543210" * 2
EXOPHONE = "08047112345"
LINK = re.compile(r"https?://\S+/v/([A-Za-z0-9_-]+)")
CALLER_ID = "08047110000"
EXOTEL_ACCOUNT = {
    "provider": "exotel",
    "subdomain": "api.in.exotel.com",
    "account_sid": "ordertalk1",
    "api_key": "fake-exotel-key",
    "api_token": "fake-exotel-token",
    "numbers": [CALLER_ID, EXOPHONE],
}
BASE_SETTINGS: dict[str, Any] = {
    "contact_phone": "+918040001234",
    "ivr": {
        "caller_id": CALLER_ID,
        "flow_id": "214512",
        "retries": 1,
        "retry_interval_minutes": 10,
        "cancel_in_shopify": True,
    },
    "fallback": {
        "mode": "sms_link",
        "sms_link": {
            "sender_id": "DEMOSH",
            "dlt_entity_id": "1101",
            "dlt_template_id": "1102",
            "cancel_in_shopify": True,
        },
        "missed_call": {
            "sender_id": "DEMOSH",
            "dlt_entity_id": "1101",
            "dlt_template_id": "1103",
            "confirmation_dlt_template_id": "1104",
            "exophone": EXOPHONE,
        },
    },
    "otp": {"sender_id": "DEMOSH", "dlt_entity_id": "1101", "dlt_template_id": "1105"},
}


@pytest.fixture
async def fake():
    shopify = FakeShopify(api_key=APP_KEY, api_secret=APP_SECRET)
    await shopify.start()
    shopify.add_shop(DOMAIN, TOKEN, name="Demo Store", phone="+91 80 4000 1234")
    yield shopify
    await shopify.close()


@pytest.fixture
async def exotel():
    server = FakeExotel()
    for number in (CALLER_ID, EXOPHONE):
        server.add_exophone(number)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def gupshup():
    server = FakeGupshup()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def browser():
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(database_url, fake, exotel, gupshup, port):
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        shopify={
            "api_key": APP_KEY,
            "api_secret": APP_SECRET,
            "admin_url": fake.admin_url_template,
        },
        providers={
            "exotel": {"api_url": exotel.base_url},
            "gupshup": {
                "api_key": gupshup.api_key,
                "app_name": gupshup.app_name,
                "source": gupshup.source,
                "api_url": gupshup.base_url,
            },
        },
    )


@pytest.fixture
async def server(aiohttp_server, app_factory, db, queue, port):
    return await aiohttp_server(app_factory(db, queue), port=port)


@pytest.fixture
def urls(settings) -> CallbackUrls:
    return CallbackUrls(settings.server.public_url, settings.secret_key())


class Journey:
    """One shop, its customer and the parties around them, driven step by step."""

    def __init__(self, res, worker, server, fake, exotel, urls, browser) -> None:
        self.res, self.worker, self.server = res, worker, server
        self.fake, self.exotel, self.urls, self.browser = fake, exotel, urls, browser
        self.shop_id = 0
        self.headers: dict[str, str] = {}

    async def install(self, changes: dict[str, Any] | None = None) -> None:
        issued = await connect(self.browser, self.server, self.worker)
        self.headers = {"Authorization": f"Bearer {issued['api_key']}"}
        async with self.res.db.sessions() as session:
            self.shop_id = await session.scalar(select(Shop.id))
        document = _merge(BASE_SETTINGS, changes or {})
        await shop_config.save(self.res.db, self.res.box, self.res.clock, self.shop_id, document)
        desk = self.res.account_desk()
        await desk.connect(self.shop_id, EXOTEL_ACCOUNT)
        await desk.connect(self.shop_id, {"provider": "gupshup", "platform": True})

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """The admin API with the shop's key, as the merchant uses it."""
        async with self.browser.request(
            method, url(self.server, f"/api/v1/shop/{path}"), json=body, headers=self.headers
        ) as response:
            assert response.status in (200, 201), await response.text()
            return await response.json()

    async def order(self, phone: str = CUSTOMER, **overrides: Any) -> dict[str, Any]:
        self.res.clock.advance(timedelta(seconds=1))  # past the call rate limit's spacing
        payload = order_payload(**overrides)
        for address in ("shipping_address", "billing_address"):
            payload[address] = {**payload[address], "phone": phone}
        self.fake.add_order(DOMAIN, payload)
        endpoint = url(self.server, "/webhooks/shopify")
        assert await self.fake.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200
        await self.worker.run_until_idle()
        return payload

    async def call_ends(self, status: str) -> None:
        sid = await self.last_call_sid()
        answer = await self.exotel.call_status(
            self.urls.exotel(self.shop_id, "call-status"), call_sid=sid, status=status
        )
        assert answer[0] == 200
        await self.worker.run_until_idle()

    async def press(self, digits: str, sid: str = "") -> None:
        sid = sid or await self.last_call_sid()
        call = self.exotel.placed_calls[sid]
        answer = await self.exotel.passthru(
            self.urls.exotel(self.shop_id, "passthru"),
            call_sid=sid,
            call_from=CUSTOMER,
            call_to="08047110000",
            direction="outbound-dial",
            digits=digits,
            custom_field=call["CustomField"],
        )
        assert answer[0] == 200
        await self.worker.run_until_idle()

    async def missed_call(self, phone: str = CUSTOMER) -> None:
        answer = await self.exotel.passthru(
            self.urls.exotel(self.shop_id, "passthru"),
            call_sid=f"missed-{len(self.exotel.calls)}-{phone}",
            call_from=phone,
            call_to=EXOPHONE,
            direction="incoming",
        )
        assert answer[0] == 200
        await self.worker.run_until_idle()

    async def advance(self, minutes: int) -> None:
        self.res.clock.advance(timedelta(minutes=minutes))
        await self.worker.run_until_idle()

    async def settle(self) -> None:
        """Run what rate limits deferred by a few seconds, moving the clock to each."""
        while True:
            async with self.res.db.sessions() as session:
                due = await session.scalar(
                    select(func.min(Job.due_at)).where(Job.status == "queued")
                )
            now = self.res.clock.now()
            if due is None or due > now + timedelta(seconds=5):
                return
            self.res.clock.advance(max(due - now, timedelta(0)))
            await self.worker.run_until_idle()

    async def last_call_sid(self) -> str:
        async with self.res.db.sessions() as session:
            call = await session.scalar(select(Call).order_by(Call.id.desc()).limit(1))
        return call.provider_call_id

    def link_token(self) -> str:
        found = LINK.search(self.exotel.sms[-1]["Body"])
        assert found, self.exotel.sms[-1]["Body"]
        return found.group(1)

    async def press_on_page(self, token: str, action: str, **form: str) -> aiohttp.ClientResponse:
        page = url(self.server, f"/v/{token}")
        async with self.browser.post(page, data={"action": action, **form}) as response:
            await response.read()
        await self.worker.run_until_idle()
        return response

    async def status(self, payload: dict[str, Any]) -> str:
        async with self.res.db.sessions() as session:
            order = await session.scalar(
                select(Order).where(Order.shopify_order_id == str(payload["id"]))
            )
        return order.verification_status

    def tags(self, payload: dict[str, Any]) -> list[str]:
        return self.fake.tags(DOMAIN, payload["id"])

    def tag_calls(self, tag: str) -> int:
        """How many tagsAdd requests carried `tag` (exactly-once checks)."""
        return sum(
            1
            for _path, body, _headers in self.fake.requests
            if "tagsAdd" in str(body) and tag in str(body)
        )


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture
def journey(resources, worker, server, fake, exotel, urls, browser) -> Journey:
    return Journey(resources, worker, server, fake, exotel, urls, browser)


async def test_unanswered_calls_fall_back_to_the_link_and_confirm_reaches_shopify_once(
    journey: Journey,
):
    await journey.install()
    payload = await journey.order()
    assert len(journey.exotel.calls) == 1
    call = journey.exotel.calls[0]
    assert call["From"] == CUSTOMER and call["CallerId"] == "08047110000"
    assert call["Url"].endswith("/214512") and call["CustomField"].startswith("v")

    await journey.call_ends("no-answer")
    assert len(journey.exotel.calls) == 1  # the retry waits its interval
    await journey.advance(10)
    assert len(journey.exotel.calls) == 2
    await journey.call_ends("busy")
    assert journey.tags(payload) == ["ivr_retry_limit_reached"]
    assert len(journey.exotel.sms) == 1
    sms = journey.exotel.sms[0]
    assert sms["From"] == "DEMOSH" and sms["DltTemplateId"] == "1102"
    # Plain (GSM-7) SMS, the default: the amount's rupee sign is spelt as its currency code.
    assert f"#{payload['order_number']}" in sms["Body"] and "INR 1,499.00" in sms["Body"]
    assert sms["EncodingType"] == "plain"

    token = journey.link_token()
    async with journey.browser.get(url(journey.server, f"/v/{token}")) as page:
        assert page.status == 200
    assert await journey.status(payload) == "pending"  # opening the page decides nothing
    assert (await journey.press_on_page(token, "confirm")).status == 200
    assert await journey.status(payload) == "confirmed"
    await journey.press_on_page(token, "confirm")
    await journey.press_on_page(token, "cancel")
    assert await journey.status(payload) == "confirmed"
    assert journey.tags(payload) == ["ivr_retry_limit_reached", "cod_confirmed"]
    assert journey.tag_calls("cod_confirmed") == 1
    await journey.advance(24 * 60)  # every timer comes due: none acts on a decided order
    assert len(journey.exotel.calls) == 2 and len(journey.exotel.sms) == 1
    async with journey.res.db.sessions() as session:
        kinds = [a.kind for a in await session.scalars(select(Activity).order_by(Activity.id))]
        dead = await session.scalar(select(Job).where(Job.status == "dead"))
    assert dead is None
    assert kinds.count("call_not_answered") == 2 and "verification_confirmed" in kinds


@pytest.mark.parametrize(
    ("encoding", "template", "amount"),
    [
        ("plain", "Confirm %ordername% of %orderamount%: %link%", "INR 1,499.00"),
        ("unicode", "Confirm %ordername% of %orderamount%: %link%", "₹1,499.00"),
        ("unicode", "Confirm %ordername%: %link%", ""),  # GSM-7 text, sent as unicode
    ],
)
async def test_the_link_sms_goes_in_the_merchants_encoding(
    journey: Journey, encoding, template, amount
):
    sms_link = {"encoding": encoding, "template": template}
    await journey.install(
        {"ivr": {"retries": 0, "retry_interval_minutes": 0}, "fallback": {"sms_link": sms_link}}
    )
    await journey.order()
    await journey.call_ends("no-answer")
    [sms] = journey.exotel.sms
    assert sms["EncodingType"] == encoding
    assert amount in sms["Body"]
    async with journey.res.db.sessions() as session:
        row = await session.scalar(select(Message).where(Message.channel == "sms"))
    body = sms["Body"]
    if encoding == "unicode":
        segments = 1 if len(body) <= 70 else -(-len(body) // 67)
        assert (row.encoding, row.segments) == ("UCS-2", segments)
    else:
        assert is_gsm7(body)
        assert (row.encoding, row.segments) == ("GSM-7", 1 if len(body) <= 160 else 2)


async def test_cancel_on_the_page_cancels_the_order_in_shopify(journey: Journey):
    await journey.install({"ivr": {"retries": 0, "retry_interval_minutes": 0}})
    payload = await journey.order()
    await journey.call_ends("no-answer")
    token = journey.link_token()
    await journey.press_on_page(token, "cancel")  # the page asks once more
    assert await journey.status(payload) == "pending"
    assert "cod_cancelled" not in journey.tags(payload)
    await journey.press_on_page(token, "cancel", sure="yes")
    assert await journey.status(payload) == "cancelled"
    order = journey.fake.order(DOMAIN, payload["id"])
    assert order["cancelled_at"] is not None
    assert journey.tags(payload) == ["ivr_retry_limit_reached", "cod_cancelled"]


async def test_keypad_confirms_during_the_call(journey: Journey):
    await journey.install()
    payload = await journey.order()
    await journey.press("1")
    await journey.call_ends("completed")
    assert await journey.status(payload) == "confirmed"
    assert journey.tags(payload) == ["cod_confirmed"]
    assert len(journey.exotel.calls) == 1 and journey.exotel.sms == []


async def test_a_keypress_counts_even_when_the_call_id_was_never_saved(journey: Journey):
    """The worker died between Exotel's answer and saving the call id: the call is marked
    unconfirmed and the flow moves on, but the customer's key still finds its call."""
    await journey.install()
    payload = await journey.order()
    sid = await journey.last_call_sid()
    async with journey.res.db.transaction() as session:
        call = await session.scalar(select(Call))
        call.provider_call_id, call.status = None, "unconfirmed"
    await journey.press("1", sid)
    assert await journey.status(payload) == "confirmed"
    async with journey.res.db.sessions() as session:
        call = await session.scalar(select(Call))
    assert (call.provider_call_id, call.input_digits) == (sid, "1")


async def test_a_dnd_number_gets_no_call_and_the_link_at_once(journey: Journey):
    await journey.install()
    journey.exotel.mark_dnd(CUSTOMER)
    payload = await journey.order()
    assert len(journey.exotel.calls) == 1  # refused by the provider: nobody was called
    assert len(journey.exotel.sms) == 1 and LINK.search(journey.exotel.sms[0]["Body"])
    assert journey.tags(payload) == []  # no IVR limit tag: no call could be made
    async with journey.res.db.sessions() as session:
        kinds = {a.kind for a in await session.scalars(select(Activity))}
    assert "dnd_number" in kinds
    await journey.press_on_page(journey.link_token(), "confirm")
    assert journey.tags(payload) == ["cod_confirmed"]


@pytest.mark.parametrize("mode", ["latest", "latest_3_in_30_days"])
async def test_a_missed_call_confirms_the_pending_orders(journey: Journey, mode: str):
    template = "Confirm with a missed call on %exophone%"
    await journey.install(
        {
            "ivr": {"retries": 0, "retry_interval_minutes": 0},
            "fallback": {
                "mode": "missed_call",
                "missed_call": {"confirm_mode": mode, "template": template},
            },
        }
    )
    orders = []
    for _ in range(4):
        orders.append(await journey.order())
        await journey.call_ends("no-answer")
    assert [sms["Body"] for sms in journey.exotel.sms] == [
        template.replace("%exophone%", EXOPHONE)
    ] * 4
    await journey.missed_call("+919876500999")  # a number with no pending order: logged only
    await journey.missed_call()
    await journey.settle()  # the confirmations wait their turn at the SMS rate limit
    statuses = [await journey.status(order) for order in orders]
    confirmed = 1 if mode == "latest" else 3
    assert statuses == ["pending"] * (4 - confirmed) + ["confirmed"] * confirmed
    confirmations = [sms for sms in journey.exotel.sms if sms["DltTemplateId"] == "1104"]
    assert len(confirmations) == confirmed
    async with journey.res.db.sessions() as session:
        missed = list(await session.scalars(select(MissedCall).order_by(MissedCall.id)))
    assert [len(m.matched_order_ids) for m in missed] == [0, confirmed]


async def test_otp_right_code_wrong_codes_and_resend_limit(journey: Journey, clock):
    await journey.install(
        {"verification": {"type": "otp"}, "otp": {"wrong_attempts_limit": 2, "resend_limit": 1}}
    )
    first = await journey.order()
    second = await journey.order(phone="+919876500002")
    codes = await otp_codes(journey)
    assert len(journey.exotel.sms) == 2 and "%otp%" not in journey.exotel.sms[0]["Body"]
    assert codes[0] in journey.exotel.sms[0]["Body"]

    def signed(payload) -> dict[str, str]:
        """A session token of the checkout extension, as Shopify mints it for the buyer."""
        now = int(clock.now().timestamp())
        claims = {"dest": f"https://{DOMAIN}", "aud": APP_KEY, "exp": now + 60, "nbf": now}
        claims["sub"] = f"gid://shopify/Customer/{payload['customer']['id']}"
        return {"Authorization": f"Bearer {jwt.encode(claims, APP_SECRET, algorithm='HS256')}"}

    async def verify(payload, code) -> dict:
        body = {"order": str(payload["id"]), "code": code}
        async with journey.browser.post(
            url(journey.server, "/api/otp/verify"), json=body, headers=signed(payload)
        ) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def resend(payload) -> dict:
        body = {"order": str(payload["id"])}
        async with journey.browser.post(
            url(journey.server, "/api/otp/resend"), json=body, headers=signed(payload)
        ) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    assert (await verify(first, codes[0]))["result"] == "verified"
    await journey.worker.run_until_idle()
    assert journey.tags(first) == ["otp_verified"]

    wrong = "000000" if codes[1] != "000000" else "111111"
    assert (await verify(second, wrong))["result"] == "wrong"
    assert (await resend(second))["result"] == "too_early"
    clock.advance(timedelta(seconds=30))
    assert (await resend(second))["result"] == "resent"
    await journey.worker.run_until_idle()
    clock.advance(timedelta(seconds=30))
    assert (await resend(second))["result"] == "resend_limit"
    assert (await verify(second, wrong))["result"] == "wrong"
    assert (await verify(second, wrong))["result"] == "locked"
    fresh = (await otp_codes(journey))[-1]
    assert (await verify(second, fresh))["result"] == "locked"  # no more tries
    await journey.worker.run_until_idle()
    assert await journey.status(second) == "unverified"
    # Two tag jobs, due together: Shopify may get them in either order.
    assert sorted(journey.tags(second)) == [
        "incorrect_otp_limit_reached",
        "resend_otp_limit_reached",
    ]


async def otp_codes(journey: Journey) -> list[str]:
    """The codes the OTP SMS carried, from the send jobs' nonces (the codes are not stored)."""
    async with journey.res.db.sessions() as session:
        jobs = list(
            await session.scalars(select(Job).where(Job.kind == "message.send").order_by(Job.id))
        )
        messages = {m.id: m for m in await session.scalars(select(Message))}
    codes = []
    for job in jobs:
        otp = job.payload["details"].get("otp")
        if otp and messages[job.payload["message_id"]].status == "sent":
            codes.append(journey.res.keys.otp_code(otp["nonce"], otp["length"]))
    return codes


WHATSAPP_FIRST = {"verification": {"type": "whatsapp", "then": ["ivr"]}}


async def test_a_whatsapp_button_confirms_without_a_call(journey: Journey, gupshup):
    await journey.install(WHATSAPP_FIRST)
    payload = await journey.order()
    assert journey.exotel.calls == [] and len(gupshup.accepted) == 1
    sent = next(iter(gupshup.accepted.values()))
    assert sent["destination"] == CUSTOMER.removeprefix("+")
    titles = [option["title"] for option in sent["message"]["options"]]
    assert titles == ["Confirm", "Cancel", "Call me"]
    # Gupshup may echo only the button's title, not its postback: the title is enough.
    answer = await gupshup.send_button_reply(
        journey.urls.gupshup(),
        from_phone=CUSTOMER,
        title="Confirm",
        reply_id=sent["message"]["msgid"],
    )
    assert answer[0] == 200
    await journey.worker.run_until_idle()
    assert await journey.status(payload) == "confirmed"
    assert journey.tags(payload) == ["cod_confirmed"]
    await journey.advance(24 * 60)
    assert journey.exotel.calls == [] and len(gupshup.accepted) == 1


async def test_an_unanswered_whatsapp_goes_on_to_the_call_then_the_link(journey: Journey, gupshup):
    await journey.install(WHATSAPP_FIRST | {"ivr": {"retries": 0, "retry_interval_minutes": 0}})
    payload = await journey.order()
    await journey.advance(30)
    assert len(gupshup.accepted) == 2 and journey.exotel.calls == []  # the resend
    await journey.advance(30)
    assert len(journey.exotel.calls) == 1
    await journey.call_ends("no-answer")
    assert journey.tags(payload) == ["whatsapp_retry_limit_reached", "ivr_retry_limit_reached"]
    assert len(journey.exotel.sms) == 1 and LINK.search(journey.exotel.sms[0]["Body"])


async def test_the_setup_lists_the_passthru_url_that_records_the_keypad(journey: Journey):
    await journey.install()
    setup = await journey.api("GET", "setup")
    assert setup["status"] == "installed" and setup["missing"] == []
    [exotel] = [a for a in setup["accounts"] if a["provider"] == "exotel"]
    keypad = next(item for item in exotel["paste"] if "Gather" in item["where"])
    assert "214512" in keypad["where"]  # the merchant's call flow
    payload = await journey.order()
    sid = await journey.last_call_sid()
    call = journey.exotel.placed_calls[sid]
    answer = await journey.exotel.passthru(
        keypad["value"],
        call_sid=sid,
        call_from=CUSTOMER,
        call_to=CALLER_ID,
        direction="outbound-dial",
        digits="1",
        custom_field=call["CustomField"],
    )
    assert answer[0] == 200
    await journey.worker.run_until_idle()
    assert await journey.status(payload) == "confirmed"
    async with journey.res.db.sessions() as session:
        digits = await session.scalar(select(Call.input_digits))
    assert digits == "1"


async def test_the_gupshup_callback_url_from_the_setup_list_delivers_a_button_reply(
    journey: Journey, gupshup
):
    await journey.install(WHATSAPP_FIRST)
    own = await journey.api(
        "POST",
        "accounts",
        {
            "provider": "gupshup",
            "api_key": gupshup.api_key,
            "app_name": gupshup.app_name,
            "whatsapp_number": "+" + gupshup.source,
        },
    )
    await journey.api("PUT", "channels", {"whatsapp": own["id"]})
    setup = await journey.api("GET", "setup")
    [callback] = next(a["paste"] for a in setup["accounts"] if a["id"] == own["id"])
    assert callback["value"] != journey.urls.gupshup()  # the shop's own, not the platform's
    payload = await journey.order()
    sent = next(iter(gupshup.accepted.values()))
    answer = await gupshup.send_button_reply(
        callback["value"], from_phone=CUSTOMER, title="Confirm", reply_id=sent["message"]["msgid"]
    )
    assert answer[0] == 200
    await journey.worker.run_until_idle()
    assert await journey.status(payload) == "confirmed"
    async with journey.res.db.sessions() as session:
        account = await session.scalar(
            select(Message.account).where(
                Message.channel == "whatsapp", Message.direction == "out"
            )
        )
    assert account == "shop"


TEMPLATE_ID = "6f1c0b9e-order-confirm"
MAPPED = ["customer_name", "shop_name", "order_name", "amount", "city", "items"]


async def test_whatsapp_template_variables_are_the_merchants_order_fields(
    journey: Journey, gupshup
):
    gupshup.add_template(
        TEMPLATE_ID, "order_confirm", text="Hi {{1}}, {{2}}: order {{3}} of {{4}} to {{5}}: {{6}}"
    )
    whatsapp = {"template_id": TEMPLATE_ID, "template_params": MAPPED}
    await journey.install(WHATSAPP_FIRST | {"whatsapp": whatsapp})
    payload = await journey.order()
    [sent] = gupshup.accepted.values()
    customer = payload["customer"]
    address = payload["shipping_address"]
    items = ", ".join(f"{i['title']} × {i['quantity']}" for i in payload["line_items"])
    assert sent["template"] == {
        "id": TEMPLATE_ID,
        "params": [
            f"{customer['first_name']} {customer['last_name']}",
            "Demo Store",
            payload["name"],
            "₹1,499.00",
            address["city"],
            items,
        ],
    }


async def test_a_mapping_that_does_not_fit_the_template_is_refused_at_save_time(
    journey: Journey, gupshup
):
    gupshup.add_template(TEMPLATE_ID, "order_confirm", text="Order {{1}} of {{2}} for {{3}}")
    await journey.install()
    document = await journey.api("GET", "settings")
    document["whatsapp"] |= {"template_id": TEMPLATE_ID, "template_params": ["order_name"]}
    settings_url = url(journey.server, "/api/v1/shop/settings")
    async with journey.browser.put(
        settings_url, json=document, headers=journey.headers
    ) as refused:
        assert refused.status == 422
        [problem] = (await refused.json())["error"]["fields"]
    assert problem["field"] == "whatsapp.template_params"
    assert "3 variables" in problem["message"]
    saved = await journey.api("GET", "settings")
    assert saved["whatsapp"]["template_id"] == ""  # nothing half-saved
    document["whatsapp"]["template_params"] = ["order_name", "amount", "customer_name"]
    assert (await journey.api("PUT", "settings", document))["whatsapp"] == document["whatsapp"]
    # A template the account does not know (yet) cannot be counted: the mapping is kept.
    document["whatsapp"] |= {"template_id": "not-approved-yet", "template_params": ["city"]}
    assert (await journey.api("PUT", "settings", document))["whatsapp"]["template_params"] == [
        "city"
    ]


# Issue 14: the verification's loose ends (items 8, 13, 14) ----------------------------------

SHORT = 0.2  # seconds: the clients give up long before a held request is answered


class ShortTimeouts:
    """The worker's router, with Exotel clients that give up after SHORT seconds."""

    def __init__(self, router: Any, exotel_url: str, http: Any) -> None:
        self.router = router
        self.client = ExotelClient(
            http,
            account_sid=EXOTEL_ACCOUNT["account_sid"],
            api_key=EXOTEL_ACCOUNT["api_key"],
            api_token=EXOTEL_ACCOUNT["api_token"],
            api_url=exotel_url,
            timeout_seconds=SHORT,
        )

    async def __call__(self, session: Any, shop: Any, channel: str, via: str = "") -> Any:
        route = await self.router(session, shop, channel, via)
        return replace(route, client=self.client) if route.provider == "exotel" else route

    async def voice(self, session: Any, shop: Any, settings: Any) -> Any:
        return replace(await self.router.voice(session, shop, settings), client=self.client)


def short_timeouts(journey: Journey) -> None:
    """Give the journey's worker call and send handlers with short provider timeouts."""
    res = journey.res
    router = ShortTimeouts(res.router(), journey.exotel.base_url, res.http)
    desk = res.account_desk()
    journey.worker.handlers[CALL_JOB] = CallPlacer(
        res.db, res.clock, res.limiter, router, res.verifier(), desk.rejected, metrics=res.metrics
    ).handle
    journey.worker.handlers[SEND_JOB] = MessageSender(
        res.db, res.clock, res.limiter, router, res.keys, desk.rejected, metrics=res.metrics
    ).handle


async def in_doubt(journey: Journey, kind: str) -> float:
    """ordertalk_sends_in_doubt for Exotel and `kind`, as /metrics shows it."""
    async with journey.browser.get(url(journey.server, "/metrics")) as response:
        text = await response.text()
    line = f'ordertalk_sends_in_doubt_total{{kind="{kind}",provider="exotel"}}'
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


async def kinds(journey: Journey) -> list[str]:
    async with journey.res.db.sessions() as session:
        return [a.kind for a in await session.scalars(select(Activity).order_by(Activity.id))]


# Item 8: a send answered too late is never repeated ---------------------------------------


async def test_a_call_and_an_sms_answered_too_late_are_never_sent_again(journey: Journey):
    once = {"retries": 0, "retry_interval_minutes": 0}
    await journey.install({"ivr": once, "fallback": {"sms_link": once}})
    short_timeouts(journey)
    journey.exotel.hold_next(2)
    payload = await journey.order()
    # Exotel dialled the customer, then sent the link, each after our client gave up.
    await journey.exotel.release()
    assert (len(journey.exotel.placed_calls), len(journey.exotel.accepted_sms)) == (1, 1)
    async with journey.res.db.sessions() as session:
        call = await session.scalar(select(Call))
        message = await session.scalar(select(Message))
        jobs = {job.kind: job.status for job in await session.scalars(select(Job))}
    assert (call.status, call.error.split(":")[0]) == ("unconfirmed", "TIMEOUT")
    assert (message.status, message.error_code) == ("unconfirmed", "TIMEOUT")
    assert jobs[CALL_JOB] == jobs[SEND_JOB] == "done"
    # Like a worker lost mid-call: the attempt counts as unanswered and the link SMS follows.
    assert "call_not_answered" in await kinds(journey)
    assert (await in_doubt(journey, "call"), await in_doubt(journey, "sms")) == (1, 1)

    # The link may have reached them: it gets its full answer time, then the cascade ends.
    await journey.advance(59)
    assert await journey.status(payload) == "pending"
    await journey.advance(1)
    assert await journey.status(payload) == "unverified"
    assert (len(journey.exotel.calls), len(journey.exotel.sms)) == (1, 1)


# Item 13: a late job never calls or messages outside the calling window ---------------------

NIGHT = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)  # 21:30 in Kolkata, the window (9-21) closed
MORNING = datetime(2026, 1, 6, 3, 30, tzinfo=UTC)  # 09:00 in Kolkata, the window opens


async def call_jobs(journey: Journey) -> list[Job]:
    async with journey.res.db.sessions() as session:
        return list(
            await session.scalars(select(Job).where(Job.kind == CALL_JOB).order_by(Job.id))
        )


async def test_a_retry_call_run_late_at_night_waits_for_the_morning(journey: Journey):
    await journey.install()
    payload = await journey.order()  # 14:30 in Kolkata
    await journey.call_ends("no-answer")  # the retry is due at 14:40
    journey.res.clock.set(NIGHT)  # ...but the worker only gets to it at 21:30
    await journey.worker.run_until_idle()
    assert len(journey.exotel.calls) == 1
    retry = (await call_jobs(journey))[-1]
    assert (retry.status, retry.due_at, retry.attempts) == ("queued", MORNING, 0)
    assert (await kinds(journey)).count("call_deferred") == 1

    journey.res.clock.set(MORNING - timedelta(minutes=1))
    await journey.worker.run_until_idle()  # the night passes: no "not answered", no call
    assert len(journey.exotel.calls) == 1
    assert (await kinds(journey)).count("call_not_answered") == 1
    journey.res.clock.set(MORNING)
    await journey.worker.run_until_idle()
    assert len(journey.exotel.calls) == 2  # the same second attempt, at 09:00
    async with journey.res.db.sessions() as session:
        attempts = [c.attempt for c in await session.scalars(select(Call).order_by(Call.id))]
    assert attempts == [1, 2]
    await journey.call_ends("busy")
    assert journey.tags(payload) == ["ivr_retry_limit_reached"]


async def test_a_link_resend_run_late_at_night_waits_for_the_morning(journey: Journey):
    await journey.install(
        {
            "ivr": {"retries": 0, "retry_interval_minutes": 0},
            "fallback": {"sms_link": {"retries": 1, "retry_interval_minutes": 30}},
        }
    )
    payload = await journey.order()
    await journey.call_ends("no-answer")
    assert len(journey.exotel.sms) == 1  # 14:30; the resend is due at 15:00
    journey.res.clock.set(NIGHT)
    await journey.worker.run_until_idle()
    assert len(journey.exotel.sms) == 1
    assert "message_deferred" in await kinds(journey)
    journey.res.clock.set(MORNING)
    await journey.worker.run_until_idle()
    assert len(journey.exotel.sms) == 2
    # The resend waits its 30 minutes for an answer from 09:00, not from 15:00.
    await journey.advance(29)
    assert await journey.status(payload) == "pending"
    await journey.advance(1)
    assert await journey.status(payload) == "unverified"


# Item 14: nothing waits for an answer that cannot come ---------------------------------------


async def test_an_otp_never_entered_ends_at_its_deadline_with_the_final_action(
    journey: Journey,
):
    await journey.install({"verification": {"type": "otp", "final_action": "tag"}})
    payload = await journey.order()
    assert len(journey.exotel.sms) == 1
    await journey.advance(29)
    assert await journey.status(payload) == "pending"
    await journey.advance(1)
    assert await journey.status(payload) == "unverified"
    assert journey.tags(payload) == ["cod_unconfirmed"]
    assert "otp_not_entered" in await kinds(journey)
    assert len(journey.exotel.sms) == 1


async def test_a_link_sms_refused_for_good_ends_the_cascade_at_once(journey: Journey):
    await journey.install(
        {
            "ivr": {"retries": 0, "retry_interval_minutes": 0},
            "verification": {"final_action": "tag"},
        }
    )
    journey.exotel.reject_template("1102")  # the link SMS's DLT template
    payload = await journey.order()
    await journey.call_ends("no-answer")
    assert len(journey.exotel.sms) == 1  # tried once, refused: never retried
    async with journey.res.db.sessions() as session:
        message = await session.scalar(select(Message))
    assert (message.status, message.error_code) == ("failed", "TEMPLATE_NOT_APPROVED")
    # No wait for an answer to an SMS that never went: unverified now, not in an hour.
    assert await journey.status(payload) == "unverified"
    assert journey.tags(payload) == ["ivr_retry_limit_reached", "cod_unconfirmed"]
    assert "message_refused" in await kinds(journey)
    await journey.advance(24 * 60)
    assert len(journey.exotel.sms) == 1 and len(journey.exotel.calls) == 1


async def test_a_link_sms_reported_failed_later_ends_the_cascade_at_once(journey: Journey):
    await journey.install(
        {
            "ivr": {"retries": 0, "retry_interval_minutes": 0},
            "fallback": {"sms_link": {"retries": 1, "retry_interval_minutes": 30}},
            "verification": {"final_action": "tag"},
        }
    )
    payload = await journey.order()
    await journey.call_ends("no-answer")
    [sid] = journey.exotel.accepted_sms
    answer = await journey.exotel.sms_status(
        journey.urls.exotel(journey.shop_id, "sms-status"),
        sms_sid=sid,
        status="failed",
        detailed_status="DND",
        detailed_status_code="23005",
    )
    assert answer[0] == 200
    await journey.worker.run_until_idle()
    assert await journey.status(payload) == "unverified"  # no resend to a DND number
    assert journey.tags(payload) == ["ivr_retry_limit_reached", "cod_unconfirmed"]
    await journey.advance(24 * 60)
    assert len(journey.exotel.sms) == 1


async def test_the_webhook_job_starts_the_verification_and_a_redelivery_starts_none(
    journey: Journey,
):
    """The orders/create webhook's job starts the verification in its own transaction (no
    verification.order job); the same order delivered again is an update that starts
    nothing, and its customer keeps the name and email the first delivery gave."""
    await journey.install()
    payload = await journey.order()
    unnamed = {"first_name": "", "last_name": "", "email": ""}
    again = {**payload, "customer": {**payload["customer"], **unnamed}}
    endpoint = url(journey.server, "/webhooks/shopify")
    assert await journey.fake.send_webhook(endpoint, "orders/create", DOMAIN, again) == 200
    await journey.worker.run_until_idle()
    async with journey.res.db.sessions() as session:
        kinds = (await session.scalars(select(Job.kind))).all()
        order = await session.scalar(select(Order))
        lines = (
            await session.scalars(
                select(Activity.kind).where(Activity.order_id == order.id).order_by(Activity.id)
            )
        ).all()
        verifications = await session.scalar(select(func.count()).select_from(Verification))
        customer = await session.scalar(select(Customer))
    assert "verification.order" not in kinds and kinds.count(CALL_JOB) == 1
    assert verifications == 1 and order.verification_status == "pending"
    assert lines[:2] == ["order_received", "verification_started"]
    assert lines.count("order_updated") == 1 and lines.count("verification_started") == 1
    assert len(journey.exotel.calls) == 1
    assert order.customer_id == customer.id
    assert (customer.name, customer.email) == ("Asha Rao", "asha.rao@example.com")
