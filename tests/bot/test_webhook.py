"""Webhook mode: the webhook registered with our public URL and secret, requests without that
secret refused, bad bodies answered 400 naming the field, a failing update answered politely,
and a conversation that resumes after a restart (its state in the database or in Redis)."""

from __future__ import annotations

import pytest

from bot.app import WEBHOOK_PATH, webhook_secret
from bot.handlers import errors, fallback, link
from main import open_resources
from tests.bot.conftest import Webhook, bot_settings, clear_fsm, fsm_keys, new_shop
from tests.conftest import SECRET_KEY
from web.telegram import SECRET_HEADER

CHAT = 3001


async def post(res, webhook, body: bytes, secret: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    url = f"{res.settings.server.public_url}{WEBHOOK_PATH}"
    async with res.http.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_the_webhook_is_registered_with_our_url_secret_and_commands(res, webhook, telegram):
    assert telegram.webhook_url == f"{res.settings.server.public_url}/webhooks/telegram"
    assert telegram.webhook_secret == webhook_secret(SECRET_KEY)
    assert {c["command"] for c in telegram.commands} >= {"help", "invite", "agents", "cancel"}
    (call,) = telegram.called("setWebhook")
    assert '"callback_query"' in call["allowed_updates"]


async def test_a_wrong_or_missing_secret_is_refused_and_bad_bodies_named(res, webhook, telegram):
    update = b'{"update_id": 7, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "/help"}}'  # noqa: E501
    for secret in (None, "", "0" * 64, webhook_secret(SECRET_KEY)[:-1] + "x"):
        status, body = await post(res, webhook, update, secret)
        assert status == 401 and SECRET_HEADER in body["error"]["message"]
    assert telegram.chat(5).texts == []

    good = webhook_secret(SECRET_KEY)
    status, body = await post(res, webhook, b"{not json", good)
    assert status == 400 and body["error"]["fields"] == [{"field": "body", "message": "not JSON"}]
    status, body = await post(res, webhook, b'{"message": {"text": "x"}}', good)
    assert status == 400 and body["error"]["fields"][0]["field"] == "update_id"

    assert await post(res, webhook, update, good) == (200, {})
    assert telegram.chat(5).texts == [fallback.NOT_LINKED]


async def test_an_update_that_fails_is_answered_politely_and_the_next_one_works(
    res, webhook, telegram
):
    telegram.fail_next("sendMessage", 500, "Internal Server Error")
    assert await telegram.type(CHAT, "hello") == 200
    assert telegram.chat(CHAT).texts == [errors.SORRY]
    assert await telegram.type(CHAT, "hello") == 200
    assert telegram.chat(CHAT).texts == [errors.SORRY, fallback.NOT_LINKED]


async def test_a_restart_in_the_middle_of_linking_resumes_it_from_the_database(
    res, webhook, telegram
):
    shop = await new_shop(res, "demo")
    await telegram.type(CHAT, "/start")
    await webhook.restart()
    await telegram.type(CHAT, shop.code)
    assert telegram.chat(CHAT).texts == [
        link.ASK_CODE,
        link.LINKED.format(shop="demo", role="owner"),
    ]


@pytest.fixture
async def redis_res(database_url, telegram, port, clock, redis, redis_url):
    await clear_fsm(redis, telegram)
    settings = bot_settings(database_url, telegram, port, redis={"url": redis_url})
    async with open_resources(settings, clock) as resources:
        yield resources
    await clear_fsm(redis, telegram)


async def test_a_restart_in_the_middle_of_linking_resumes_it_from_redis(
    redis_res, aiohttp_server, port, telegram, redis
):
    served = Webhook(aiohttp_server, redis_res, port)
    await served.start()
    try:
        shop = await new_shop(redis_res, "demo")
        await telegram.type(CHAT, "/start")
        assert [key async for key in redis.scan_iter(fsm_keys(telegram))]
        await served.restart()
        await telegram.type(CHAT, "wrong")
        await served.restart()
        await telegram.type(CHAT, shop.code)
    finally:
        await served.stop()
    assert telegram.chat(CHAT).texts == [
        link.ASK_CODE,
        link.EXPLAIN[link.Outcome.WRONG],
        link.ASK_AGAIN,
        link.LINKED.format(shop="demo", role="owner"),
    ]
    assert [key async for key in redis.scan_iter(fsm_keys(telegram))] == []
