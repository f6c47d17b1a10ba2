"""The setup list (GET /api/v1/shop/setup) names the shipment webhook with what to paste
where, and the URL it gives takes the carrier's events."""

from __future__ import annotations

from tests.web.notifications.helpers import NOTIFYING, paid_order, texts


async def test_the_setup_list_gives_the_shipment_webhook_to_paste_at_the_carrier(journey):
    await journey.install(NOTIFYING)
    setup = await journey.api("GET", "setup")
    (item,) = setup["paste"]
    assert "carrier or fulfilment platform" in item["where"]
    public_url = journey.res.settings.server.public_url
    assert item["value"].startswith(f"{public_url}/webhooks/shipments/{journey.shop_id}.")
    assert journey.res.settings.secret_key() not in item["value"]

    order = await paid_order(journey)
    event = {"order": order["name"], "status": "out_for_delivery", "awb": "AWB1"}
    async with journey.browser.post(item["value"], json=event) as response:
        assert response.status == 202
    await journey.worker.run_until_idle()
    await journey.settle()
    (body,) = texts(journey)
    assert "is out for delivery today" in body
