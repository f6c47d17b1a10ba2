"""A provider's 429 moves every slot of the account (issue 18): the real app, worker, call
job and Exotel client against the fake Exotel, with a manual clock, at the platform's
default Exotel rate; the fake refuses the first call with Retry-After: 5."""

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

PHONES = ("+919876500011", "+919876500012")


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
    interval = 1 / journey.res.settings.providers.exotel.calls_per_second
    journey.exotel.fail_next(1, 429, retry_after=5)
    journey.start = journey.res.clock.now()
    for number, phone in enumerate(PHONES):
        await post_order(journey, phone, number)

    # One call goes at once and is refused; the other holds the next slot.
    assert await accepted_at(journey, 0) == []
    [refused] = [call["From"] for call in journey.exotel.calls]
    # That held slot moved with the refusal: 5 s later, not at its time.
    assert await accepted_at(journey, interval) == []
    assert await accepted_at(journey, 5 + interval - 0.01) == []
    # (A deferral ends on a whole millisecond.)
    [other] = await accepted_at(journey, 5 + interval + 0.001)
    assert other != refused
    # The refused call took the next free slot, one interval later; none was made twice.
    assert await accepted_at(journey, 5 + 2 * interval - 0.01) == [other]
    assert await accepted_at(journey, 5 + 2 * interval + 0.001) == [other, refused]
    assert len(journey.exotel.calls) == 3
    async with journey.res.db.sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "verification.call"))).all()
    # Waiting for slots and the provider's throttling are not failed attempts.
    assert [(job.status, job.attempts) for job in jobs] == [("done", 1), ("done", 1)]
