"""The sandbox's merchant chat pane, driven as its page drives it: the merchant's Telegram chat
with the real aiogram bot, through the simulated Bot API that `main.py sandbox` runs and the
bot's webhook route on the real app (SQLite, as the sandbox). Linking with the demo shop's code,
the /orders report with its chart photo fetched and opened, a button pressed, a customer's
message relayed into the chat and answered from it, and the pane's refusals."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import matplotlib.image
import pytest
from aiohttp import web

from bot.handlers import fallback, link
from bot.webhook import WebhookRegistration
from clock import OffsetClock
from main import (
    make_worker,
    merchant_bot,
    open_resources,
    open_sandbox,
    sandbox_app,
    sandbox_settings,
    schedule_periodic,
)
from providers.sandbox.shop import SHOP_NAME, TWILIO_NUMBER
from providers.sandbox.world import MERCHANT_CHAT, SandboxWorld
from settings import Settings
from tests.web import test_sandbox_api
from tests.web.test_sandbox_api import (
    CUSTOMER,
    WAIT_SECONDS,
    Driver,
    next_morning,
    order_of,
    phone_of,
)
from tests.web.test_shopify import free_port

database_url = test_sandbox_api.database_url  # the sandbox runs on SQLite


class Pane(Driver):
    """The sandbox page's chat pane: reads the chat, types, presses buttons."""

    async def chat(self) -> dict[str, Any]:
        status, chat = await self.get("/sandbox/api/chat")
        assert status == 200, chat
        return chat

    async def type(self, text: str, reply_to: int | None = None) -> dict[str, Any]:
        status, answer = await self.post("/sandbox/api/chat/messages", _text(text, reply_to))
        assert status == 201, answer
        return answer["chat"]

    async def press(self, message: dict[str, Any], label: str) -> dict[str, Any]:
        (data,) = [b["data"] for row in message["buttons"] for b in row if b["text"] == label]
        status, answer = await self.post(
            f"/sandbox/api/chat/messages/{message['id']}/press", {"data": data}
        )
        assert status == 200, answer
        return answer["chat"]

    async def chat_until(self, check, what: str) -> Any:
        return await self.until(check, what, fetch=self.chat)


def _text(text: str, reply_to: int | None) -> dict[str, Any]:
    return {"text": text} | ({"reply_to": reply_to} if reply_to is not None else {})


def bot_texts(chat: dict[str, Any]) -> list[str]:
    return [m["text"] for m in chat["messages"] if m["from"] == "bot"]


def last_with(chat: dict[str, Any], label: str) -> dict[str, Any]:
    """The bot's latest message with a button `label`."""
    return next(
        m
        for m in reversed(chat["messages"])
        if any(b["text"] == label for row in m["buttons"] for b in row)
    )


