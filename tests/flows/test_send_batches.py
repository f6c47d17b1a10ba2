"""Send jobs a batch at a time (issue 18), through the real worker, send job and Twilio client
against the fake Twilio, with a manual clock, on SQLite and PostgreSQL: a flood of SMS for one
account at its rate goes out one slot apart, none before its slot, none twice; and a STOP
accepted while a batch is under way (after the batch was prepared, before its send gate)
suppresses the customer's message in that batch; and a send whose turn a send of another
batch took while it waited waits for the next turn instead of going back to the queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from flows.channels.messaging import SEND_JOB, MessageSender, queue_message
from flows.jobs import SENT, SLOT, SPACE_WAIT_SECONDS, space_send
from main import make_worker
from storage.models import Job, Message
from storage.ratelimit import LocalRateLimiter
from tests.web import test_messaging as messaging
from tests.web.inbound.test_stop_at_acceptance import texted
from tests.web.test_messaging import CUSTOMER

# The messaging tests' fixtures: the app, the resources and the fake providers.
fakes, port, settings, res = messaging.fakes, messaging.port, messaging.settings, messaging.res
server, order = messaging.server, messaging.order

# CUSTOMER's message is the first of the flood, the one that may go at once.
PHONES = (CUSTOMER, *(f"+91987650010{n}" for n in range(5)))
EPSILON = 1e-6


class StopDuringTheBatch:
    """The sender's rate limiter; when a batch first asks it for a slot (the batch already
    prepared, before its send gate), the customer's STOP is accepted."""

    def __init__(self, limiter, fakes, server) -> None:
        self.limiter, self.fakes, self.server = limiter, fakes, server
        self.stopped = False

    async def reserve(self, key: str, per_second: float, count: int = 1):
        if not self.stopped:
            self.stopped = True
            await texted(self.fakes, self.server, "STOP")
        return await self.limiter.reserve(key, per_second, count)

    def __getattr__(self, name: str):
        return getattr(self.limiter, name)


class AnotherBatch:
    """The sender's rate limiter; a send told to wait finds its turn taken by another batch's
    send (once), and the clock moves on by each wait."""

    def __init__(self, limiter, clock) -> None:
        self.limiter, self.clock = limiter, clock
        self.took = False

    async def try_acquire(self, key: str, per_second: float, burst: int = 1) -> float:
        wait = await self.limiter.try_acquire(key, per_second, burst)
        if wait > 0:
            self.clock.advance(timedelta(seconds=wait))
            if not self.took:
                self.took = await self.limiter.try_acquire(key, per_second, burst) == 0
        return wait


async def never_refused(account_id: int, reason: str) -> None:
    raise AssertionError(f"account {account_id} refused: {reason}")


async def test_a_flood_of_sends_keeps_its_slots_and_the_send_gate(
    res, server, fakes, order, clock
):
    rate = res.settings.providers.twilio.messages_per_second
    limiter = StopDuringTheBatch(res.limiter, fakes, server)
    worker = make_worker(res)
    worker.batch_handlers[SEND_JOB] = MessageSender(
        res.db, clock, limiter, res.router(), res.keys, never_refused, metrics=res.metrics
    ).handle_batch
    start = clock.now()
    async with res.db.transaction() as session:
        for n, phone in enumerate(PHONES):
            await queue_message(
                session,
                res.queue,
                start,
                shop_id=order.shop_id,
                channel="sms",
                to=phone,
                idempotency_key=f"flood-{n}",
                body=f"Order {n} is on its way",
                order_id=order.id,
            )

    await worker.run_until_idle()
    for _ in range(50):
        if (due := await res.queue.next_due()) is None:
            break
        clock.set(max(due, clock.now()))
        await worker.run_until_idle()

    assert limiter.stopped
    # The STOP's customer got nothing; every other one its message, once.
    assert sorted(m["To"] for m in fakes["twilio"].messages) == sorted(PHONES[1:])
    async with res.db.sessions() as session:
        rows = (await session.scalars(select(Message).where(Message.direction == "out"))).all()
        jobs = {
            job.payload["message_id"]: job
            for job in await session.scalars(select(Job).where(Job.kind == SEND_JOB))
        }
    [stopped] = [row for row in rows if row.idempotency_key == "flood-0"]
    assert (stopped.status, stopped.error_code) == ("suppressed", "OPTED_OUT")
    assert stopped.updated_at == start, "suppressed in the first batch"
    times = sorted(row.updated_at.timestamp() for row in rows if row.status == "sent")
    assert len(times) == len(PHONES) - 1
    for k, at in enumerate(times):
        assert at >= start.timestamp() + k / rate - EPSILON, f"send {k} before its slot"
    for row in rows:
        held = jobs[row.id].payload.get(SLOT)
        if row.status == "sent" and held is not None:
            assert row.updated_at.timestamp() >= held["at"] - EPSILON, "sent before its slot"
    assert all(job.status == "done" for job in jobs.values())


async def test_a_send_whose_turn_another_batch_took_waits_for_the_next(clock):
    limiter, key, rate = AnotherBatch(LocalRateLimiter(clock), clock), "exotel:shop:1:", 100.0
    while not await limiter.limiter.try_acquire(key + SENT, rate, 5):
        pass  # the burst a send may go in is spent: the next send waits
    start = clock.now()
    await space_send(limiter, key, rate, SPACE_WAIT_SECONDS)
    assert limiter.took
    assert (clock.now() - start).total_seconds() == pytest.approx(2 / rate)
