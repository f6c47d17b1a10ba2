"""`/status`: the shop's install status and what is missing, from the same setup list as the
admin API's `GET /api/v1/shop/setup`; what to paste where only for the owner."""

from __future__ import annotations

import re

import pytest

from bot.handlers import status
from tests.bot.conftest import bot_settings, new_shop

OWNER, AGENT = 5001, 5002
EXOTEL = {"account_sid": "platform-sid", "api_key": "platform-key", "api_token": "platform-token"}


@pytest.fixture
def settings(database_url, telegram, port):
    return bot_settings(database_url, telegram, port, providers={"exotel": EXOTEL})


async def test_status_shows_the_setup_list_and_only_the_owner_the_urls(res, webhook, telegram):
    shop = await new_shop(res, "demo")
    await telegram.type(OWNER, f"/start {shop.code}")
    await telegram.type(OWNER, "/status")
    text = telegram.chat(OWNER).texts[-1]
    setup = await res.account_desk().setup(shop.shop_id)
    assert text.startswith("demo: Partially installed")
    assert setup["missing"] and all(p["message"] in text for p in setup["missing"])
    assert "voice: no account" in text

    await res.account_desk().connect(shop.shop_id, {"provider": "exotel", "platform": True})
    await telegram.type(OWNER, "/invite")
    code = re.search(r"/start (\w+)", telegram.chat(OWNER).texts[-1]).group(1)
    await telegram.type(AGENT, f"/start {code}")

    setup = await res.account_desk().setup(shop.shop_id)
    urls = {item["value"] for a in setup["accounts"] for item in a["paste"]}
    assert len(urls) == 2  # Exotel's Passthru and inbound-SMS URLs
    await telegram.type(OWNER, "/status")
    owner_view = telegram.chat(OWNER).texts[-1]
    assert "voice: platform exotel account" in owner_view
    assert status.PASTE in owner_view and all(url in owner_view for url in urls)
    await telegram.type(AGENT, "/status")
    agent_view = telegram.chat(AGENT).texts[-1]
    assert "voice: platform exotel account" in agent_view
    assert status.PASTE_IS_THE_OWNERS in agent_view
    assert not any(url in agent_view for url in urls)
