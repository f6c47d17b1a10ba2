"""Lanes in the claim, on SQLite and PostgreSQL, with a manual clock: due jobs of a higher lane
(a burst's contacts) are claimed ahead of older due jobs of lower lanes (its intake), a job
not yet due blocks nobody, shops take turns inside a lane, and a lane keeps a quarter of every
claim for the lanes below it, so none starves. Each lane has the worker's concurrency: contacts
waiting for their slots never keep the intake from being claimed. A worker's turn records and
claims in one transaction, and a skip-locked claim on PostgreSQL fills in from the next jobs in
lane order.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import select

from clock import ManualClock
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob, Outcome, Worker
from storage.models import Job
from tests.storage.test_pacing import add_shops

LANES = {"contact": 2, "start": 1}


async def add(db: Database, queue: JobQueue, kind: str, count: int, **fields) -> None:
    async with db.transaction() as session:
        await queue.enqueue(session, *[NewJob(kind, {"n": n}, **fields) for n in range(count)])


async def intake_then_contacts(
    db: Database,
    queue: JobQueue,
    clock: ManualClock,
    webhooks: int,
    contacts: int,
    on_webhook: Callable[[ClaimedJob], Awaitable[None]],
    on_contact: Callable[[ClaimedJob], Awaitable[None]],
) -> Worker:
    """Due intake, due contacts a second younger, and a worker of concurrency 4 in lanes."""
    await add(db, queue, "webhook", webhooks)
    clock.advance(timedelta(seconds=1))
    await add(db, queue, "contact", contacts)
    return Worker(
        queue,
        {"webhook": on_webhook, "contact": on_contact},
        clock=clock,
        settings=queue.settings.model_copy(update={"concurrency": 4}),
        wakeup=db.wakeup,
        rng=random.Random(5),
        lanes=LANES,
    )


def kinds(claimed: list[ClaimedJob]) -> collections.Counter[str]:
    return collections.Counter(job.kind for job in claimed)


async def test_a_due_contact_is_claimed_ahead_of_older_due_intake(db, queue, clock):
    await add(db, queue, "webhook", 500)
    clock.advance(timedelta(seconds=1))
    await add(db, queue, "start", 3)
    clock.advance(timedelta(seconds=1))
    await add(db, queue, "contact", 2)
    await add(db, queue, "contact", 5, due_at=clock.now() + timedelta(seconds=1))

    claimed = await queue.claim("w", 8, LANES)

    # The contacts due now, then the starts, then the oldest intake; the contacts deferred
    # to a later slot are not due and hold nothing back.
    assert [job.kind for job in claimed] == ["contact"] * 2 + ["start"] * 3 + ["webhook"] * 3
    assert [job.payload["n"] for job in claimed if job.kind == "webhook"] == [0, 1, 2]
    # Without lanes, the same claim is by due time alone.
    assert kinds(await queue.claim("w", 8)) == {"webhook": 8}


async def test_shops_take_turns_inside_a_lane(db, queue, clock):
    big, small = await add_shops(db, clock, 2)
    await add(db, queue, "contact", 300, shop_id=big)
    clock.advance(timedelta(seconds=1))
    await add(db, queue, "webhook", 100, shop_id=small)
    clock.advance(timedelta(seconds=1))
    await add(db, queue, "contact", 2, shop_id=small)

    claimed = await queue.claim("w", 8, LANES)

    # The contacts' share, 6, dealt in turns: big, small, big, small, big, big.
    contacts = [job.shop_id for job in claimed if job.kind == "contact"]
    assert collections.Counter(contacts) == {big: 4, small: 2}
    # Within a shop, oldest first.
    assert [job.payload["n"] for job in claimed if job.shop_id == big] == [0, 1, 2, 3]
    assert kinds(claimed)["webhook"] == 2


async def test_a_lane_keeps_a_quarter_of_the_claim_for_the_lanes_below(db, queue, clock):
    async def burst(contacts: int) -> None:
        await add(db, queue, "webhook", 100)
        clock.advance(timedelta(seconds=1))
        await add(db, queue, "start", 100)
        clock.advance(timedelta(seconds=1))
        await add(db, queue, "contact", contacts)

    async def finish(*kinds: str) -> None:
        async with db.transaction() as session:
            await session.execute(
                Job.__table__.update().where(Job.kind.in_(kinds)).values(status="done")
            )

    await burst(1000)
    # Of 20: the contacts take 15, the starts 4 of the 5 left, the intake the last one.
    assert kinds(await queue.claim("w", 20, LANES)) == {"contact": 15, "start": 4, "webhook": 1}
    # While the lower lanes have nothing due, a lane takes the whole claim.
    await finish("start", "webhook")
    assert kinds(await queue.claim("w", 20, LANES)) == {"contact": 20}
    # A lane with fewer due jobs than its share leaves the rest to the lanes below.
    await finish("contact")
    await burst(2)
    assert kinds(await queue.claim("w", 20, LANES)) == {"contact": 2, "start": 14, "webhook": 4}


async def test_a_claim_takes_no_more_of_a_lane_than_its_room(db, queue, clock):
    await add(db, queue, "webhook", 10)
    clock.advance(timedelta(seconds=1))
    await add(db, queue, "contact", 10)

    # Room for 2 more contacts: the rest of the claim goes to the intake.
    turn = await queue.exchange("w", [], 8, LANES, room={2: 2})
    assert kinds(turn.claimed) == {"contact": 2, "webhook": 6}
    # Contacts were left for want of room: no time to wake for, the worker waits for its own
    # jobs to finish.
    turn = await queue.exchange("w", [], 8, LANES, room={2: 0})
    assert kinds(turn.claimed) == {"webhook": 4}
    assert (turn.full, turn.next_due) == (False, None)


async def test_contacts_waiting_for_their_slots_do_not_hold_the_intake_back(db, queue, clock):
    """A worker of concurrency 4 whose contacts all wait (as for their provider's slots):
    the intake is still claimed and run beside them, and no more than 4 contacts are held."""
    slots_come = asyncio.Event()
    intake_done = asyncio.Event()
    contacts_done = asyncio.Event()
    ran: list[str] = []
    waiting = most_waiting = 0

    async def contact(job: ClaimedJob) -> None:
        nonlocal waiting, most_waiting
        waiting += 1
        most_waiting = max(most_waiting, waiting)
        await slots_come.wait()
        waiting -= 1
        ran.append(job.kind)
        if ran.count("contact") == 6:
            contacts_done.set()

    async def webhook(job: ClaimedJob) -> None:
        ran.append(job.kind)
        if ran.count("webhook") == 9:
            intake_done.set()

    worker = await intake_then_contacts(db, queue, clock, 9, 6, webhook, contact)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(intake_done.wait(), 30)
        assert ran == ["webhook"] * 9
        assert most_waiting == 4
        slots_come.set()
        await asyncio.wait_for(contacts_done.wait(), 30)
    finally:
        worker.stop()
        await running
    assert most_waiting == 4
    assert (await queue.counts())["queued"] == 0


async def test_the_worker_runs_higher_lanes_first(db, queue, clock):
    started: list[str] = []

    async def record(job: ClaimedJob) -> None:
        started.append(job.kind)

    worker = await intake_then_contacts(db, queue, clock, 12, 3, record, record)

    assert await worker.run_until_idle() == 15
    assert started[:3] == ["contact"] * 3
    assert sorted(started[3:]) == ["webhook"] * 12


async def test_a_workers_turn_records_and_claims_in_one_transaction(db, queue, clock):
    await add(db, queue, "webhook", 3)
    await add(db, queue, "webhook", 1, due_at=clock.now() + timedelta(seconds=30))
    first = await queue.exchange("w", [], 2, LANES)
    assert (len(first.claimed), first.full, first.next_due) == (2, True, None)

    outcomes = [Outcome(job.id, "done") for job in first.claimed]
    turn = await queue.exchange("w", outcomes, 2, LANES)

    assert (len(turn.claimed), turn.full) == (1, False)
    assert turn.next_due == clock.now() + timedelta(seconds=30)
    assert await queue.counts() == {"queued": 1, "running": 1, "done": 2, "dead": 0}
    # Results only: no claim, no time asked.
    last = await queue.exchange("w", [Outcome(turn.claimed[0].id, "done")], 0, LANES)
    assert (last.claimed, last.next_due) == ([], None)
    assert await queue.counts() == {"queued": 1, "running": 0, "done": 3, "dead": 0}


async def test_contacts_another_worker_holds_are_skipped_in_lane_order(
    pg_migrated_url, clock, jobs_settings
):
    """Two workers on PostgreSQL: a claim skips the contacts locked by another's claim
    still committing and fills in with the next jobs in lane order, none twice."""
    dbs = [Database(pg_migrated_url) for _ in range(2)]
    queues = [JobQueue(db, clock, jobs_settings) for db in dbs]
    try:
        async with dbs[0].transaction() as session:
            await session.execute(Job.__table__.delete())
        await add(dbs[0], queues[0], "webhook", 20)
        clock.advance(timedelta(seconds=1))
        await add(dbs[0], queues[0], "start", 2)
        await add(dbs[0], queues[0], "contact", 4)

        async with dbs[0].transaction() as other:
            held = (
                await other.scalars(
                    select(Job.id)
                    .where(Job.kind == "contact")
                    .order_by(Job.id)
                    .limit(3)
                    .with_for_update()
                )
            ).all()
            claimed = await queues[1].claim("w2", 4, LANES)
            assert [job.kind for job in claimed] == ["contact", "start", "start", "webhook"]
            assert not {job.id for job in claimed} & set(held)
        rest = await queues[0].claim("w1", 4, LANES)
        assert kinds(rest) == {"contact": 3, "webhook": 1}
        assert not {job.id for job in rest} & {job.id for job in claimed}
    finally:
        for db in dbs:
            await db.close()
