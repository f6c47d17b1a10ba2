"""Issue 14, item 4: a full verification's logs, as the service prints them, carry no secret
token (link tokens, callback path tokens) and no full phone number."""

from __future__ import annotations

import logging

import pytest

from flows.channels.callback_urls import PLATFORM, shop_token
from logs import JsonFormatter, TextFormatter
from tests.web.test_shopify import url
from tests.web.test_verification_journeys import (
    CUSTOMER,
    Journey,
    settings,  # noqa: F401 (the journeys' fixture)
)


def printed(caplog: pytest.LogCaptureFixture) -> str:
    """The lines `serve` would print, as JSON and on a terminal: our access log (web.access),
    not aiohttp's (off)."""
    records = [r for r in caplog.records if r.name != "aiohttp.access"]
    formatters = (JsonFormatter(), TextFormatter())
    return "\n".join(f.format(record) for record in records for f in formatters)


async def test_a_full_verification_logs_no_token_and_no_phone(
    journey: Journey, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)
    await journey.install(
        {"ivr": {"retries": 0, "retry_interval_minutes": 0}, "fallback": {"mode": "sms_link"}}
    )
    first = await journey.order()
    await journey.call_ends("no-answer")
    link = journey.link_token()
    async with journey.browser.get(url(journey.server, f"/v/{link}")) as page:
        assert page.status == 200
    assert (await journey.press_on_page(link, "confirm")).status == 200
    assert await journey.status(first) == "confirmed"
    async with journey.browser.get(url(journey.server, f"/v/{link}x")) as page:
        assert page.status == 404  # a forged link is logged as a route, too

    second = await journey.order()
    await journey.press("2")
    await journey.call_ends("completed")
    assert await journey.status(second) == "cancelled"
    await journey.missed_call()  # no pending order left: logged and dropped
    gupshup = journey.urls.gupshup()
    async with journey.browser.post(gupshup, json={"type": "message", "payload": {}}) as answer:
        assert answer.status == 400

    secret = journey.res.settings.secret_key()
    tokens = {
        link,
        shop_token(secret, journey.shop_id),
        shop_token(secret, PLATFORM),
        shop_token(secret, journey.shop_id).partition(".")[2],
    }
    digits = CUSTOMER.removeprefix("+")
    phones = {CUSTOMER, digits, digits[2:], "0" + digits[2:]}
    text = printed(caplog)
    assert "/v/{token}" in text and "/webhooks/exotel/{token}/passthru" in text
    for secret_text in tokens | phones:
        assert secret_text not in text, secret_text
