"""Each provider's recorded inbound shape posted through the real app as the provider sends it
(signed by Twilio's auth token, under Exotel's or Gupshup's path token, with RingCentral's
verification token), accepted once, stamped with the line it arrived on, and recorded by its
job as an inbound message of the right shop, on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from flows.channels.callback_urls import ringcentral_token, shop_token
from flows.channels.provider_events import EVENT_JOB, event_from_payload, event_payload
from storage.models import Customer, Job, Message, Shop
from tests.providers.test_inbound_shapes import EXPECTED, shape
from web.inbound import inbound_payload

# Where each provider's callback names its shop: in the path token (Exotel, Gupshup), or not
# at all on the platform's shared account (Twilio, RingCentral here).
NAMES_ITS_SHOP = ("exotel", "gupshup")


async def add_shop(res, domain: str) -> int:
    now = res.clock.now()
    async with res.db.transaction() as session:
        shop = Shop(domain=domain, name=domain, created_at=now, updated_at=now)
        session.add(shop)
        await session.flush()
        return shop.id


async def add_customer(res, shop_id: int, phone: str) -> None:
    async with res.db.transaction() as session:
        known = await session.scalar(
            select(Customer).where(Customer.shop_id == shop_id, Customer.phone == phone)
        )
        if known is None:
            session.add(Customer(shop_id=shop_id, phone=phone, created_at=res.clock.now()))


async def wrote(res, shop_id: int, event) -> None:
    """The shop's message to the phone from the number it replies to, on the platform's
    account: the router gives a reply on a shared line only to a shop that wrote."""
    now = res.clock.now()
    async with res.db.transaction() as session:
        session.add(
            Message(
                shop_id=shop_id,
                channel=event.channel,
                direction="out",
                provider=event.provider,
                account="platform",
                to_phone=event.from_phone,
                from_phone=event.to,
                body="Your order #1001 is confirmed",
                status="sent",
                created_at=now,
                updated_at=now,
            )
        )


async def post_shape(server, res, fakes, name: str, shop_id: int) -> int:
    """Post the recorded shape to its route as its provider would; the HTTP status."""
    key = res.settings.secret_key()
    base = str(server.make_url(""))
    fields = shape(name)
    async with aiohttp.ClientSession() as http:
        if name.startswith("twilio"):
            fields["AccountSid"] = fakes["twilio"].account_sid
            url = f"{res.settings.server.public_url}/webhooks/twilio/messages"
            signature = RequestValidator(fakes["twilio"].auth_token).compute_signature(url, fields)
            request = http.post(url, data=fields, headers={"X-Twilio-Signature": signature})
        elif name == "exotel_sms_app.query":
            url = f"{base}/webhooks/exotel/{shop_token(key, shop_id)}/sms"
            async with http.head(url) as head:
                assert (head.status, head.content_type) == (200, "text/plain")
            request = http.get(f"{url}?{urlencode(fields)}")
        elif name.startswith("exotel"):
            request = http.post(
                f"{base}/webhooks/exotel/{shop_token(key, shop_id)}/sms", json=fields
            )
        elif name.startswith("gupshup"):
            request = http.post(f"{base}/webhooks/gupshup/{shop_token(key, shop_id)}", json=fields)
        else:
            request = http.post(
                f"{base}/webhooks/ringcentral",
                json=fields,
                headers={"Verification-Token": ringcentral_token(key)},
            )
        async with request as response:
            if name.startswith("exotel"):
                # An SMS app would send any body back to the customer as a reply.
                assert (response.content_type, await response.text()) == ("text/plain", "")
            return response.status


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_recorded_shape_is_accepted_once_and_lands_in_its_shop(
    name, res, server, worker, fakes, order
):
    event = EXPECTED[name]
    await add_customer(res, order.shop_id, event.from_phone)
    provider = name.partition("_")[0]
    if provider in NAMES_ITS_SHOP:
        # A newer shop that knows the same phone: the callback's token still decides.
        await add_customer(res, await add_shop(res, "other.myshopify.com"), event.from_phone)
    else:
        await wrote(res, order.shop_id, event)
    for _ in range(2):  # the provider repeats its delivery
        assert await post_shape(server, res, fakes, name, order.shop_id) == 200

    async with res.db.sessions() as session:
        [job] = await session.scalars(select(Job).where(Job.kind == EVENT_JOB))
    line = f"shop:{order.shop_id}" if provider in NAMES_ITS_SHOP else f"{provider}:platform"
    assert job.payload["event"]["line"] == line
    assert job.payload["event"]["message_id"] == event.message_id

    await worker.run_until_idle()
    async with res.db.sessions() as session:
        rows = list(await session.scalars(select(Message).where(Message.direction == "in")))
    assert [
        (m.shop_id, m.provider, m.provider_message_id, m.channel, m.from_phone, m.body)
        for m in rows
    ] == [
        (
            order.shop_id,
            event.provider,
            event.message_id,
            event.channel,
            event.from_phone,
            event.text,
        )
    ]


async def test_an_exotel_sms_with_a_forged_token_is_404_and_a_broken_one_400(res, server, order):
    base = str(server.make_url(""))
    async with aiohttp.ClientSession() as http:
        forged = f"{base}/webhooks/exotel/{order.shop_id}.forged/sms"
        async with http.post(forged, json=shape("exotel_sms_incoming.json")) as response:
            assert response.status == 404
        url = f"{base}/webhooks/exotel/{shop_token(res.settings.secret_key(), order.shop_id)}/sms"
        async with http.post(
            url, json={"SmsSid": "x", "Sender": "12", "ReceivedOn": "56070"}
        ) as response:
            assert response.status == 400
            problem = await response.json()
    assert [f["field"] for f in problem["error"]["fields"]] == ["Sender"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_intakes_payload_is_the_event_with_its_line_and_time(name):
    event = EXPECTED[name]
    now = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    stamped = dataclasses.replace(event, line="shop:7", received_at=now.isoformat())
    assert inbound_payload(event, "shop:7", now) == event_payload(stamped)
    assert event_from_payload(inbound_payload(event, "shop:7", now)) == stamped
