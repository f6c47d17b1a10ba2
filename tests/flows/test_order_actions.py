"""Order actions (tags, cancel) against the fake Shopify over HTTP, with the real worker and
job handlers: one call per intention, retries of transient failures, permanent failures on
the timeline, refunds only of paid orders, nothing done for an uninstalled shop."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from flows.orders.actions import CANCEL_JOB, TAGS_JOB, queue_cancel, queue_tags
from flows.shops.shopify_events import apply_order
from providers.sandbox.shopify import FakeShopify, order_payload
from settings import Settings
from storage.models import Activity, Job, Order, Shop
from storage.shops import write_secrets
from tests.conftest import SECURITY

DOMAIN = "demo.myshopify.com"
TOKEN = "shpat_test_token"


@pytest.fixture
async def fake():
    shopify = FakeShopify()
    await shopify.start()
    shopify.add_shop(DOMAIN, TOKEN)
    yield shopify
    await shopify.close()


@pytest.fixture
def settings(database_url, fake, jobs_settings):
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        shopify={"admin_url": fake.admin_url_template},
        jobs=jobs_settings.model_dump(),
    )


@pytest.fixture
async def shop(db, clock, resources) -> Shop:
    now = clock.now()
    async with db.transaction() as session:
        shop = Shop(
            domain=DOMAIN, country="IN", status="installed", created_at=now, updated_at=now
        )
        write_secrets(shop, resources.box, shopify_access_token=TOKEN)
        session.add(shop)
    return shop


async def add_order(db, fake, clock, shop, *, in_shopify: bool = True, **overrides) -> Order:
    """An order in the fake Shopify (unless told otherwise) and ours, as its webhook left it."""
    payload = order_payload(**overrides)
    if in_shopify:
        fake.add_order(DOMAIN, payload)
    async with db.transaction() as session:
        return await apply_order(session, shop, payload, clock.now(), "test")


async def tags(db, queue, order, key: str = "confirmed", **changes) -> bool:
    async with db.transaction() as session:
        return await queue_tags(
            session, queue, order.id, order.shop_id, mode="ivr", key=key, **changes
        )


async def cancel(db, queue, order, key: str = "cancelled", **options) -> bool:
    async with db.transaction() as session:
        return await queue_cancel(
            session, queue, order.id, order.shop_id, mode="whatsapp", key=key, **options
        )


def calls(fake, field: str) -> int:
    """GraphQL requests the fake received for `field` (answered or not)."""
    return sum(
        1
        for _, body, _ in fake.requests
        if isinstance(body, dict) and f"{field}(" in str(body.get("query"))
    )


async def job(db, kind: str) -> Job:
    async with db.sessions() as session:
        return await session.scalar(select(Job).where(Job.kind == kind))


async def reload(db, order: Order) -> Order:
    async with db.sessions() as session:
        return await session.get(Order, order.id)


async def timeline(db, order: Order) -> list[tuple[str, str, dict]]:
    """The order's activities after it was received."""
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Activity)
            .where(Activity.order_id == order.id, Activity.kind != "order_received")
            .order_by(Activity.id)
        )
        return [(row.kind, row.mode, row.detail) for row in rows]


async def test_one_intention_queued_twice_tags_the_order_once(
    db, queue, worker, fake, clock, shop
):
    order = await add_order(db, fake, clock, shop, tags="vip, cod-pending")
    change = {"add": ["cod-confirmed", "VIP"], "remove": ["cod-pending"]}
    assert await tags(db, queue, order, **change) is True
    assert await tags(db, queue, order, **change) is False

    assert await worker.run_until_idle() == 1
    assert (calls(fake, "tagsAdd"), calls(fake, "tagsRemove")) == (1, 1)
    assert fake.tags(DOMAIN, order.shopify_order_id) == ["vip", "cod-confirmed"]
    assert (await reload(db, order)).tags == ["vip", "cod-confirmed"]
    assert await timeline(db, order) == [
        ("tags_removed", "ivr", {"tags": ["cod-pending"]}),
        ("tags_added", "ivr", {"tags": ["cod-confirmed", "VIP"]}),
    ]
    assert (await job(db, TAGS_JOB)).status == "done"


async def test_throttled_then_failing_call_is_retried_until_it_succeeds(
    db, queue, worker, fake, clock, shop
):
    order = await add_order(db, fake, clock, shop)
    await tags(db, queue, order, add=["cod-confirmed"])
    fake.throttle_next(1, currently_available=10, requested_cost=110, restore_rate=50)
    await worker.run_until_idle()
    throttled = await job(db, TAGS_JOB)
    assert throttled.status == "queued" and "THROTTLED" in throttled.last_error
    assert throttled.due_at == clock.now() + timedelta(seconds=2)  # (110 - 10) / 50

    fake.fail_next(1, status=502)
    clock.advance(timedelta(seconds=2))
    await worker.run_until_idle()
    failed = await job(db, TAGS_JOB)
    assert failed.status == "queued" and "HTTP 502" in failed.last_error
    assert failed.due_at > clock.now()  # backoff
    assert fake.tags(DOMAIN, order.shopify_order_id) == []

    clock.set(failed.due_at)
    await worker.run_until_idle()
    assert (await job(db, TAGS_JOB)).status == "done"
    assert calls(fake, "tagsAdd") == 3
    assert fake.tags(DOMAIN, order.shopify_order_id) == ["cod-confirmed"]
    assert [kind for kind, _, _ in await timeline(db, order)] == ["tags_added"]


