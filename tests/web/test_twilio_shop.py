"""A shop that calls and texts through its own Twilio account, set up as a merchant outside
the sandbox would (OAuth install, settings and account through the admin API), verified end
to end against the fake Shopify and the fake Twilio over HTTP: our TwiML IVR with keypad 1,
no answer then the link SMS by Twilio, OTP by Twilio SMS, the call in the shop's language,
and a token rotated at Twilio mid-run (the channel waits, the merchant is alerted, nothing is
lost or sent twice once the new token is connected)."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import aiohttp
import jwt
import pytest
from sqlalchemy import func, select

from providers.sandbox.shopify import FakeShopify, order_payload
from providers.sandbox.twilio import FakeTwilio
from settings import Settings
from storage.models import Activity, Call, Job, Message, Order, ProviderAccount, Shop
from tests.conftest import SECURITY
from tests.web.test_shopify import DOMAIN, TOKEN, connect, free_port, url

APP_KEY = "twilio-shop-app-key"
APP_SECRET = "shpss_" + "0123456789abcdef" * 2
NUMBER = "+14155550100"
CUSTOMER = "+14155550123"
LINK = re.compile(r"https?://\S+/v/([A-Za-z0-9_-]+)")
SETTINGS: dict[str, Any] = {
    "contact_phone": "+14155550199",
    "verification": {"window_first_call": False},
    "ivr": {"retries": 0, "retry_interval_minutes": 0, "timezone": "UTC"},
    "fallback": {"mode": "sms_link"},
}


@pytest.fixture
async def shopify():
    fake = FakeShopify(api_key=APP_KEY, api_secret=APP_SECRET)
    await fake.start()
    fake.add_shop(DOMAIN, TOKEN, name="Acme", country_code="US", iana_timezone="UTC")
    yield fake
    await fake.close()


@pytest.fixture
async def twilio():
    fake = FakeTwilio()
    fake.add_number(NUMBER)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(database_url, shopify, twilio, port):
    """No platform account at all: the shop brings its own Twilio."""
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        shopify={
            "api_key": APP_KEY,
            "api_secret": APP_SECRET,
            "admin_url": shopify.admin_url_template,
        },
        providers={"twilio": {"api_url": twilio.base_url}},
    )


@pytest.fixture
async def server(aiohttp_server, app_factory, db, queue, port):
    return await aiohttp_server(app_factory(db, queue), port=port)


@pytest.fixture
async def browser():
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


class Merchant:
    """The merchant's side: install, the admin API with the shop's key."""

    def __init__(self, browser, server, worker, twilio, shopify, res) -> None:
        self.browser, self.server, self.worker = browser, server, worker
        self.twilio, self.shopify, self.res = twilio, shopify, res
        self.twilio_token = twilio.auth_token
        self.headers: dict[str, str] = {}

    async def install(self, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        issued = await connect(self.browser, self.server, self.worker)
        self.headers = {"Authorization": f"Bearer {issued['api_key']}"}
        document = await self.api("GET", "settings")
        for section, values in (SETTINGS | (changes or {})).items():
            document[section] = (
                {**document[section], **values} if isinstance(values, dict) else values
            )
        await self.api("PUT", "settings", document)
        await self.connect_twilio()
        return await self.api("GET", "status")

    async def connect_twilio(self, expect: int = 201) -> dict[str, Any]:
        body = {
            "provider": "twilio",
            "account_sid": self.twilio.account_sid,
            "auth_token": self.twilio.auth_token,
            "numbers": [NUMBER],
        }
        return await self.api("POST", "accounts", body, expect=expect)

    async def api(self, method: str, path: str, body: Any = None, expect: int = 0) -> Any:
        async with self.browser.request(
            method, url(self.server, f"/api/v1/shop/{path}"), json=body, headers=self.headers
        ) as response:
            assert response.status == (expect or 200), await response.text()
            return await response.json()

    async def order(self) -> dict[str, Any]:
        self.res.clock.advance(timedelta(seconds=1))
        payload = order_payload()
        for address in ("shipping_address", "billing_address"):
            payload[address] = {**payload[address], "phone": CUSTOMER, "country_code": "US"}
        self.shopify.add_order(DOMAIN, payload)
        endpoint = url(self.server, "/webhooks/shopify")
        assert await self.shopify.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200
        await self.worker.run_until_idle()
        return payload

    async def answer(self) -> tuple[str, ET.Element]:
        """The customer picks up the last call: Twilio fetches our TwiML."""
        placed = self.twilio.calls[-1]
        sid = await self.call_sid()
        status, twiml = await self.twilio.post_voice(str(placed["Url"]), sid)
        assert status == 200, twiml
        return sid, ET.fromstring(twiml)

    async def call_sid(self) -> str:
        async with self.res.db.sessions() as session:
            call = await session.scalar(select(Call).order_by(Call.id.desc()).limit(1))
        return call.provider_call_id

    async def verification(self, payload: dict[str, Any]) -> str:
        async with self.res.db.sessions() as session:
            return await session.scalar(
                select(Order.verification_status).where(
                    Order.shopify_order_id == str(payload["id"])
                )
            )

    def tags(self, payload: dict[str, Any]) -> list[str]:
        return self.shopify.tags(DOMAIN, payload["id"])


@pytest.fixture
def merchant(browser, server, worker, twilio, shopify, resources) -> Merchant:
    return Merchant(browser, server, worker, twilio, shopify, resources)


async def test_a_twilio_only_shop_is_installed_and_keypad_1_confirms(merchant: Merchant):
    status = await merchant.install()
    assert status["status"] == "installed", status["problems"]
    payload = await merchant.order()
    [placed] = merchant.twilio.calls
    assert (placed["To"], placed["From"]) == (CUSTOMER, NUMBER)
    assert str(placed["Url"]).endswith("/webhooks/twilio/voice")
    sid, twiml = await merchant.answer()
    gather = twiml.find("Gather")
    assert "Press 1 to confirm" in gather.find("Say").text
    status, goodbye = await merchant.twilio.send_gather(gather.get("action"), sid, "1")
    assert status == 200 and ET.fromstring(goodbye).find("Hangup") is not None
    await merchant.worker.run_until_idle()
    assert await merchant.verification(payload) == "confirmed"
    assert merchant.tags(payload) == ["cod_confirmed"]
    async with merchant.res.db.sessions() as session:
        call = await session.scalar(select(Call))
    assert (call.provider, call.account, call.input_digits) == ("twilio", "shop", "1")


async def test_no_answer_then_the_link_sms_by_twilio_confirms_on_the_page(merchant: Merchant):
    await merchant.install()
    payload = await merchant.order()
    sid = await merchant.call_sid()
    status_url = url(merchant.server, "/webhooks/twilio/voice/status")
    assert (await merchant.twilio.send_call_status(status_url, sid, "no-answer", 0))[0] == 204
    await merchant.worker.run_until_idle()
    [sms] = merchant.twilio.messages
    assert (sms["To"], sms["From"]) == (CUSTOMER, NUMBER)
    token = LINK.search(str(sms["Body"])).group(1)
    async with merchant.browser.post(
        url(merchant.server, f"/v/{token}"), data={"action": "confirm"}
    ) as response:
        assert response.status == 200
    await merchant.worker.run_until_idle()
    assert await merchant.verification(payload) == "confirmed"
    assert merchant.tags(payload) == ["ivr_retry_limit_reached", "cod_confirmed"]
    async with merchant.res.db.sessions() as session:
        message = await session.scalar(select(Message))
    assert (message.provider, message.account, message.status) == ("twilio", "shop", "sent")


async def test_otp_by_twilio_sms(merchant: Merchant, clock):
    status = await merchant.install({"verification": {"type": "otp"}})
    assert status["status"] == "installed", status["problems"]
    payload = await merchant.order()
    assert merchant.twilio.calls == []
    [sms] = merchant.twilio.messages
    code = re.search(r"\b(\d{6})\b", str(sms["Body"])).group(1)
    now = int(clock.now().timestamp())
    claims = {"dest": f"https://{DOMAIN}", "aud": APP_KEY, "exp": now + 60, "nbf": now}
    claims["sub"] = f"gid://shopify/Customer/{payload['customer']['id']}"  # the buyer
    headers = {"Authorization": f"Bearer {jwt.encode(claims, APP_SECRET, algorithm='HS256')}"}
    async with merchant.browser.post(
        url(merchant.server, "/api/otp/verify"),
        json={"order": str(payload["id"]), "code": code},
        headers=headers,
    ) as response:
        assert response.status == 200
        assert (await response.json())["result"] == "verified"
    await merchant.worker.run_until_idle()
    assert merchant.tags(payload) == ["otp_verified"]


async def test_a_hindi_shop_is_called_in_hindi(merchant: Merchant):
    merchant.shopify.add_shop(DOMAIN, TOKEN, name="Acme", country_code="US", locale="hi")
    await merchant.install()
    async with merchant.res.db.sessions() as session:
        assert await session.scalar(select(Shop.language)) == "hi"  # from Shopify
    await merchant.order()
    _sid, twiml = await merchant.answer()
    say = twiml.find("Gather").find("Say")
    assert "दबाएँ" in say.text and say.get("language", "").startswith("hi")


async def test_an_english_choice_overrides_the_shops_hindi(merchant: Merchant):
    merchant.shopify.add_shop(DOMAIN, TOKEN, name="Acme", country_code="US", locale="hi")
    await merchant.install({"language": "en"})
    await merchant.order()
    _sid, twiml = await merchant.answer()
    assert "Press 1" in twiml.find("Gather").find("Say").text


async def count(res, model, *where) -> int:
    async with res.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def test_a_token_refused_mid_run_pauses_alerts_and_resumes(merchant: Merchant):
    await merchant.install()
    merchant.twilio.auth_token = "rotated-at-twilio"  # the old token now gets 401
    payload = await merchant.order()
    res = merchant.res
    assert merchant.twilio.calls == []
    status = await merchant.api("GET", "status")
    assert status["status"] == "partially_installed"
    [problem] = status["problems"]
    assert problem["field"].startswith("accounts.") and "refused" in problem["message"]
    async with res.db.sessions() as session:
        alert = await session.scalar(select(Activity).where(Activity.kind == "account_rejected"))
        job = await session.scalar(select(Job).where(Job.kind == "verification.call"))
        account = await session.scalar(select(ProviderAccount))
    assert alert.detail["account_id"] == account.id and account.status == "rejected"
    assert (job.status, job.attempts) == ("queued", 0)  # waiting, not failing towards dead
    # Waiting does not spend the verification: a later look still finds the account refused.
    res.clock.advance(timedelta(minutes=10))
    await merchant.worker.run_until_idle()
    assert merchant.twilio.calls == [] and await merchant.verification(payload) == "pending"

    account_json = await merchant.connect_twilio()  # the merchant enters the new token
    assert account_json["status"] == "active" and account_json["id"] == account.id
    assert (await merchant.api("GET", "status"))["status"] == "installed"
    await merchant.worker.run_until_idle()
    assert len(merchant.twilio.calls) == 1
    sid, twiml = await merchant.answer()
    await merchant.twilio.send_gather(twiml.find("Gather").get("action"), sid, "1")
    await merchant.worker.run_until_idle()
    assert await merchant.verification(payload) == "confirmed"
    res.clock.advance(timedelta(hours=1))
    await merchant.worker.run_until_idle()
    assert len(merchant.twilio.calls) == 1 and await count(res, Call) == 1


async def test_a_daily_check_finds_a_refused_account_and_its_recovery(merchant: Merchant):
    await merchant.install()
    res = merchant.res
    merchant.twilio.auth_token = "rotated-at-twilio"
    res.clock.advance(timedelta(days=1))
    await merchant.worker.run_until_idle()
    status = await merchant.api("GET", "status")
    assert status["status"] == "partially_installed"
    assert "auth_token" in status["problems"][0]["message"]
    assert await count(res, Activity, Activity.kind == "account_rejected") == 1

    merchant.twilio.auth_token = merchant.twilio_token  # put back at Twilio
    res.clock.advance(timedelta(days=1))
    await merchant.worker.run_until_idle()
    assert (await merchant.api("GET", "status"))["status"] == "installed"
    async with res.db.sessions() as session:
        checks = await session.scalar(
            select(func.count()).where(Job.kind == "accounts.check", Job.status == "queued")
        )
    assert checks == 1  # the next day's


async def test_business_events_are_logged_at_info(merchant: Merchant, caplog):
    await merchant.install()
    with caplog.at_level(logging.INFO):
        payload = await merchant.order()
        sid, twiml = await merchant.answer()
        await merchant.twilio.send_gather(twiml.find("Gather").get("action"), sid, "1")
        await merchant.worker.run_until_idle()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    name = payload["name"]
    assert any(f"order {name} received (cod" in line for line in lines), lines
    assert any("placed through the shop twilio account" in line for line in lines), lines
    assert any(f"order {name} verification confirmed" in line for line in lines), lines


async def test_an_sms_refused_mid_run_waits_and_goes_out_once(merchant: Merchant):
    await merchant.install({"verification": {"type": "otp"}})
    merchant.twilio.auth_token = "rotated-at-twilio"
    await merchant.order()
    assert merchant.twilio.messages == []
    async with merchant.res.db.sessions() as session:
        message = await session.scalar(select(Message))
        job = await session.scalar(select(Job).where(Job.kind == "message.send"))
    assert message.status == "queued" and (job.status, job.attempts) == ("queued", 0)
    assert (await merchant.api("GET", "status"))["status"] == "partially_installed"
    await merchant.connect_twilio()
    await merchant.worker.run_until_idle()
    merchant.res.clock.advance(timedelta(hours=1))
    await merchant.worker.run_until_idle()
    assert len(merchant.twilio.messages) == 1
    async with merchant.res.db.sessions() as session:
        message = await session.scalar(select(Message))
    assert (message.status, message.account) == ("sent", "shop")


async def test_a_shops_own_twilio_account_speaks_only_for_that_shop(merchant: Merchant):
    await merchant.install()
    res = merchant.res
    now = res.clock.now()
    other_sid = "CA" + "9" * 32
    async with res.db.transaction() as session:
        other = Shop(domain="other.myshopify.com", name="Other", created_at=now, updated_at=now)
        session.add(other)
        await session.flush()
        order = Order(
            shop_id=other.id,
            shopify_order_id="77",
            name="#7001",
            number=7001,
            phone=CUSTOMER,
            total_amount="10.00",
            currency="USD",
            payment_method="cod",
            placed_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(order)
        await session.flush()
        session.add(
            Call(
                shop_id=other.id,
                order_id=order.id,
                provider="twilio",
                provider_call_id=other_sid,
                to_phone=CUSTOMER,
                created_at=now,
            )
        )
    # Signed with the demo shop's own token, about the other shop's call.
    voice_url = url(merchant.server, "/webhooks/twilio/voice")
    status, twiml = await merchant.twilio.post_voice(voice_url, other_sid)
    assert status == 200 and ET.fromstring(twiml).find("Gather") is None
    gather_url = url(merchant.server, "/webhooks/twilio/voice/gather?try=1")
    assert (await merchant.twilio.send_gather(gather_url, other_sid, "1"))[0] == 200
    status_url = url(merchant.server, "/webhooks/twilio/voice/status")
    assert (await merchant.twilio.send_call_status(status_url, other_sid, "completed", 9))[
        0
    ] == 204
    await merchant.worker.run_until_idle()
    async with res.db.sessions() as session:
        call = await session.scalar(select(Call).where(Call.provider_call_id == other_sid))
    assert (call.status, call.input_digits, call.duration_seconds) == ("queued", "", 0)
