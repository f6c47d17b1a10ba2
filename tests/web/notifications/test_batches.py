"""Notification jobs a batch at a time, through the real app, worker and send jobs to the fake
Exotel: one batch of mixed events (consenting, not consenting, announced twice, stale, held by
quiet hours, urgent, and one poisoned job) gives the same timeline and the same SMS as the
same jobs run one at a time, and the poisoned job fails alone."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from flows.notifications.events import DELIVERED, OUT_FOR_DELIVERY, SHIPPED, JourneyEvent
from flows.notifications.job import NOTIFY_JOB, notify_job
from storage.models import Activity, Job, Order
from tests.web.notifications.helpers import (
    CONSENTING,
    NOT_CONSENTING,
    NOTIFYING,
    paid_order,
    texts,
)

# The test clock starts at 14:30 in Kolkata: "shipped" waits until 16:00, out for delivery
# and delivered (urgent) do not.
QUIET = {"active": True, "start_hour": 14, "end_hour": 16}
NOTIFICATIONS = NOTIFYING["notifications"] | {"quiet_hours": QUIET}
NOTIFICATIONS["events"] = NOTIFICATIONS["events"] | {"delivered": {"urgent": True}}
STALE_PHONE, WAITING_PHONE = "+919876500033", "+919876500044"


async def queue(journey, *events: tuple[dict, str]) -> None:
    """Queue the notification jobs of (order, event) in one transaction, as a flood does."""
    async with journey.res.db.transaction() as session:
        await journey.res.queue.enqueue(
            session,
            *(
                notify_job(journey.shop_id, JourneyEvent(kind, str(o["id"]), "shipments"))
                for o, kind in events
            ),
        )


async def outcome(journey) -> dict[str, list[tuple[str, str, str]]]:
    """Per order name: its notification timeline (kind, event, channel), in order."""
    async with journey.res.db.sessions() as session:
        rows = await session.execute(
            select(Order.name, Activity.kind, Activity.detail)
            .join(Order, Activity.order_id == Order.id)
            .where(Activity.kind.like("notification%") | Activity.kind.like("message%"))
            .order_by(Activity.id)
        )
        found: dict[str, list[tuple[str, str, str]]] = {}
        for name, kind, detail in rows:
            entry = (kind, detail.get("event", ""), detail.get("channel", ""))
            found.setdefault(name, []).append(entry)
        return found


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "one-at-a-time"])
async def test_a_batch_of_mixed_events_does_what_one_at_a_time_does(journey, batched, caplog):
    await journey.install(NOTIFYING | {"notifications": NOTIFICATIONS})
    if not batched:
        journey.worker.handlers[NOTIFY_JOB] = journey.res.notifier().handle
    consenting = await paid_order(journey, CONSENTING)
    refusing = await paid_order(journey, NOT_CONSENTING, "unsubscribed")
    stale = await paid_order(journey, STALE_PHONE)
    waiting = await paid_order(journey, WAITING_PHONE)
    await queue(journey, (stale, DELIVERED))
    await journey.worker.run_until_idle()
    assert len(texts(journey, STALE_PHONE)) == 1

    poisoned = {**consenting, "id": "no-such-order"}
    await queue(
        journey,
        (consenting, OUT_FOR_DELIVERY),
        (refusing, OUT_FOR_DELIVERY),
        (consenting, OUT_FOR_DELIVERY),  # announced twice
        (stale, SHIPPED),  # behind "delivered"
        (waiting, SHIPPED),  # quiet hours
        (poisoned, "teleported"),  # an event this version does not know
    )
    with caplog.at_level(logging.ERROR, "flows.notifications.job"):
        await journey.worker.run_until_idle()
        await journey.settle()
    failed_alone = "a batch of 6 notification jobs failed: one at a time" in caplog.text
    assert failed_alone == batched

    (sms,) = texts(journey, CONSENTING)
    assert "out for delivery" in sms
    assert texts(journey, NOT_CONSENTING) == [] and texts(journey, WAITING_PHONE) == []
    assert len(texts(journey, STALE_PHONE)) == 1
    ofd = "out_for_delivery"
    timeline = await outcome(journey)
    assert timeline[consenting["name"]] == [
        ("notification_event", ofd, ""),
        ("message_sent", "", "sms"),
    ]
    assert timeline[refusing["name"]] == [
        ("notification_event", ofd, ""),
        ("notification_skipped", ofd, "sms"),
    ]
    assert timeline[stale["name"]] == [
        ("notification_event", "delivered", ""),
        ("message_sent", "", "sms"),
        ("notification_stale", "shipped", ""),
    ]
    assert waiting["name"] not in timeline
    async with journey.res.db.sessions() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == NOTIFY_JOB))).all()
    kinds = {(job.payload["event"]["kind"], job.status) for job in jobs if job.status != "done"}
    # The poisoned job waits for its retry alone; the quiet hours' for their end.
    assert kinds == {("teleported", "queued"), (SHIPPED, "queued")}

    await journey.advance(90)  # 16:00 in Kolkata
    await journey.settle()
    (sms,) = texts(journey, WAITING_PHONE)
    assert "fulfilled" in sms
    assert (await outcome(journey))[waiting["name"]] == [
        ("notification_event", "shipped", ""),
        ("message_sent", "", "sms"),
    ]
