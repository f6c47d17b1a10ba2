"""Shopify's privacy webhooks end to end, and what the product keeps of customers: a data
request is exported for the merchant (admin API), a redaction reaches every copy of the
customer's data (job payloads and errors included), dead jobs go after their retention."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest
from sqlalchemy import select

from main import schedule_periodic
from providers.sandbox.shopify import FakeShopify, order_payload
from settings import Settings
from storage.models import Customer, Job, Message, Order
from tests.conftest import SECURITY
from tests.web.test_shopify import DOMAIN, TOKEN, connect, free_port, url

ASHA = "+919876543210"  # order_payload's customer
GUEST_PHONE = "+919988776655"
MEERA = "+919123456789"


@pytest.fixture
async def fake():
    shopify = FakeShopify(api_key="app-key", api_secret="app-secret")
    await shopify.start()
    shopify.add_shop(DOMAIN, TOKEN, name="Demo Store")
    yield shopify
    await shopify.close()


@pytest.fixture
async def browser():
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
async def server(aiohttp_server, app_factory, db, queue, port):
    return await aiohttp_server(app_factory(db, queue), port=port)


@pytest.fixture
def settings(database_url, fake, port):
    """Jobs keep their defaults: dead ones are kept 30 days."""
    return Settings(
        database={"url": database_url},
        security=SECURITY,
        server={"public_url": f"http://127.0.0.1:{port}"},
        shopify={
            "api_key": "app-key",
            "api_secret": "app-secret",
            "admin_url": fake.admin_url_template,
        },
    )


def address(phone: str, name: str, street: str, city: str) -> dict:
    first, last = name.split()
    return {
        "first_name": first,
        "last_name": last,
        "name": name,
        "address1": street,
        "city": city,
        "zip": "411001",
        "country_code": "IN",
        "phone": phone,
    }


def orders() -> tuple[dict, dict, dict]:
    """Asha's order, her guest order from another phone, and Meera's order."""
    asha = order_payload()
    guest = order_payload(customer=None, email="", contact_email="")
    guest["shipping_address"] = guest["billing_address"] = address(
        "099887 76655", "Ravi Rao", "7 Lake View", "Pune"
    )
    meera = order_payload()
    meera["customer"] = {
        **meera["customer"],
        "id": 4242,
        "first_name": "Meera",
        "last_name": "Nair",
        "email": "meera@example.org",
        "phone": MEERA,
    }
    meera["email"] = meera["contact_email"] = "meera@example.org"
    meera["shipping_address"] = meera["billing_address"] = address(
        MEERA, "Meera Nair", "3 Hill Road", "Kochi"
    )
    meera["customer"]["default_address"] = meera["shipping_address"]
    return asha, guest, meera


async def api(browser, server, key: str, path: str) -> tuple[int, dict]:
    async with browser.get(
        url(server, f"/api/v1{path}"), headers={"Authorization": f"Bearer {key}"}
    ) as response:
        return response.status, await response.json()


async def deliver(fake, server, worker, topic: str, payload: dict) -> None:
    endpoint = url(server, "/webhooks/shopify")
    assert await fake.send_webhook(endpoint, topic, DOMAIN, payload) == 200
    await worker.run_until_idle()


async def add_records(db, clock) -> None:
    """What talking to the customers left: an inbound SMS, and a dead job (an inbound message
    whose handling failed, quoting the phone in its error)."""
    async with db.transaction() as session:
        order = await session.scalar(select(Order).where(Order.phone == ASHA))
        now = clock.now()
        session.add(
            Message(
                shop_id=order.shop_id,
                order_id=order.id,
                channel="sms",
                direction="in",
                provider="exotel",
                to_phone="+918047112345",
                from_phone=ASHA,
                body="Asha here, deliver to 12 MG Road please",
                created_at=now,
                updated_at=now,
            )
        )
        session.add(
            Job(
                kind="provider.event",
                payload={
                    "kind": "InboundMessage",
                    "event": {"from_phone": ASHA, "text": "Asha here, 12 MG Road"},
                },
                shop_id=order.shop_id,
                status="dead",
                due_at=now,
                attempts=3,
                max_attempts=3,
                last_error=f"RuntimeError: no route to {ASHA}",
                finished_at=now,
                created_at=now,
            )
        )


def job_texts(jobs: list[Job]) -> str:
    return " ".join(f"{job.payload} {job.last_error}" for job in jobs)


async def all_jobs(db) -> list[Job]:
    async with db.sessions() as session:
        return list(await session.scalars(select(Job)))


async def test_customer_redact_erases_every_copy_of_the_customers_data(
    browser,
    server,
    worker,
    db,
    fake,
    clock,
):
    issued = await connect(browser, server, worker)
    asha, guest, meera = orders()
    for payload in (asha, guest, meera):
        await deliver(fake, server, worker, "orders/create", payload)
    await add_records(db, clock)
    await deliver(
        fake,
        server,
        worker,
        "customers/data_request",
        {
            "shop_id": 1,
            "shop_domain": DOMAIN,
            "orders_requested": [asha["id"]],
            "customer": {"id": asha["customer"]["id"], "email": "asha.rao@example.com"},
            "data_request": {"id": 9001},
        },
    )
    status, listed = await api(browser, server, issued["api_key"], "/data-requests")
    assert status == 200 and len(listed["data_requests"]) == 1
    before = job_texts(await all_jobs(db))
    assert "98765" in before and "Asha" in before and "Lake View" in before

    await deliver(
        fake,
        server,
        worker,
        "customers/redact",
        {
            "shop_id": 1,
            "shop_domain": DOMAIN,
            # The phone as the customer typed it: found in its E.164 form.
            "customer": {
                "id": asha["customer"]["id"],
                "email": "asha.rao@example.com",
                "phone": "098765 43210",
            },
            "orders_to_redact": [asha["id"], guest["id"]],
        },
    )
    async with db.sessions() as session:
        customers = {c.shopify_customer_id: c for c in await session.scalars(select(Customer))}
        by_id = {o.shopify_order_id: o for o in await session.scalars(select(Order))}
        message = await session.scalar(select(Message))
    kept = customers.pop("4242")
    assert (kept.phone, kept.name, kept.email) == (MEERA, "Meera Nair", "meera@example.org")
    # Asha, and the customer her guest order made, known only through orders_to_redact.
    assert len(customers) == 1 and None in customers
    async with db.sessions() as session:
        erased = list(await session.scalars(select(Customer).where(Customer.id != kept.id)))
    assert len(erased) == 2
    for customer in erased:
        assert customer.phone.startswith("redacted") and customer.name == customer.email == ""
    for payload in (asha, guest):
        order = by_id[str(payload["id"])]
        assert (order.phone, order.city) == ("", "")
        assert order.total_amount == "1499.00"  # the shop's figures stay
    assert (by_id[str(meera["id"])].phone, by_id[str(meera["id"])].city) == (MEERA, "Kochi")
    assert (message.body, message.from_phone) == ("", "redacted")

    after = await all_jobs(db)
    text = job_texts(after)
    for trace in ("98765", "99887", "Asha", "Ravi", "MG Road", "Lake View", "asha.rao"):
        assert trace not in text, trace
    assert "Meera" in text and "3 Hill Road" in text  # another customer's jobs are untouched
    status, listed = await api(browser, server, issued["api_key"], "/data-requests")
    assert listed["data_requests"] == []


async def test_a_data_request_is_exported_for_the_merchant(
    browser,
    server,
    worker,
    db,
    fake,
    clock,
):
    issued = await connect(browser, server, worker)
    asha, guest, meera = orders()
    for payload in (asha, guest, meera):
        await deliver(fake, server, worker, "orders/create", payload)
    await add_records(db, clock)
    request = {
        "shop_id": 1,
        "shop_domain": DOMAIN,
        "orders_requested": [asha["id"], guest["id"]],
        "customer": {"id": asha["customer"]["id"], "email": "asha.rao@example.com", "phone": ASHA},
        "data_request": {"id": 9001},
    }
    await deliver(fake, server, worker, "customers/data_request", request)

    status, listed = await api(browser, server, issued["api_key"], "/data-requests")
    assert status == 200, listed
    [entry] = listed["data_requests"]
    assert entry["shopify_request_id"] == "9001"
    assert entry["customer"] == {
        "id": str(asha["customer"]["id"]),
        "email": "asha.rao@example.com",
        "phone": ASHA,
    }
    status, document = await api(browser, server, issued["api_key"], entry["url"][7:])
    assert status == 200, document
    assert document["data_request"]["id"] == "9001" and document["shop"] == DOMAIN
    people = sorted((c["phone"], c["name"], c["email"]) for c in document["customers"])
    assert people == [
        (ASHA, "Asha Rao", "asha.rao@example.com"),
        (GUEST_PHONE, "", ""),
    ]
    exported = {o["name"]: o for o in document["orders"]}
    assert set(exported) == {asha["name"], guest["name"]}
    assert exported[asha["name"]]["city"] == "Bengaluru"
    assert exported[guest["name"]]["city"] == "Pune"
    assert exported[asha["name"]]["items"][0]["title"] == "Cotton Kurta - M"
    assert exported[asha["name"]]["timeline"][0]["kind"] == "order_received"
    [message] = document["messages"]
    assert message["body"].startswith("Asha here") and message["order"] == asha["name"]
    assert "Meera" not in str(document) and MEERA not in str(document)

    other = await api(browser, server, issued["api_key"], "/data-requests/999999")
    assert other[0] == 404
    assert (await api(browser, server, "otk_not-a-key", "/data-requests"))[0] == 401
    async with browser.get(url(server, "/api/v1/openapi.json")) as response:
        paths = (await response.json())["paths"]
    assert {"/data-requests", "/data-requests/{id}"} <= set(paths)


async def test_dead_jobs_are_deleted_after_the_retention_period(
    browser,
    server,
    worker,
    db,
    fake,
    clock,
    resources,
):
    await connect(browser, server, worker)
    endpoint = url(server, "/webhooks/shopify")
    body = b'{"id": 1, "customer": {"first_name": "Asha"}, "broken'
    old = await fake.send_webhook(endpoint, "orders/create", DOMAIN, order_payload())
    assert old == 200
    async with db.transaction() as session:
        job = await session.scalar(select(Job).where(Job.kind == "shopify.webhook"))
        job.payload = {**job.payload, "body": body.decode()}
    await worker.run_until_idle()
    clock.advance(timedelta(days=20))
    fresh = order_payload()
    await fake.send_webhook(endpoint, "orders/create", DOMAIN, fresh)
    async with db.transaction() as session:
        job = await session.scalar(
            select(Job).where(Job.kind == "shopify.webhook", Job.status == "queued")
        )
        job.payload = {**job.payload, "body": body.decode()}
    await worker.run_until_idle()
    dead = sorted((j for j in await all_jobs(db) if j.status == "dead"), key=lambda j: j.id)
    assert len(dead) == 2

    await schedule_periodic(resources)
    await worker.run_until_idle()
    assert len([j for j in await all_jobs(db) if j.status == "dead"]) == 2
    clock.advance(timedelta(days=10, hours=1))  # the first is past 30 days, the second not
    await worker.run_until_idle()
    left = [j for j in await all_jobs(db) if j.status == "dead"]
    assert [j.id for j in left] == [dead[1].id]
    # The pruning job keeps coming back, once per interval.
    queued = [j for j in await all_jobs(db) if j.kind == "jobs.prune" and j.status == "queued"]
    assert len(queued) == 1 and queued[0].due_at > clock.now()
