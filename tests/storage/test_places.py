"""Fairness between shops at the scheduler level, on SQLite and PostgreSQL with a manual clock:
the intake places each shop's new job after its own last one (storage.jobs.places), so a
quiet shop's webhook that arrives behind another shop's flood is claimed by the next claim,
and two floods share the claims from the moment the second begins. A worker batches a
flooding shop's jobs apart from the other shops', which then do not wait for a flood's batch,
and runs a flood's batches one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from storage.db import Database
from storage.inbox import Accepted, Delivery, Inbox
from storage.jobs import ClaimedJob, JobQueue, Worker
from storage.jobs.places import TICK, TURN, place
from tests.storage.test_pacing import add_shops

T0 = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture
async def inbox(db: Database, queue: JobQueue, clock) -> AsyncIterator[Inbox]:
    inbox = Inbox(db, queue, clock)
    await inbox.start()
    yield inbox
    await inbox.stop()


async def deliver(inbox: Inbox, shop: int, numbers: range) -> None:
    """One batch of webhooks for the shop whose domain is s<shop>.myshopify.com."""
    answers = await asyncio.gather(
        *[
            inbox.accept(
                Delivery(
                    provider="shopify",
                    delivery_id=f"{shop}-{n}",
                    event_id=None,
                    topic="orders/create",
                    triggered_at=None,
                    job_kind="webhook",
                    job_payload={"n": n},
                    shop_domain=f"s{shop}.myshopify.com",
                )
            )
            for n in numbers
        ]
    )
    assert set(answers) == {Accepted.NEW}


async def test_a_quiet_shops_webhook_behind_a_flood_is_claimed_next(db, queue, inbox, clock):
    big, small = await add_shops(db, clock, 2)
    start = clock.now()
    # The big shop's flood, 1,000 webhooks at 3,000 a second, the quiet shop's one in its
    # middle and more of the flood after it: it is neither among the oldest nor the newest.
    for first in range(0, 500, 100):
        await deliver(inbox, 0, range(first, first + 100))
        clock.advance(timedelta(milliseconds=33))
    await deliver(inbox, 1, range(1))
    for first in range(500, 1000, 100):
        clock.advance(timedelta(milliseconds=33))
        await deliver(inbox, 0, range(first, first + 100))
    clock.advance(SECOND)

    claimed = await queue.claim("w", 10)

    assert [job.shop_id for job in claimed].count(small) == 1
    # The flood keeps its order: its oldest nine.
    assert sorted(job.payload["n"] for job in claimed if job.shop_id == big) == list(range(9))
    # Placed at the head, but waiting since it arrived.
    quiet = next(job for job in claimed if job.shop_id == small)
    assert quiet.due_at < quiet.created_at == start + 5 * timedelta(milliseconds=33)
    assert quiet.ready_at == quiet.created_at


async def test_a_second_flood_is_not_queued_behind_the_first(db, queue, inbox, clock):
    first, second = await add_shops(db, clock, 2)
    for start in range(0, 300, 100):
        await deliver(inbox, 0, range(start, start + 100))
        clock.advance(SECOND)
    for start in range(0, 300, 100):
        await deliver(inbox, 1, range(start, start + 100))
        clock.advance(SECOND)
    # The first floods on: the newest jobs are its own.
    await deliver(inbox, 0, range(300, 400))

    claims = [await queue.claim("w", 20) for _ in range(15)]

    # Every claim has some of the second flood, a third of them in all; in arrival order,
    # the second would have none before the first's 300 older jobs were all claimed.
    seconds = [[job.shop_id for job in claim].count(second) for claim in claims]
    assert min(seconds) > 0
    assert sum(seconds) >= 100
    assert sorted(job.payload["n"] for claim in claims for job in claim if job.shop_id == first)[
        :5
    ] == list(range(5))


async def test_a_flood_faster_than_one_job_per_turn_keeps_its_arrival_times(
    db, queue, inbox, clock
):
    await add_shops(db, clock, 1)
    for start in range(0, 500, 100):
        await deliver(inbox, 0, range(start, start + 100))
        clock.advance(TURN * 10)

    claimed = await queue.claim("w", 500)

    late = [job for job in claimed if job.due_at < job.created_at - TURN * 10]
    assert not late
    assert [job.payload["n"] for job in claimed] == list(range(500))


def test_places_follow_each_shops_last_job_and_never_pass_now():
    head = T0 - 10 * SECOND
    last = {(1, "webhook"): T0 - 5 * SECOND, (2, "webhook"): T0 - TURN / 2}
    keys = [(1, "webhook"), (3, "webhook"), (1, "webhook"), (2, "webhook"), None, (3, "other")]

    assert place(keys, T0, head, last) == [
        T0 - 5 * SECOND + TURN,  # after its last due job
        head,  # nothing due: the head
        T0 - 5 * SECOND + 2 * TURN,  # after the one just placed
        T0,  # its turn would come after now: now
        T0,  # no shop: its arrival
        head,  # another kind is another run
    ]
    # An empty queue, or one whose jobs are all due later: now, a run packed a tick apart.
    assert place([(1, "webhook")], T0, None, {}) == [T0]
    assert place([(1, "webhook")] * 3, T0, T0 + SECOND, {}) == [T0 - 2 * TICK, T0 - TICK, T0]


async def test_a_quiet_shops_job_is_not_batched_with_a_flood(db, queue, inbox, clock):
    big, small, other = await add_shops(db, clock, 3)
    await deliver(inbox, 0, range(120))
    await deliver(inbox, 1, range(1))
    await deliver(inbox, 2, range(2))
    batches: list[list[int]] = []
    running: list[list[int]] = []
    beside: list[list[list[int]]] = []  # the batches running as each one ends

    async def together(jobs: list[ClaimedJob]) -> list[BaseException | None]:
        shops = [job.shop_id for job in jobs]
        batches.append(shops)
        running.append(shops)
        for _ in range(3):
            await asyncio.sleep(0)  # let any other batch start, if it may
        beside.append(list(running))
        running.remove(shops)
        return [None] * len(jobs)

    # A worker process of its own: no intake beside it to give way to.
    worker = Worker(
        JobQueue(db, clock, queue.settings),
        {},
        clock=clock,
        settings=queue.settings.model_copy(update={"concurrency": 200}),
        wakeup=db.wakeup,
        batch_handlers={"webhook": together},
        paced=("webhook",),
    )
    assert await worker.run_until_idle() == 123

    # The quiet shops' jobs in one short batch, which does not wait for the flood's to commit;
    # the flood's in batches of at most BATCH_SIZE, the oldest in a shorter first one, run one
    # at a time, with the quiet one beside the first.
    quiet = [batch for batch in batches if big not in batch]
    assert [sorted(batch) for batch in quiet] == [[small, other, other]]
    assert [len(batch) for batch in batches if big in batch] == [10, 50, 50, 10]
    assert all(set(batch) == {big} for batch in batches if big in batch)
    assert max(sum(big in batch for batch in together) for together in beside) == 1
    assert any(len(together) == 2 and big not in together[0] for together in beside)
