"""`POST /webhooks/telegram`: the merchant bot's updates in webhook mode.

Telegram sends back the secret token we gave it with `setWebhook`; a request without it, or
with another, is refused 401 before its body is read. The update is handled before the answer,
so Telegram's own retry covers a process that dies midway, and one chat's updates are handled
in order.
"""

from __future__ import annotations

import json

from aiohttp import web

from bot.app import WEBHOOK_PATH, BadUpdate, MerchantBot
from web.errors import field_problem, json_error

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
merchant_bot_key = web.AppKey("merchant_bot", MerchantBot)


def setup_routes(app: web.Application, merchant_bot: MerchantBot) -> None:
    app[merchant_bot_key] = merchant_bot
    app.router.add_post(WEBHOOK_PATH, receive)


async def receive(request: web.Request) -> web.Response:
    merchant_bot = request.app[merchant_bot_key]
    if not merchant_bot.secret_matches(request.headers.get(SECRET_HEADER, "")):
        return json_error(401, f"{SECRET_HEADER}: missing or wrong")
    try:
        payload = json.loads(await request.read())
    except ValueError:
        return json_error(400, "body: not JSON", fields=[field_problem("body", "not JSON")])
    try:
        await merchant_bot.handle_raw(payload)
    except BadUpdate as exc:
        return json_error(400, str(exc), fields=[field_problem(exc.field, exc.message)])
    return web.json_response({})
