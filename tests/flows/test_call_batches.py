"""Call jobs a batch at a time (issue 18): the real app, worker, call job and Exotel client
against the fake Exotel, with a manual clock, at the platform's default Exotel rate. Two
calls whose slots came due together are placed in one batch; the provider refuses one of
them, the other is placed, and the refused one is retried alone, after the provider's
Retry-After. A call whose order was cancelled meanwhile leaves its batch to the others."""

from __future__ import annotations

from sqlalchemy import select, update

from providers.sandbox.shopify import order_payload
from storage.models import Call, Job, Verification
from tests.flows.test_call_pacing import PHONES, accepted_at, post_order
from tests.web import test_verification_journeys as journeys
from tests.web.test_shopify import DOMAIN, url
from tests.web.test_verification_journeys import Journey

# The journeys' fixtures: the app, the worker and the fake Shopify, Exotel and Gupshup.
browser, exotel, fake, gupshup = journeys.browser, journeys.exotel, journeys.fake, journeys.gupshup
journey, port, server = journeys.journey, journeys.port, journeys.server
settings, urls = journeys.settings, journeys.urls

MS = 0.001  # a deferral ends on a whole millisecond
RETRY_AFTER = 2.0
CANCELLED_AT = "2026-01-05T09:00:00+00:00"


async def test_a_failed_call_in_a_batch_is_retried_alone(journey: Journey):
    await journey.install()
    i = 1 / journey.res.settings.providers.exotel.calls_per_second
    journey.start = journey.res.clock.now()
    for number, phone in enumerate(PHONES):
        await post_order(journey, phone, number)
    [first] = await accepted_at(journey, 0)

    # The two others held the slots i and 2i: both are due now, in one batch, and the
    # provider refuses one of them.
    journey.exotel.fail_next(1, 503, retry_after=RETRY_AFTER)
    placed = await accepted_at(journey, 2 * i + MS)
    assert len(placed) == 2 and placed[0] == first
    assert len(journey.exotel.calls) == 3
    [refused] = set(PHONES) - set(placed)

    # The refused call waits for the Retry-After, then goes alone; none was placed twice.
    assert await accepted_at(journey, 2 * i + RETRY_AFTER - 0.01) == placed
    assert await accepted_at(journey, 2 * i + RETRY_AFTER + MS) == [*placed, refused]
    assert len(journey.exotel.calls) == 4
    async with journey.res.db.sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "verification.call"))).all()
    attempts = {job.payload["verification_id"]: (job.status, job.attempts) for job in jobs}
    assert sorted(attempts.values()) == [("done", 1), ("done", 1), ("done", 2)]


async def test_a_call_whose_order_was_cancelled_leaves_its_batch_to_the_others(journey: Journey):
    await journey.install()
    i = 1 / journey.res.settings.providers.exotel.calls_per_second
    journey.start = journey.res.clock.now()
    for number, phone in enumerate(PHONES):
        await post_order(journey, phone, number)
    [first] = await accepted_at(journey, 0)

    # The third order is cancelled in Shopify before its slot: its verification stops.
    payload = order_payload(id=5_000_002, order_number=2002, cancelled_at=CANCELLED_AT)
    for address in ("shipping_address", "billing_address"):
        payload[address] = {**payload[address], "phone": PHONES[2]}
    endpoint = url(journey.server, "/webhooks/shopify")
    assert await journey.fake.send_webhook(endpoint, "orders/cancelled", DOMAIN, payload) == 200
    await journey.worker.run_until_idle()

    # Both calls come due in one batch: the cancelled order's is dropped, the other placed.
    assert await accepted_at(journey, 2 * i + MS) == [first, PHONES[1]]
    assert await accepted_at(journey, 10 * i) == [first, PHONES[1]]
    async with journey.res.db.sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "verification.call"))).all()
    assert sorted((job.status, job.attempts) for job in jobs) == [("done", 1)] * 3


async def test_a_call_left_placing_by_a_lost_worker_is_never_dialled_again(journey: Journey):
    await journey.install()
    journey.start = journey.res.clock.now()
    await post_order(journey, PHONES[0], 0)
    assert await accepted_at(journey, 0) == [PHONES[0]]

    # A worker wrote the call `placing` with its slot and died: the request may be out. Its
    # job's lease ran out and another worker takes it.
    async with journey.res.db.transaction() as session:
        await session.execute(update(Call).values(status="placing", provider_call_id=None))
        await session.execute(
            update(Job)
            .where(Job.kind == "verification.call")
            .values(status="queued", due_at=journey.res.clock.now(), locked_until=None)
        )
    assert await accepted_at(journey, MS) == [PHONES[0]]
    assert len(journey.exotel.calls) == 1
    async with journey.res.db.sessions() as session:
        call = await session.scalar(select(Call))
        verification = await session.scalar(select(Verification))
    assert call is not None and verification is not None
    assert (call.status, call.error) == ("unconfirmed", "worker lost while placing the call")
    # The attempt counts as unanswered: the flow has moved on from that call.
    assert verification.data["open_call"] != "0:1"
