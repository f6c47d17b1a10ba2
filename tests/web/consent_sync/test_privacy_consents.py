"""What Shopify's privacy webhooks do to consents: a data request exports the consent history;
a redaction keeps an opt-out honoured (the opted-out consent stays as a suppression entry)
and erases the rest (opted-in consents, the history of opting in, what caused each change)."""

from __future__ import annotations

from sqlalchemy import select

from flows.conversations import consent
from flows.conversations.replies import STOP_TEXT
from storage.models import Consent, ConsentEvent, DataRequest
from tests.web.consent.test_keywords import bodies, inbound_sms, run
from tests.web.consent_sync.conftest import DOMAIN, SHOPIFY_CUSTOMER
from tests.web.consent_sync.test_shopify_sync import webhook
from tests.web.test_messaging import CUSTOMER, send
from tests.web.test_messaging import message as message_row


def privacy_payload(shop, **extra) -> dict:
    return {
        "shop_id": shop.id,
        "shop_domain": DOMAIN,
        "customer": {"id": SHOPIFY_CUSTOMER, "email": "asha@example.com", "phone": CUSTOMER},
        **extra,
    }


async def test_a_redacted_customer_stays_opted_out_and_the_rest_of_their_consent_goes(
    res, server, worker, fakes, shopify, shop, order, clock
):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    async with res.db.transaction() as session:
        await consent.record(
            session,
            clock.now(),
            shop_id=shop.id,
            phone=CUSTOMER,
            channel="whatsapp",
            state=consent.OPTED_IN,
            source="checkout",
            reference="checkout:1",
        )
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]

    request = privacy_payload(shop, data_request={"id": 9001}, orders_requested=[])
    await webhook(shopify, server, "customers/data_request", request)
    await run(worker, clock)
    async with res.db.sessions() as session:
        exported = await session.scalar(select(DataRequest))
    assert [(c["channel"], c["state"]) for c in exported.document["consents"]] == [
        ("sms", "opted_out"),
        ("whatsapp", "opted_in"),
    ]

    await webhook(shopify, server, "customers/redact", privacy_payload(shop, orders_to_redact=[]))
    await run(worker, clock)
    async with res.db.sessions() as session:
        kept = [(c.phone, c.channel, c.state) for c in await session.scalars(select(Consent))]
        history = [
            (e.channel, e.state, e.reference) for e in await session.scalars(select(ConsentEvent))
        ]
    assert kept == [(CUSTOMER, "sms", "opted_out")]
    assert history == [("sms", "opted_out", "")]

    # A later order from the same phone is still not messaged by SMS.
    message_id = await send(res, order, key="after-redact")
    await run(worker, clock)
    assert (await message_row(res, message_id)).status == "suppressed"
    assert bodies(fakes) == [STOP_TEXT]
