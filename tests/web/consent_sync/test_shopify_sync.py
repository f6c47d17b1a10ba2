"""Consent kept the same here and in Shopify, end to end: signed inbound keywords into the
real app and worker, the GraphQL mutation seen by the fake Shopify and the one confirmation
seen by the fake Twilio; Shopify's customers/update and order webhooks changing our consent,
and verification skipping its SMS for an opted-out phone (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import delete, select, update
from twilio.request_validator import RequestValidator

from flows.conversations.replies import START_TEXT, STOP_TEXT
from flows.conversations.shopify_consent import SYNC_JOB
from flows.shops import config as shop_config
from providers.sandbox.shopify import order_payload
from storage.models import Activity, Consent, ConsentEvent, Customer, Job, Message
from tests.web.consent.test_keywords import bodies, inbound_sms, run
from tests.web.consent_sync.conftest import DOMAIN, SHOPIFY_CUSTOMER
from tests.web.test_messaging import CUSTOMER, SMS_FROM, count, send
from tests.web.test_messaging import message as message_row

MUTATION = "customerSmsMarketingConsentUpdate"


async def twilio_inbound(fakes, server, body: str, sid: str) -> None:
    """A signed Twilio inbound SMS with this message sid (a provider repeats its delivery
    with the same one)."""
    twilio = fakes["twilio"]
    url = str(server.make_url("/webhooks/twilio/messages"))
    params = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": twilio.account_sid,
        "From": CUSTOMER,
        "To": SMS_FROM,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
    }
    signature = RequestValidator(twilio.auth_token).compute_signature(url, params)
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=params, headers={"X-Twilio-Signature": signature}) as response,
    ):
        assert response.status == 200, await response.text()


def mutations(shopify) -> list[dict[str, Any]]:
    """The consent each SMS marketing mutation the fake Shopify received asked for."""
    return [
        body["variables"]["input"]["smsMarketingConsent"]
        for _path, body, _headers in shopify.requests
        if isinstance(body, dict) and MUTATION in body.get("query", "")
    ]


def lookups(shopify) -> int:
    return sum(
        1
        for _path, body, _headers in shopify.requests
        if isinstance(body, dict) and "CustomerByPhone" in body.get("query", "")
    )


def shopify_state(shopify) -> str:
    return shopify.customer(DOMAIN, SHOPIFY_CUSTOMER)["sms_marketing_consent"]["state"]


async def consent_of(res) -> tuple[str, str] | None:
    async with res.db.sessions() as session:
        row = await session.scalar(select(Consent).where(Consent.channel == "sms"))
    return None if row is None else (row.state, row.source)


async def sync_outcomes(res) -> list[dict[str, Any]]:
    async with res.db.sessions() as session:
        rows = await session.scalars(
            select(Activity).where(Activity.kind == "shopify_consent").order_by(Activity.id)
        )
        return [row.detail for row in rows]


async def webhook(shopify, server, topic: str, payload: dict[str, Any]) -> None:
    url = str(server.make_url("/webhooks/shopify"))
    assert await shopify.send_webhook(url, topic, DOMAIN, payload) == 200


def customer_update(state: str, updated_at: str | None) -> dict[str, Any]:
    return {
        "id": SHOPIFY_CUSTOMER,
        "first_name": "Asha",
        "phone": CUSTOMER,
        "updated_at": "2026-01-20T10:00:00Z",
        "sms_marketing_consent": {
            "state": state,
            "opt_in_level": "single_opt_in",
            "consent_updated_at": updated_at,
        },
    }


async def test_stop_unsubscribes_in_shopify_and_start_subscribes_with_one_confirmation_each(
    res, server, worker, fakes, shopify, shop, clock
):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    assert [m["marketingState"] for m in mutations(shopify)] == ["UNSUBSCRIBED"]
    assert shopify_state(shopify) == "unsubscribed"
    assert await consent_of(res) == ("opted_out", "keyword")
    [outcome] = await sync_outcomes(res)
    assert (outcome["state"], outcome["result"]) == ("opted_out", "updated")
    # The customer found by phone is remembered: the next change needs no lookup.
    async with res.db.sessions() as session:
        customer = await session.scalar(select(Customer))
    assert customer.shopify_customer_id == str(SHOPIFY_CUSTOMER)
    assert lookups(shopify) == 1

    await inbound_sms(fakes, server, "START")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT, START_TEXT]
    assert [m["marketingState"] for m in mutations(shopify)] == ["UNSUBSCRIBED", "SUBSCRIBED"]
    assert shopify_state(shopify) == "subscribed"
    assert lookups(shopify) == 1

    await inbound_sms(fakes, server, "HELP")
    await run(worker, clock)
    assert len(bodies(fakes)) == 3 and len(mutations(shopify)) == 2


async def test_a_repeated_stop_delivery_syncs_once(
    res, server, worker, fakes, shopify, shop, clock
):
    for _ in range(2):
        await twilio_inbound(fakes, server, "STOP", "SM" + "1" * 32)
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    assert len(mutations(shopify)) == 1
    assert await count(res, Job, Job.kind == SYNC_JOB) == 1


async def test_our_own_change_echoed_by_customers_update_changes_and_queues_nothing(
    res, server, worker, fakes, shopify, shop, clock
):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    echoed = shopify.customer(DOMAIN, SHOPIFY_CUSTOMER)
    await webhook(shopify, server, "customers/update", {**echoed, "updated_at": "2026-01-20"})
    await run(worker, clock)
    assert await count(res, ConsentEvent) == 1
    assert await count(res, Job, Job.kind == SYNC_JOB) == 1
    assert len(mutations(shopify)) == 1


async def test_a_sync_overtaken_by_a_later_keyword_pushes_only_the_later_state(
    res, server, worker, fakes, shopify, shop, clock
):
    shopify.fail_next(1, status=503)  # the STOP's sync fails (its lookup), and its retry waits
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    async with res.db.transaction() as session:
        await session.execute(
            update(Job)
            .where(Job.kind == SYNC_JOB, Job.status == "queued")
            .values(due_at=clock.now() + timedelta(minutes=10))
        )
    await inbound_sms(fakes, server, "START")
    await run(worker, clock)
    clock.advance(timedelta(minutes=10))
    await run(worker, clock)
    # The STOP's retry found itself overtaken: only the START's state reached Shopify.
    assert [m["marketingState"] for m in mutations(shopify)] == ["SUBSCRIBED"]
    assert shopify_state(shopify) == "subscribed"
    assert [(o["state"], o["result"]) for o in await sync_outcomes(res)] == [
        ("opted_in", "updated")
    ]
    assert await count(res, Job, Job.kind == SYNC_JOB, Job.status != "done") == 0


async def test_a_transient_shopify_failure_is_retried_until_the_consent_is_set(
    res, server, worker, fakes, shopify, shop, clock
):
    shopify.fail_next(2, status=502)
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    assert shopify_state(shopify) == "subscribed"  # Shopify answered 502: retried later
    for _ in range(3):  # the backoff of each retry
        clock.advance(timedelta(minutes=15))
        await run(worker, clock)
    assert shopify_state(shopify) == "unsubscribed"
    assert [o["result"] for o in await sync_outcomes(res)] == ["updated"]
    assert await count(res, Job, Job.kind == SYNC_JOB, Job.status == "done") == 1


async def test_no_shopify_customer_leaves_the_local_opt_out_standing(
    res, server, worker, fakes, shopify, shop, clock
):
    shopify.customer(DOMAIN, SHOPIFY_CUSTOMER)["phone"] = "+919800000000"
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]
    assert mutations(shopify) == []
    assert await consent_of(res) == ("opted_out", "keyword")
    assert [o["result"] for o in await sync_outcomes(res)] == ["no_customer"]
    assert await count(res, Job, Job.kind == SYNC_JOB, Job.status != "done") == 0


async def test_a_shopify_refusal_is_recorded_and_not_retried(
    res, server, worker, fakes, shopify, shop, clock
):
    async with res.db.transaction() as session:
        customer = await session.scalar(select(Customer))
        customer.shopify_customer_id = "999"  # gone from Shopify: it refuses the mutation
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    [outcome] = await sync_outcomes(res)
    assert (outcome["result"], outcome["code"]) == ("failed", "USER_ERROR")
    assert "Customer not found" in outcome["error"]
    assert await count(res, Job, Job.kind == SYNC_JOB, Job.status == "done") == 1
    assert await consent_of(res) == ("opted_out", "keyword")


async def test_customers_update_unsubscribed_suppresses_sends_at_once(
    res, server, worker, fakes, shopify, shop, order, clock
):
    await webhook(
        shopify, server, "customers/update", customer_update("unsubscribed", "2026-01-20T09:00Z")
    )
    await run(worker, clock)
    assert await consent_of(res) == ("opted_out", "shopify")
    message_id = await send(res, order, key="after-shopify-unsubscribe")
    await run(worker, clock)
    assert bodies(fakes) == []
    assert (await message_row(res, message_id)).status == "suppressed"
    assert mutations(shopify) == []  # taken from Shopify: nothing goes back

    await webhook(
        shopify, server, "customers/update", customer_update("subscribed", "2026-01-21T09:00Z")
    )
    await run(worker, clock)
    assert await consent_of(res) == ("opted_in", "shopify")
    message_id = await send(res, order, key="after-shopify-subscribe")
    await run(worker, clock)
    assert (await message_row(res, message_id)).status == "sent"


async def test_a_stale_shopify_consent_does_not_override_a_later_stop(
    res, server, worker, fakes, shopify, shop, order, clock
):
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    decided = clock.now()
    stale = (decided - timedelta(days=1)).isoformat()
    await webhook(shopify, server, "customers/update", customer_update("subscribed", stale))
    await webhook(shopify, server, "customers/update", customer_update("subscribed", None))
    await run(worker, clock)
    assert await consent_of(res) == ("opted_out", "keyword")
    later = (decided + timedelta(hours=1)).isoformat()
    await webhook(shopify, server, "customers/update", customer_update("subscribed", later))
    await run(worker, clock)
    assert await consent_of(res) == ("opted_in", "shopify")
    # "not_subscribed" (never asked) and "pending" decide nothing.
    for state in ("not_subscribed", "pending"):
        await webhook(shopify, server, "customers/update", customer_update(state, later))
    await run(worker, clock)
    assert await consent_of(res) == ("opted_in", "shopify")


async def test_the_customer_of_an_order_payload_carries_their_consent(
    res, server, worker, fakes, shopify, shop, clock
):
    payload = order_payload()
    payload["customer"]["phone"] = CUSTOMER
    payload["customer"]["sms_marketing_consent"] = {
        "state": "unsubscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": datetime(2026, 1, 10, tzinfo=UTC).isoformat(),
    }
    await webhook(shopify, server, "orders/create", payload)
    await run(worker, clock)
    assert await consent_of(res) == ("opted_out", "shopify")
    updated = {**payload, "updated_at": "2026-01-16T10:00:00+05:30"}
    updated["customer"] = {**payload["customer"], "sms_marketing_consent": {"state": "redacted"}}
    await webhook(shopify, server, "orders/updated", updated)
    await run(worker, clock)
    assert await consent_of(res) == ("opted_out", "shopify")
    assert mutations(shopify) == []


async def test_verification_after_stop_skips_its_sms_and_says_why(
    res, server, worker, fakes, shopify, shop, clock
):
    await shop_config.save(
        res.db,
        res.box,
        clock,
        shop.id,
        {
            "contact_phone": "+918040001234",
            "verification": {"type": "whatsapp"},
            "whatsapp": {"retries": 0, "retry_interval_minutes": 30},
            "fallback": {
                "mode": "sms_link",
                "sms_link": {"dlt_entity_id": "1101", "dlt_template_id": "1102"},
            },
        },
    )
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    payload = order_payload(created_at=clock.now().isoformat())
    payload["customer"]["phone"] = CUSTOMER
    for address in ("shipping_address", "billing_address"):
        payload[address] = {**payload[address], "phone": CUSTOMER}
    await webhook(shopify, server, "orders/create", payload)
    await run(worker, clock)
    assert len(fakes["gupshup"].messages) == 1  # WhatsApp is another channel: it goes
    clock.advance(timedelta(minutes=31))
    await run(worker, clock)
    assert bodies(fakes) == [STOP_TEXT]  # no link SMS
    async with res.db.sessions() as session:
        skipped = await session.scalar(select(Activity).where(Activity.kind == "method_skipped"))
        unverified = await session.scalar(
            select(Activity).where(Activity.kind == "verification_unverified")
        )
    assert (skipped.mode, skipped.detail) == (
        "sms_link",
        {"reason": "the customer opted out of sms"},
    )
    assert unverified is not None
    assert await count(res, Message, Message.status == "suppressed") == 0


async def test_a_stop_on_the_platform_number_alone_skips_the_verifications_sms(
    res, server, worker, fakes, shopify, shop, clock
):
    await shop_config.save(
        res.db,
        res.box,
        clock,
        shop.id,
        {
            "contact_phone": "+918040001234",
            "verification": {"type": "whatsapp"},
            "whatsapp": {"retries": 0, "retry_interval_minutes": 30},
            "fallback": {
                "mode": "sms_link",
                "sms_link": {"dlt_entity_id": "1101", "dlt_template_id": "1102"},
            },
        },
    )
    # The shop never wrote to the phone from the platform's number: the STOP binds it through
    # that number's line alone (no consent of the shop's own, no answer from it).
    async with res.db.transaction() as session:
        await session.execute(delete(Message))
    await inbound_sms(fakes, server, "STOP")
    await run(worker, clock)
    assert await count(res, Consent) == 0
    payload = order_payload(created_at=clock.now().isoformat())
    payload["customer"]["phone"] = CUSTOMER
    for address in ("shipping_address", "billing_address"):
        payload[address] = {**payload[address], "phone": CUSTOMER}
    await webhook(shopify, server, "orders/create", payload)
    await run(worker, clock)
    assert len(fakes["gupshup"].messages) == 1  # WhatsApp is another channel: it goes
    clock.advance(timedelta(minutes=31))
    await run(worker, clock)
    assert bodies(fakes) == []  # no link SMS
    async with res.db.sessions() as session:
        skipped = await session.scalar(select(Activity).where(Activity.kind == "method_skipped"))
        unverified = await session.scalar(
            select(Activity).where(Activity.kind == "verification_unverified")
        )
    assert (skipped.mode, skipped.detail) == (
        "sms_link",
        {"reason": "the customer opted out of sms"},
    )
    assert unverified is not None
    assert await count(res, Message, Message.status == "suppressed") == 0
