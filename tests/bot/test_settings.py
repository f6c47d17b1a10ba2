"""`/settings` through the real bot, app and webhook route, against the fake Bot API and the
providers' fakes over HTTP: the whole conversation with one wrong answer on each page (each
explained with the settings rule's own message and asked again), ending installed with the
setup list; an account connected with its secret messages deleted and a refused credential
explained; an agent refused; a restart in the middle of the conversation resuming it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.handlers import settings as conversation
from bot.keyboards import FINISH, SettingsAction
from flows.shops import onboarding
from main import open_resources
from providers.sandbox.exotel import FakeExotel
from providers.sandbox.telegram import ChatMessage
from storage.models import BotState, ProviderAccount, Shop
from tests.bot.conftest import NewShop, Webhook, bot_settings, clear_fsm, fsm_keys
from tests.fakes.ringcentral import FakeRingCentral

OWNER, AGENT = 7001, 7002
EXOPHONE = "08047112345"
RC_NUMBER = "+16505550100"


@pytest.fixture
async def exotel():
    fake = FakeExotel()
    fake.add_exophone(EXOPHONE)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def ringcentral(clock):
    fake = FakeRingCentral(clock=clock)
    fake.add_number(RC_NUMBER)
    await fake.start()
    yield fake
    await fake.close()


def fakes_at(exotel, ringcentral) -> dict[str, dict[str, str]]:
    """Shops' own Exotel and RingCentral accounts are checked on the fakes; the platform
    offers its Twilio (connected without a check)."""
    return {
        "twilio": {
            "account_sid": "AC" + "0" * 32,
            "auth_token": "platform-token",
            "sms_from": "+15005550001",
        },
        "exotel": {"api_url": exotel.base_url},
        "ringcentral": {"api_url": ringcentral.base_url},
    }


@pytest.fixture
def settings(database_url, telegram, port, exotel, ringcentral):
    return bot_settings(database_url, telegram, port, providers=fakes_at(exotel, ringcentral))


@pytest.fixture
async def redis_res(database_url, telegram, port, clock, redis, redis_url, exotel, ringcentral):
    """Resources whose bot keeps its conversations in Redis."""
    await clear_fsm(redis, telegram)
    settings = bot_settings(
        database_url,
        telegram,
        port,
        providers=fakes_at(exotel, ringcentral),
        redis={"url": redis_url},
    )
    async with open_resources(settings, clock) as resources:
        yield resources
    await clear_fsm(redis, telegram)


async def shop_with_token(res) -> NewShop:
    """A shop connected to Shopify (by a custom app's token): only its settings are missing."""
    access = onboarding.ShopifyAccess("shpat_demo_token")
    done = await onboarding.create_shop(
        res.db, res.queue, res.box, res.clock, "demo.myshopify.com", access
    )
    assert done.bot_link_code is not None
    return NewShop(done.shop_id, done.domain, done.bot_link_code)


class Owner:
    """The owner's side of the chat: typing, and tapping the buttons of the bot's latest
    message that has the button."""

    def __init__(self, telegram, chat_id: int = OWNER) -> None:
        self.telegram, self.chat_id = telegram, chat_id

    @property
    def texts(self) -> list[str]:
        return self.telegram.chat(self.chat_id).texts

    @property
    def last(self) -> ChatMessage:
        return self.telegram.chat(self.chat_id).from_bot[-1]

    async def type(self, text: str) -> None:
        assert await self.telegram.type(self.chat_id, text) == 200

    async def tap(self, label: str) -> None:
        for message in reversed(self.telegram.chat(self.chat_id).from_bot):
            if any(label in text for row in message.buttons for text, _ in row):
                data = message.button_data(label)
                assert await self.telegram.press(self.chat_id, message.message_id, data) == 200
                return
        raise AssertionError(f"no button {label!r} in the chat")

    async def answer_wrong_then_right(self, label: str, wrong: str, right: str, rule: str):
        """Change a typed value: the wrong answer is explained and asked again."""
        await self.tap(label)
        assert self.last.text.startswith(f"Send the {label}")
        await self.type(wrong)
        assert self.texts[-2] == conversation.WRONG.format(label=label, problems=rule)
        assert self.last.text.startswith(f"Send the {label}")
        await self.type(right)


async def shop_row(res, shop_id: int) -> Shop:
    async with res.db.sessions() as session:
        shop = await session.get(Shop, shop_id)
        assert shop is not None
        return shop


async def test_the_whole_conversation_with_a_wrong_answer_on_each_page_ends_installed(
    res, webhook, telegram, exotel
):
    shop = await shop_with_token(res)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await owner.type("/settings")
    assert owner.last.text.startswith("Settings 1/10: Contact details")
    assert "Contact phone: (empty)" in owner.last.text
    await owner.type("+919876543210")  # typed before a value was asked for
    assert owner.last.text == conversation.TAP_INSTEAD

    # Contact details.
    rule = "must be + and 8 to 15 digits, e.g. +919876543210"
    await owner.answer_wrong_then_right("Contact phone", "98765", "+919876543210", rule)
    assert "Contact phone: +919876543210" in owner.last.text
    await owner.tap("Save and proceed")
    assert (await shop_row(res, shop.shop_id)).settings["contact_phone"] == "+919876543210"

    # Order verification: a cascade that repeats the first method.
    assert owner.last.text.startswith("Settings 2/10: Order verification")
    assert "Verification type: IVR call" in owner.last.text
    await owner.tap("Then (the cascade)")
    await owner.tap("Then an IVR call")
    assert owner.texts[-2] == conversation.WRONG.format(
        label="Then (the cascade)", problems="must not repeat the verification type 'ivr'"
    )
    assert owner.last.text.startswith("Then (the cascade) (now: Nothing more)")
    await owner.tap("Nothing more")
    await owner.tap("Save and proceed")

    # Provider accounts: Exotel, its token refused once.
    assert owner.last.text.startswith("Settings 3/10: Provider accounts")
    assert "voice: no account" in owner.last.text
    await owner.tap("Connect Exotel")
    await owner.tap("Mumbai")
    await owner.type(exotel.account_sid)
    await owner.type(exotel.api_key)
    await owner.type(EXOPHONE)
    await owner.type("wrong-token")
    assert "- api_token: " in owner.texts[-2] and "Invalid API Key or Token" in owner.texts[-2]
    assert owner.last.text.startswith("Send the API token (password)")
    await owner.type(exotel.api_token)
    assert owner.texts[-2] == conversation.CONNECTED.format(
        provider="Exotel", channels="voice, sms"
    )
    assert "voice: shop exotel account" in owner.last.text
    sent = [m for m in telegram.chat(OWNER).messages if not m.from_bot]
    secrets = [m for m in sent if m.text in ("wrong-token", exotel.api_token)]
    assert len(secrets) == 2 and all(m.deleted for m in secrets)
    assert not any(m.deleted for m in sent if m not in secrets)
    await owner.tap("Save and proceed")
    assert owner.last.text.startswith("Settings 4/10: Channels")
    await owner.tap("Save and proceed")

    # IVR call: a flow id that is not digits; retries off without the interval is not saved.
    assert owner.last.text.startswith("Settings 5/10: IVR call")
    await owner.answer_wrong_then_right("Flow id", "flow-9", "1234", "must be digits only")
    assert "Flow id: 1234" in owner.last.text
    await owner.tap("Number of retries")
    await owner.type("0")
    await owner.tap("Save and proceed")
    assert owner.texts[-2] == conversation.NOT_SAVED.format(
        problems="- ivr.retry_interval_minutes: must be 0 when retries is 0"
    )
    assert owner.last.text.startswith("Settings 5/10: IVR call")
    await owner.tap("Minutes between retries")
    await owner.type("0")
    await owner.tap("Save and proceed")

    # IVR fallback: the SMS with a link, from a sender id.
    assert owner.last.text.startswith("Settings 6/10: IVR fallback")
    await owner.tap("Fallback")
    await owner.tap("SMS with a link")
    assert "SMS template: Please confirm your order" in owner.last.text
    rule = "must be letters and digits only"
    await owner.answer_wrong_then_right("SMS sender id", "SHOP IN!", "SHOPIN", rule)
    await owner.tap("Save and proceed")

    # OTP SMS, then finish.
    assert owner.last.text.startswith("Settings 7/10: OTP SMS")
    rule = "Input should be less than or equal to 5"
    await owner.answer_wrong_then_right("Times the OTP can be resent", "9", "3", rule)
    await owner.tap("Save and finish")

    done = owner.last.text
    assert done.startswith(f"{conversation.SAVED}\n\ndemo: Installed")
    assert "Nothing is missing" in done
    setup = await res.account_desk().setup(shop.shop_id)
    assert setup["status"] == "installed"
    for item in setup["accounts"][0]["paste"]:
        assert item["where"] in done and item["value"] in done
    assert "Exotel call flow 1234" in done
    saved = (await shop_row(res, shop.shop_id)).settings
    assert saved["ivr"]["flow_id"] == "1234" and saved["ivr"]["retries"] == 0
    assert saved["fallback"]["mode"] == "sms_link"
    assert saved["fallback"]["sms_link"]["sender_id"] == "SHOPIN"
    assert saved["otp"]["resend_limit"] == 3
    # The conversation is over: its buttons are stale, its state gone.
    await owner.tap("Save and finish")
    assert telegram.chat(OWNER).callback_answers[-1] == "This button is no longer in use."
    async with res.db.sessions() as session:
        assert list(await session.scalars(select(BotState))) == []


async def test_an_account_is_connected_its_secrets_deleted_a_refused_one_asked_again(
    res, webhook, telegram, ringcentral
):
    shop = await shop_with_token(res)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await owner.type("/settings")
    await owner.tap("Save and proceed")
    await owner.tap("Save and proceed")
    await owner.tap("Connect RingCentral")
    await owner.type(ringcentral.client_id)
    await owner.type("6505550100")
    assert owner.texts[-2] == conversation.WRONG.format(
        label="SMS number", problems="must be + and 8 to 15 digits, e.g. +919876543210"
    )
    await owner.type(RC_NUMBER)
    await owner.type(ringcentral.client_secret)
    assert owner.last.text.startswith("Send the JWT credential")
    # Until the check, the secret is kept only sealed in the conversation's state.
    async with res.db.sessions() as session:
        (row,) = await session.scalars(select(BotState))
        assert ringcentral.client_secret not in str(row.data)
    await owner.type("wrong-jwt")
    refusal = owner.texts[-2]
    assert refusal.startswith("The RingCentral account was not connected:\n- jwt: ")
    assert owner.last.text.startswith("Send the JWT credential")
    async with res.db.sessions() as session:
        assert list(await session.scalars(select(ProviderAccount))) == []
    await owner.type(ringcentral.jwt)
    assert owner.texts[-2] == conversation.CONNECTED.format(provider="RingCentral", channels="sms")
    assert "sms: shop ringcentral account" in owner.last.text

    secrets = {ringcentral.client_secret, ringcentral.jwt, "wrong-jwt"}
    sent = [m for m in telegram.chat(OWNER).messages if not m.from_bot]
    assert {m.text for m in sent if m.deleted} == secrets
    assert not any(secret in text for secret in secrets for text in owner.texts)
    async with res.db.sessions() as session:
        (account,) = await session.scalars(select(ProviderAccount))
        (row,) = await session.scalars(select(BotState))
    assert account.provider == "ringcentral" and row.data["account"] is None

    await owner.tap("Use the platform's Twilio (voice, sms)")
    assert owner.texts[-2] == conversation.CONNECTED.format(
        provider="Twilio", channels="voice, sms"
    )
    assert "voice: platform twilio account" in owner.last.text
    assert "sms: shop ringcentral account" in owner.last.text


async def test_an_agent_is_told_the_settings_are_the_owners(res, webhook, telegram):
    shop = await shop_with_token(res)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await owner.type("/invite")
    code = owner.last.text.split("/start ")[-1].split()[0]
    agent = Owner(telegram, AGENT)
    await agent.type(f"/start {code}")
    await owner.type("/settings")

    await agent.type("/settings")
    assert agent.texts[-1] == conversation.OWNER_ONLY
    forged = SettingsAction(action=FINISH, page=0).pack()
    await telegram.press(AGENT, agent.last.message_id, forged)
    assert telegram.chat(AGENT).callback_answers == [conversation.OWNER_ONLY]
    assert not any(text.startswith("Settings") for text in agent.texts)
    assert (await shop_row(res, shop.shop_id)).settings == {}


async def test_a_restart_in_the_middle_of_the_conversation_resumes_it(res, webhook, telegram):
    shop = await shop_with_token(res)
    owner = Owner(telegram)
    await owner.type(f"/start {shop.code}")
    await owner.type("/settings")
    await owner.tap("Save and proceed")
    await owner.tap("Verification for")
    await owner.tap("All orders")
    await owner.tap("Prev")
    await owner.tap("Contact phone")

    await webhook.restart()  # a new bot and dispatcher on the same database
    await owner.type("+919876543210")
    assert "Contact phone: +919876543210" in owner.last.text
    await owner.tap("Save and finish")
    saved = (await shop_row(res, shop.shop_id)).settings
    assert saved["contact_phone"] == "+919876543210"
    assert saved["verification"]["for_orders"] == "all"
    assert "demo: Partially installed" in owner.last.text


async def test_a_restart_while_an_account_is_connected_resumes_it_from_redis(
    redis_res, aiohttp_server, port, telegram, redis, ringcentral
):
    served = Webhook(aiohttp_server, redis_res, port)
    await served.start()
    try:
        shop = await shop_with_token(redis_res)
        owner = Owner(telegram)
        await owner.type(f"/start {shop.code}")
        await owner.type("/settings")
        await owner.tap("Save and proceed")
        await owner.tap("Save and proceed")
        await owner.tap("Connect RingCentral")
        await owner.type(ringcentral.client_id)
        await owner.type(RC_NUMBER)
        await owner.type(ringcentral.client_secret)
        stored = [await redis.get(key) async for key in redis.scan_iter(fsm_keys(telegram))]
        assert stored and not any(ringcentral.client_secret.encode() in v for v in stored if v)
        await served.restart()
        await owner.type(ringcentral.jwt)
        assert owner.texts[-2] == conversation.CONNECTED.format(
            provider="RingCentral", channels="sms"
        )
        await owner.tap("Save and finish")
    finally:
        await served.stop()
    assert "sms: shop ringcentral account" in owner.last.text
    assert [key async for key in redis.scan_iter(fsm_keys(telegram))] == []