@pytest.fixture
async def pane(database_url) -> AsyncIterator[Pane]:
    """What `main.py sandbox` runs: the world (with the simulated Bot API), the real app with
    the sandbox's routes and the bot's webhook route, the webhook registered, the worker."""
    clock = OffsetClock()
    clock.advance_to(next_morning(clock.now()))
    world = SandboxWorld(clock, ring_out_after=0.2, delivery_after=0.05)
    await world.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = sandbox_settings(Settings(database={"url": database_url}), world, base)
    try:
        async with open_resources(settings, clock) as res:
            simulation = await open_sandbox(res, world, clock)
            await schedule_periodic(res)  # the alerts' scan among them
            bot = merchant_bot(res)
            assert bot is not None
            runner = web.AppRunner(sandbox_app(res, simulation, bot), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            registration = WebhookRegistration(bot)
            await registration.run()
            assert registration.registered.is_set()
            worker = make_worker(res)
            task = asyncio.create_task(worker.run())
            try:
                async with aiohttp.ClientSession() as http:
                    yield Pane(base, http, world)
            finally:
                worker.stop()
                await task
                await world.stop()
                await runner.cleanup()
                await bot.close()
    finally:
        await world.stop()


async def linked(pane: Pane) -> dict[str, Any]:
    code = (await pane.chat())["link_code"]
    chat = await pane.type(f"/start {code}")
    assert chat["linked"] == {"shop": SHOP_NAME, "role": "owner"}
    return chat


async def test_the_newcomer_links_the_demo_shop_with_the_code_the_pane_shows(pane: Pane):
    chat = await pane.chat()
    assert chat["bot"]["username"] == "ordertalk_sandbox_bot"
    assert chat["linked"] is None and chat["messages"] == []
    code = chat["link_code"]
    assert len(code) == 10 and code.isalnum()

    # An unlinked chat is told how to link, and nothing else.
    chat = await pane.type("/orders")
    assert bot_texts(chat) == [fallback.NOT_LINKED]
    chat = await pane.type("/start NOTACODE00")
    assert bot_texts(chat)[-2:] == [link.EXPLAIN[link.Outcome.WRONG], link.ASK_AGAIN]
    assert chat["linked"] is None

    chat = await pane.type(f"/start {code}")
    assert bot_texts(chat)[-1] == link.LINKED.format(shop=SHOP_NAME, role="owner")
    assert chat["linked"] == {"shop": SHOP_NAME, "role": "owner"}
    # The merchant's own messages are shown too, in order, each once.
    mine = [m["text"] for m in chat["messages"] if m["from"] == "merchant"]
    assert mine == ["/orders", "/start NOTACODE00", f"/start {code}"]
    # The Bot API's requests are in the sandbox's request log, the bot's token masked.
    requests = [r for r in (await pane.state())["requests"] if r["party"] == "telegram"]
    assert {"setWebhook", f"sendMessage to chat {MERCHANT_CHAT}"} <= {
        r["summary"] for r in requests
    }
    assert {r["path"] for r in requests} >= {"/bot<token>/sendMessage", "/bot<token>/setWebhook"}
    assert not any(pane.world.telegram.token.split(":")[1] in str(r) for r in requests)


async def test_orders_report_with_its_chart_and_an_order_card_from_a_button(pane: Pane):
    order = await pane.order(CUSTOMER)
    await pane.until(
        lambda s: order_of(s, order["id"])["verification_status"] != "none",
        "the order in our records",
    )
    await linked(pane)

    chat = await pane.type("/orders")
    report = last_with(chat, "Chart")
    assert order["name"] in report["text"]

    chat = await pane.press(report, "Chart")
    photo = next(m for m in reversed(chat["messages"]) if m["file"])
    assert photo["file"]["kind"] == "photo" and photo["text"].startswith(f"Orders of {SHOP_NAME}")
    async with pane.http.get(pane.base + photo["file"]["url"]) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        png = await response.read()
    height, width, _ = matplotlib.image.imread(io.BytesIO(png), format="png").shape
    assert width > 300 and height > 200

    # A report row's button opens the order's card, with its actions.
    chat = await pane.press(last_with(chat, order["name"]), order["name"])
    card = last_with(chat, "Cancel order")
    assert card["text"].startswith(f"Order {order['name']}")

    chat = await pane.press(report, "CSV")
    document = next(m for m in reversed(chat["messages"]) if m["file"])
    assert document["file"]["kind"] == "document"
    async with pane.http.get(pane.base + document["file"]["url"]) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        assert order["name"] in await response.text()


async def test_a_customers_message_is_relayed_into_the_chat_and_answered_from_it(pane: Pane):
    await pane.use_twilio("sms")
    await linked(pane)
    status, _ = await pane.post(
        f"/sandbox/api/phones/{CUSTOMER}/reply", {"channel": "sms", "text": "Is it shipped?"}
    )
    assert status == 200

    message = await relayed_into_chat(pane, "Is it shipped?")
    assert message["text"].startswith(f"Message from {CUSTOMER} on SMS")

    # A Telegram reply to the forwarded message answers the customer, from the shop's number.
    chat = await pane.type("It leaves today.", reply_to=message["id"])
    assert bot_texts(chat)[-1] == f"Sent to {CUSTOMER}."
    assert chat["messages"][-2]["reply_to"] == message["id"]
    received = await pane.until(
        lambda s: [
            line for line in phone_of(s, CUSTOMER)["threads"]["sms"] if line["direction"] == "out"
        ],
        "the answer on the phone",
    )
    assert [(line["body"], line["number"]) for line in received] == [
        ("It leaves today.", TWILIO_NUMBER)
    ]


async def test_the_pane_refuses_what_telegram_would_not_let_a_user_do(pane: Pane):
    status, answer = await pane.post("/sandbox/api/chat/messages", {"text": "  "})
    assert status == 422
    assert answer["error"]["fields"][0]["field"] == "text"
    status, answer = await pane.post("/sandbox/api/chat/messages", {"text": "hi", "reply_to": 99})
    assert status == 404, answer

    chat = await pane.type("/start")
    asked = chat["messages"][-1]
    status, answer = await pane.post(
        f"/sandbox/api/chat/messages/{asked['id']}/press", {"data": "made-up"}
    )
    assert status == 404, answer
    for path in ("/sandbox/api/chat/messages/x/press", "/sandbox/api/chat/messages/999/press"):
        status, answer = await pane.post(path, {"data": "made-up"})
        assert status == 404, answer
    async with pane.http.get(f"{pane.base}/sandbox/api/chat/messages/{asked['id']}/file") as r:
        assert r.status == 404
    assert len((await pane.chat())["messages"]) == len(chat["messages"])


async def relayed_into_chat(pane: Pane, what: str) -> dict[str, Any]:
    """The bot's message containing `what` once an alert brought it (the clock moved on so
    that the alerts' scan, every 10 seconds of it, runs at once)."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        chat = await pane.chat()
        found = [m for m in chat["messages"] if m["from"] == "bot" and what in m["text"]]
        if found:
            return found[-1]
        await pane.post("/sandbox/api/time", {"minutes": 1})
        await asyncio.sleep(0.2)
    pytest.fail(f"no alert with {what!r} reached the merchant's chat")


async def test_a_callback_request_is_alerted_and_its_call_button_rings_the_agent_first(
    pane: Pane,
):
    await linked(pane)
    agent_phone = "+919876500050"
    chat = await pane.type(f"/myphone {agent_phone}")
    assert agent_phone in bot_texts(chat)[-1]
    order = await pane.order(CUSTOMER)
    await pane.until(lambda s: phone_of(s, CUSTOMER)["ringing"], "the verification call")
    status, answered = await pane.post(f"/sandbox/api/phones/{CUSTOMER}/answer", {"digits": "3"})
    assert status == 200, answered

    alert = await relayed_into_chat(pane, "Callback requested")
    assert CUSTOMER in alert["text"] and order["name"] in alert["text"]
    chat = await pane.press(alert, f"Call {CUSTOMER}")
    assert agent_phone in bot_texts(chat)[-1]
    # The shop's voice account rings the agent's own phone first.
    await pane.until(
        lambda s: any(p["number"] == agent_phone and p["ringing"] for p in s["phones"]),
        "the agent's phone ringing",
    )
