"""Pacing under a rate limit, one process, on SQLite and PostgreSQL, in-process and Redis
limits (manual clock, no sleeps): jobs that must wait reserve their slots and start at them,
none early, none lost, none twice, also shared by two workers on PostgreSQL + Redis; a
provider's throttling moves every slot of its key; and shops take turns in the claim, so one
shop's backlog does not hold back another's jobs.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import uuid
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from clock import ManualClock
from flows.jobs import space_send, throttled, wait_for_slot
from providers.base import ProviderError
from storage.db import Database
from storage.jobs import ClaimedJob, JobQueue, NewJob, Worker
from storage.models import Job, Shop
from storage.ratelimit import LocalRateLimiter, RedisRateLimiter

KEY = "exotel:shop:7:+911140000000"
RATE = 4.0  # sends per second: one slot every 250 ms
MS = 0.0011  # waits are whole milliseconds, and Redis keeps times to 14 digits


@pytest.fixture(params=["memory", "redis"])
def limiter(request, clock):
    if request.param == "memory":
        return LocalRateLimiter(clock)
    redis = request.getfixturevalue("redis")
    return RedisRateLimiter(redis, clock, prefix=f"test:{uuid.uuid4().hex}:")


class Sender:
    """A send job's handler: waits for its slot, then records the send (job number, time);
    the provider throttles the sends whose turn is named in `refuse` (turn: seconds)."""

    def __init__(self, limiter, clock: ManualClock, refuse: dict[int, float]) -> None:
        self.limiter = limiter
        self.clock = clock
        self.refuse = refuse
        self.sent: list[tuple[int, float]] = []
        self.refused: list[tuple[int, float]] = []

    async def handle(self, job: ClaimedJob) -> None:
        now = self.clock.now()
        await wait_for_slot(self.limiter, job, KEY, RATE, now)
        await space_send(self.limiter, KEY, RATE)
        turn = len(self.sent) + len(self.refused)
        if turn in self.refuse:
            self.refused.append((job.payload["n"], now.timestamp()))
            answer = ProviderError(
                "throttled (HTTP 429)",
                retryable=True,
                code="THROTTLED",
                retry_after=self.refuse[turn],
            )
            raise await throttled(self.limiter, job, KEY, RATE, now, answer)
        self.sent.append((job.payload["n"], now.timestamp()))


def make_worker(queue: JobQueue, handler) -> Worker:
    return Worker(
        queue,
        {"send": handler},
        clock=queue.clock,
        settings=queue.settings,
        wakeup=queue.db.wakeup,
        rng=random.Random(3),
    )


async def enqueue_sends(db: Database, queue: JobQueue, count: int, shop_id=None) -> None:
    async with db.transaction() as session:
        await queue.enqueue(
            session, *[NewJob("send", {"n": n}, shop_id=shop_id) for n in range(count)]
        )


async def drain(queue: JobQueue, workers: Worker | list[Worker], clock: ManualClock) -> int:
    """Run every job (the workers together, each round started by the next one: it claims
    first), moving the clock to each next due time; the number of runs."""
    together = workers if isinstance(workers, list) else [workers]
    rounds = itertools.count()

    async def run() -> int:
        first = next(rounds) % len(together)
        turn = together[first:] + together[:first]
        return sum(await asyncio.gather(*(worker.run_until_idle() for worker in turn)))

    runs = await run()
    while (due := await queue.next_due()) is not None:
        clock.set(max(due, clock.now()))
        runs += await run()
    return runs


def assert_one_slot_apart(sent: list[tuple[int, float]], start: float, count: int) -> None:
    assert sorted(n for n, _ in sent) == list(range(count)), "a send was lost or repeated"
    times = sorted(at for _, at in sent)
    for k, at in enumerate(times):
        slot = start + k / RATE
        assert slot - 1e-4 <= at <= slot + MS, f"send {k} at +{at - start:.4f}s, slot +{k / RATE}"


async def test_jobs_for_one_account_start_at_their_slots(db, queue, limiter, clock):
    sender = Sender(limiter, clock, {})
    worker = make_worker(queue, sender.handle)
    start = clock.now().timestamp()
    await enqueue_sends(db, queue, 20)

    runs = await drain(queue, worker, clock)

    assert_one_slot_apart(sender.sent, start, 20)
    # Each waiting job came back once, at its slot: no job asked again and again.
    assert runs == 20 + 19
    assert await queue.counts() == {"queued": 0, "running": 0, "done": 20, "dead": 0}


async def test_two_workers_on_postgresql_and_redis_share_one_accounts_slots(
    pg_migrated_url, redis_url, clock, jobs_settings
):
    """Two workers, each with its own database connections and its own Redis client, run
    one account's sends (manual clock): together they send one slot apart, none early, none
    lost, none twice, each waiting job back once."""
    prefix = f"test:{uuid.uuid4().hex}:"
    dbs = [Database(pg_migrated_url) for _ in range(2)]
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    try:
        async with dbs[0].transaction() as session:
            await session.execute(Job.__table__.delete())
        settings = jobs_settings.model_copy(update={"concurrency": 10})
        queues = [JobQueue(db, clock, settings) for db in dbs]
        senders = [
            Sender(RedisRateLimiter(client, clock, prefix=prefix), clock, {}) for client in clients
        ]
        workers = [make_worker(q, s.handle) for q, s in zip(queues, senders, strict=True)]
        start = clock.now().timestamp()
        await enqueue_sends(dbs[0], queues[0], 30)

        runs = await drain(queues[0], workers, clock)

        assert_one_slot_apart(senders[0].sent + senders[1].sent, start, 30)
        assert senders[0].sent and senders[1].sent, "one worker did everything"
        assert runs == 30 + 29
        assert await queues[0].counts() == {"queued": 0, "running": 0, "done": 30, "dead": 0}
    finally:
        for client in clients:
            await client.aclose()
        for db in dbs:
            await db.close()


async def test_a_late_batch_takes_the_slots_after_the_first(db, queue, limiter, clock):
    sender = Sender(limiter, clock, {})
    worker = make_worker(queue, sender.handle)
    start = clock.now().timestamp()
    await enqueue_sends(db, queue, 4)
    await worker.run_until_idle()
    clock.advance(timedelta(milliseconds=100))
    async with db.transaction() as session:
        await queue.enqueue(session, *[NewJob("send", {"n": n}) for n in range(4, 8)])

    await drain(queue, worker, clock)

    assert_one_slot_apart(sender.sent, start, 8)


async def test_a_throttled_send_moves_every_slot_of_the_account(db, queue, limiter, clock):
    # The provider refuses the third send for 2 s: every send after it waits 2 s more (not
    # only the refused one, which takes the next free slot), still one slot apart.
    sender = Sender(limiter, clock, {2: 2.0})
    worker = make_worker(queue, sender.handle)
    start = clock.now().timestamp()
    await enqueue_sends(db, queue, 8)

    await drain(queue, worker, clock)

    [(refused, refused_at)] = sender.refused
    assert refused_at == pytest.approx(start + 2 / RATE, abs=MS)
    assert sorted(n for n, _ in sender.sent) == list(range(8))
    offsets = [at - start for _, at in sorted(sender.sent, key=lambda sent: sent[1])]
    expected = [0, 1 / RATE] + [k / RATE + 2.0 for k in range(3, 9)]
    assert offsets == pytest.approx(expected, abs=2 * MS)
    assert dict(sender.sent)[refused] == pytest.approx(start + 8 / RATE + 2.0, abs=2 * MS)
    assert await queue.counts() == {"queued": 0, "running": 0, "done": 8, "dead": 0}


async def test_several_sends_throttled_together_move_the_slots_once(limiter, clock):
    # A batch's three slots, asked at once: one interval apart from now.
    first = await limiter.reserve(KEY, RATE, 3)
    assert [slot.wait for slot in first] == pytest.approx([0, 1 / RATE, 2 / RATE], abs=MS)
    for _ in range(3):
        await limiter.throttled(KEY, 1.0)
    [slot] = await limiter.reserve(KEY, RATE)
    # The slots resume 1 s from now, not 3 s: three refusals name the same moment.
    assert slot.wait == pytest.approx(1.0 + 3 / RATE, abs=MS)
    assert slot.shift == await limiter.shift(KEY) == pytest.approx(1.0, abs=MS)


async def test_a_slot_held_past_a_closed_window_is_given_up(db, queue, limiter, clock):
    """A job that comes back long after its slot (it waited for a calling window) takes a
    new one rather than going at once beside the jobs that now hold theirs."""
    sender = Sender(limiter, clock, {})
    worker = make_worker(queue, sender.handle)
    await enqueue_sends(db, queue, 2)
    await worker.run_until_idle()
    clock.advance(timedelta(hours=9))
    await limiter.reserve(KEY, RATE)  # another job's slot, now
    await worker.run_until_idle()
    assert [n for n, _ in sender.sent] == [0]
    clock.advance(timedelta(seconds=1 / RATE))
    await worker.run_until_idle()
    assert [n for n, _ in sender.sent] == [0, 1]


async def add_shops(db: Database, clock: ManualClock, count: int) -> list[int]:
    async with db.transaction() as session:
        shops = [
            Shop(domain=f"s{n}.myshopify.com", created_at=clock.now(), updated_at=clock.now())
            for n in range(count)
        ]
        session.add_all(shops)
        await session.flush()
        return [shop.id for shop in shops]


async def test_a_big_shops_backlog_does_not_hold_back_a_small_shops_job(db, queue, clock):
    big, small = await add_shops(db, clock, 2)
    await enqueue_sends(db, queue, 1000, shop_id=big)
    clock.advance(timedelta(seconds=1))
    await enqueue_sends(db, queue, 1, shop_id=small)

    claimed = await queue.claim("w", 10)

    assert [job.shop_id for job in claimed].count(small) == 1
    assert len(claimed) == 10


async def test_shops_take_turns_in_the_claim(db, queue, clock):
    shops = await add_shops(db, clock, 3)
    for shop_id, count in zip(shops, (300, 5, 5), strict=True):
        await enqueue_sends(db, queue, count, shop_id=shop_id)
        clock.advance(timedelta(milliseconds=10))

    first = await queue.claim("w", 12)
    second = await queue.claim("w", 12)

    assert collections.Counter(job.shop_id for job in first) == {s: 4 for s in shops}
    taken = collections.Counter(job.shop_id for job in first + second)
    assert taken == {shops[0]: 14, shops[1]: 5, shops[2]: 5}
    # Within a shop, oldest first.
    big = [job.payload["n"] for job in first + second if job.shop_id == shops[0]]
    assert sorted(big) == list(range(14))
