"""A provider's 429 moves every slot of the account (issue 18): the real app, worker, call
job and Exotel client against the fake Exotel, with a manual clock, at the platform's
default Exotel rate; the fake refuses the second call with Retry-After: 5."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from providers.sandbox.shopify import order_payload
from storage.models import Job
from tests.web import test_verification_journeys as journeys
from tests.web.test_shopify import DOMAIN, url
from tests.web.test_verification_journeys import Journey

# The journeys' fixtures: the app, the worker and the fake Shopify, Exotel and Gupshup.
browser, exotel, fake, gupshup = journeys.browser, journeys.exotel, journeys.fake, journeys.gupshup
journey, port, server = journeys.journey, journeys.port, journeys.server
settings, urls = journeys.settings, journeys.urls

PHONES = ("+919876500011", "+919876500012", "+919876500013")


async def post_order(journey: Journey, phone: str, number: int) -> None:
    payload = order_payload(id=5_000_000 + number, order_number=2000 + number)
    for address in ("shipping_address", "billing_address"):
        payload[address] = {**payload[address], "phone": phone}
    journey.fake.add_order(DOMAIN, payload)
    endpoint = url(journey.server, "/webhooks/shopify")
    assert await journey.fake.send_webhook(endpoint, "orders/create", DOMAIN, payload) == 200


async def accepted_at(journey: Journey, seconds: float) -> list[str]:
    """Move the clock to `seconds` after the orders, run what is due; the calls accepted."""
    clock = journey.res.clock
    clock.set(journey.start + timedelta(seconds=seconds))
    await journey.worker.run_until_idle()
    return [call["From"] for call in journey.exotel.placed_calls.values()]


async def test_a_429_moves_the_slot_another_order_already_held(journey: Journey):
    await journey.install()
    i = 1 / journey.res.settings.providers.exotel.calls_per_second
    ms = 0.001  # a deferral ends on a whole millisecond
    journey.start = journey.res.clock.now()
    for number, phone in enumerate(PHONES):
        await post_order(journey, phone, number)

    # One call goes at once; the two others hold the next slots (i and 2i).
    [first] = await accepted_at(journey, 0)
    journey.exotel.fail_next(1, 429, retry_after=5)
    # The call at i is refused for 5 s...
    assert await accepted_at(journey, i + ms) == [first]
    refused = journey.exotel.calls[-1]["From"]
    # ...and the slot the third order already held (2i) moves with it.
    assert await accepted_at(journey, 2 * i + 5 - 0.01) == [first]
    [_, moved] = await accepted_at(journey, 2 * i + 5 + ms)
    assert moved not in (first, refused)
    # The refused call takes the next free slot; none was made twice.
    assert await accepted_at(journey, 3 * i + 5 - 0.01) == [first, moved]
    assert await accepted_at(journey, 3 * i + 5 + ms) == [first, moved, refused]
    assert len(journey.exotel.calls) == 4
    async with journey.res.db.sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "verification.call"))).all()
    # Waiting for slots and the provider's throttling are not failed attempts.
    assert [(job.status, job.attempts) for job in jobs] == [("done", 1)] * 3
