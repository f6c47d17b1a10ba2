"""The notifications admin API through the real app: previews (an order's values or sample
values, SMS encoding, segments and credits), the shipment webhook's URL, and billing."""

from __future__ import annotations

from datetime import timedelta

from tests.web.notifications.helpers import (
    CONSENTING,
    NOT_CONSENTING,
    NOTIFYING,
    fulfillment,
    paid_order,
    webhook,
)


async def call(journey, method: str, path: str, body=None) -> tuple[int, dict]:
    async with journey.browser.request(
        method, str(journey.server.make_url(f"/api/v1/{path}")), json=body, headers=journey.headers
    ) as response:
        return response.status, await response.json()


async def test_preview_with_sample_values_and_with_an_order(journey):
    await journey.install(NOTIFYING)
    status, shown = await call(journey, "POST", "notifications/preview", {"event": "shipped"})
    assert status == 200
    assert shown["text"] == (
        "Hi Asha Rao, your Demo Store order #1001 has been fulfilled by Delhivery. Track it at "
        "https://track.example/1234567890. Reply STOP to opt-out."
    )
    assert (shown["encoding"], shown["segments"], shown["credits"]) == ("GSM-7", 1, 1)
    assert shown["unknown_tokens"] == []

    order = await paid_order(journey)
    asked = {"event": "delivered", "order": order["name"]}
    status, shown = await call(journey, "POST", "notifications/preview", asked)
    assert status == 200 and f"order {order['name']} has been delivered" in shown["text"]
    assert shown["text"].startswith("Hi Asha, your Demo Store order")

    text = "नमस्ते [[firstname]], आपका ऑर्डर %ordername% भेज दिया गया है। %trackingurl% %nope%"
    status, shown = await call(
        journey, "POST", "notifications/preview", {"event": "shipped", "text": text}
    )
    assert shown["encoding"] == "UCS-2" and shown["segments"] == 2 and shown["credits"] == 2
    assert shown["unknown_tokens"] == ["%nope%"]

    status, answer = await call(
        journey, "POST", "notifications/preview", {"event": "shipped", "order": "#9"}
    )
    assert status == 404
    status, answer = await call(journey, "POST", "notifications/preview", {"event": "lost"})
    assert status == 422 and answer["error"]["fields"][0]["field"] == "event"


async def test_the_shipment_webhook_url_is_the_shops_own(journey):
    await journey.install(NOTIFYING)
    status, answer = await call(journey, "GET", "notifications/shipments-webhook")
    assert status == 200
    assert answer["url"].startswith(
        f"{journey.res.settings.server.public_url}/webhooks/shipments/{journey.shop_id}."
    )


async def test_billing_sums_messages_and_credits_per_account_channel_and_event(journey):
    await journey.install(NOTIFYING)
    for phone in (CONSENTING, CONSENTING, NOT_CONSENTING):
        order = await paid_order(journey, phone, "subscribed" if phone == CONSENTING else "")
        await webhook(journey, "fulfillments/create", fulfillment(order))
        await webhook(journey, "fulfillments/update", fulfillment(order, "delivered"))
    status, bill = await call(journey, "GET", "billing")
    assert status == 200
    assert bill["lines"] == [
        {
            "provider": "exotel",
            "account": "shop",
            "channel": "sms",
            "event": event,
            "messages": 2,
            "credits": 2,
        }
        for event in ("delivered", "shipped")
    ]
    tomorrow = (journey.res.clock.now() + timedelta(days=1)).date().isoformat()
    status, bill = await call(journey, "GET", f"billing?from={tomorrow}")
    assert status == 200 and bill["lines"] == []
    status, answer = await call(journey, "GET", "billing?from=yesterday")
    assert status == 422 and answer["error"]["fields"][0]["field"] == "from"