async def test_transient_failure_on_the_last_attempt_is_on_the_timeline(
    db, queue, worker, fake, clock, shop, jobs_settings
):
    order = await add_order(db, fake, clock, shop)
    await cancel(db, queue, order)
    fake.fail_next(jobs_settings.max_attempts, status=503)
    for _ in range(jobs_settings.max_attempts):
        clock.set(max(clock.now(), (await job(db, CANCEL_JOB)).due_at))
        await worker.run_until_idle()
    assert (await job(db, CANCEL_JOB)).status == "dead"
    assert fake.cancellations == []
    [(kind, mode, detail)] = await timeline(db, order)
    assert (kind, mode, detail["code"]) == ("shopify_action_failed", "whatsapp", "HTTP_503")
    assert (await reload(db, order)).cancelled_at is None


@pytest.mark.parametrize(
    ("kind", "field", "code"),
    [(TAGS_JOB, "tagsAdd", "USER_ERROR"), (CANCEL_JOB, "orderCancel", "NOT_FOUND")],
)
async def test_permanent_failure_is_on_the_timeline_and_not_retried(
    db, queue, worker, fake, clock, shop, kind, field, code
):
    order = await add_order(db, fake, clock, shop, in_shopify=False)  # deleted in Shopify
    if kind == TAGS_JOB:
        await tags(db, queue, order, add=["cod-confirmed"])
    else:
        await cancel(db, queue, order)
    assert await worker.run_until_idle() == 1
    finished = await job(db, kind)
    assert (finished.status, finished.attempts) == ("done", 1)
    [(activity, _, detail)] = await timeline(db, order)
    assert (activity, detail["action"], detail["code"]) == ("shopify_action_failed", kind, code)
    assert "does not exist" in detail["error"]

    clock.advance(timedelta(days=1))
    assert await worker.run_until_idle() == 0
    assert calls(fake, field) == 1
    order = await reload(db, order)
    assert order.tags == [] and order.cancelled_at is None


@pytest.mark.parametrize(
    ("financial_status", "refunded", "status_after"),
    [("pending", False, "voided"), ("paid", True, "refunded")],
)
async def test_cancel_refunds_only_a_paid_order(
    db, queue, worker, fake, clock, shop, financial_status, refunded, status_after
):
    order = await add_order(db, fake, clock, shop, financial_status=financial_status)
    await cancel(db, queue, order)
    await worker.run_until_idle()
    [sent] = fake.cancellations
    assert (sent["refund"], sent["restock"], sent["notify_customer"], sent["reason"]) == (
        refunded,
        True,
        False,
        "CUSTOMER",
    )
    shopify_order = fake.order(DOMAIN, order.shopify_order_id)
    assert shopify_order["cancelled_at"] and shopify_order["financial_status"] == status_after
    assert (await reload(db, order)).cancelled_at == clock.now()
    [(kind, mode, detail)] = await timeline(db, order)
    assert (kind, mode, detail["refund"]) == ("order_cancelled", "whatsapp", refunded)


async def test_cancel_can_be_told_not_to_refund_a_paid_order(db, queue, worker, fake, clock, shop):
    order = await add_order(db, fake, clock, shop, financial_status="paid")
    await cancel(db, queue, order, refund=False, notify_customer=True)
    await worker.run_until_idle()
    [sent] = fake.cancellations
    assert (sent["refund"], sent["notify_customer"]) == (False, True)
    assert fake.order(DOMAIN, order.shopify_order_id)["financial_status"] == "paid"


async def test_an_order_already_cancelled_in_shopify_counts_as_cancelled(
    db, queue, worker, fake, clock, shop
):
    order = await add_order(db, fake, clock, shop)
    fake.order(DOMAIN, order.shopify_order_id)["cancelled_at"] = "2026-01-05T08:00:00+00:00"
    await cancel(db, queue, order)
    await worker.run_until_idle()
    assert (await job(db, CANCEL_JOB)).status == "done"
    assert fake.cancellations == []
    assert (await reload(db, order)).cancelled_at == clock.now()
    assert await timeline(db, order) == [
        ("order_cancelled", "whatsapp", {"reason": "CUSTOMER", "already_cancelled": True})
    ]


async def test_an_uninstalled_shops_jobs_do_nothing(db, queue, worker, fake, clock, shop):
    order = await add_order(db, fake, clock, shop)
    await tags(db, queue, order, add=["cod-confirmed"])
    await cancel(db, queue, order)
    async with db.transaction() as session:
        (await session.get(Shop, shop.id)).status = "uninstalled"
    assert await worker.run_until_idle() == 2
    assert fake.requests == []
    assert await timeline(db, order) == []
    order = await reload(db, order)
    assert order.tags == [] and order.cancelled_at is None


async def test_a_deleted_orders_job_does_nothing(db, queue, worker, fake, clock, shop):
    order = await add_order(db, fake, clock, shop)
    await tags(db, queue, order, add=["cod-confirmed"])
    async with db.transaction() as session:
        await session.execute(delete(Order).where(Order.id == order.id))
    assert await worker.run_until_idle() == 1
    assert (await job(db, TAGS_JOB)).status == "done"
    assert fake.requests == []


async def test_queueing_checks_mode_and_tags(db, queue, fake, clock, shop):
    order = await add_order(db, fake, clock, shop)
    async with db.transaction() as session:
        with pytest.raises(ValueError, match="mode"):
            await queue_cancel(session, queue, order.id, shop.id, mode="fax", key="k")
        with pytest.raises(ValueError, match="no tags"):
            await queue_tags(session, queue, order.id, shop.id, add=[" "], mode="ivr", key="k")
