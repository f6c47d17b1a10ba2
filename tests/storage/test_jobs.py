"""Durable jobs in one process, on SQLite and PostgreSQL, with a manual clock (no sleeps)."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from clock import ManualClock
from settings import JobsSettings
from storage.db import JOBS_CHANNEL, Database
from storage.jobs import (
    ClaimedJob,
    Deferred,
    JobQueue,
    NewJob,
    Outcome,
    PermanentJobError,
    RetryLater,
    Worker,
    backoff_seconds,
)
from storage.jobs.worker import BATCH_SIZE
from storage.models import Job, Message, Shop
from storage.wakeup import PostgresWakeup, RedisWakeup, Wakeup
from tests.conftest import asyncpg_dsn


def make_worker(queue: JobQueue, handlers: dict, **kwargs) -> Worker:
    return Worker(
        queue,
        handlers,
        clock=queue.clock,
        settings=queue.settings,
        wakeup=queue.db.wakeup,
        rng=random.Random(7),
        **kwargs,
    )


async def job_rows(db: Database) -> list[Job]:
    async with db.sessions() as session:
        return list((await session.scalars(select(Job).order_by(Job.id))).all())


async def add_shop(db: Database, clock: ManualClock) -> int:
    async with db.transaction() as session:
        shop = Shop(domain="demo.myshopify.com", created_at=clock.now(), updated_at=clock.now())
        session.add(shop)
        await session.flush()
        return shop.id


async def test_enqueue_is_part_of_the_callers_transaction(db, queue):
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await queue.enqueue(session, NewJob("noop"))
            raise RuntimeError("the caller's work failed")
    assert await job_rows(db) == []

    async with db.transaction() as session:
        assert await queue.enqueue(session, NewJob("noop", {"n": 1})) == 1
    [job] = await job_rows(db)
    assert (job.kind, job.payload, job.status, job.attempts) == ("noop", {"n": 1}, "queued", 0)


async def test_idempotency_key_enqueues_once(db, queue):
    async with db.transaction() as session:
        assert await queue.enqueue(session, NewJob("sms", idempotency_key="v1:a1:sms")) == 1
    async with db.transaction() as session:
        added = await queue.enqueue(
            session,
            NewJob("sms", idempotency_key="v1:a1:sms"),
            NewJob("sms", idempotency_key="v1:a2:sms"),
        )
    assert added == 1
    assert [j.idempotency_key for j in await job_rows(db)] == ["v1:a1:sms", "v1:a2:sms"]


async def test_claim_takes_due_jobs_oldest_first_in_batches(db, queue, clock):
    now = clock.now()
    async with db.transaction() as session:
        await queue.enqueue(
            session,
            NewJob("late", due_at=now + timedelta(minutes=5)),
            NewJob("second", due_at=now - timedelta(seconds=1)),
            NewJob("first", due_at=now - timedelta(seconds=2)),
            NewJob("third"),
        )
    claimed = await queue.claim("w1", 2)
    assert [j.kind for j in claimed] == ["first", "second"]
    assert [j.attempts for j in claimed] == [1, 1]
    assert [j.kind for j in await queue.claim("w2", 10)] == ["third"]
    assert await queue.claim("w2", 10) == []
    clock.advance(timedelta(minutes=5))
    assert [j.kind for j in await queue.claim("w2", 10)] == ["late"]


async def test_run_until_idle_executes_each_job_once(db, queue):
    seen: list[int] = []

    async def record(job: ClaimedJob) -> None:
        seen.append(job.payload["n"])

    async with db.transaction() as session:
        await queue.enqueue(session, *[NewJob("record", {"n": n}) for n in range(250)])
    assert await make_worker(queue, {"record": record}).run_until_idle() == 250
    assert sorted(seen) == list(range(250))
    assert await queue.counts() == {"queued": 0, "running": 0, "done": 250, "dead": 0}


async def test_failing_job_backs_off_then_goes_dead(db, queue, clock, jobs_settings):
    attempts: list[int] = []

    async def flaky(job: ClaimedJob) -> None:
        attempts.append(job.attempts)
        raise ConnectionError("provider down")

    worker = make_worker(queue, {"flaky": flaky})
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("flaky"))

    delays = []
    for attempt in (1, 2):
        assert await worker.run_until_idle() == 1
        [job] = await job_rows(db)
        assert job.status == "queued" and job.attempts == attempt
        assert job.last_error == "ConnectionError: provider down"
        delay = (job.due_at - clock.now()).total_seconds()
        ceiling = jobs_settings.backoff_base_seconds * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling
        delays.append(delay)
        # Not due yet: nothing runs until the clock reaches the retry time.
        assert await worker.run_until_idle() == 0
        clock.advance(timedelta(seconds=delay))

    assert delays[1] > delays[0]
    assert await worker.run_until_idle() == 1
    [job] = await job_rows(db)
    assert (job.status, job.attempts, job.finished_at) == ("dead", 3, clock.now())
    assert attempts == [1, 2, 3]
    clock.advance(timedelta(days=1))
    assert await worker.run_until_idle() == 0


async def test_permanent_error_and_unknown_kind_are_dead_at_once(db, queue):
    async def refuse(job: ClaimedJob) -> None:
        raise PermanentJobError("number is on the DND list")

    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("refuse"), NewJob("nobody-handles-this"))
    await make_worker(queue, {"refuse": refuse}).run_until_idle()
    refused, unknown = await job_rows(db)
    assert (refused.status, refused.attempts) == ("dead", 1)
    assert refused.last_error == "PermanentJobError: number is on the DND list"
    assert unknown.status == "dead"
    assert "no handler for job kind 'nobody-handles-this'" in unknown.last_error


async def test_retry_later_honours_the_given_delay(db, queue, clock):
    async def throttled(job: ClaimedJob) -> None:
        raise RetryLater(42, "429 Too Many Requests")

    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("throttled"))
    await make_worker(queue, {"throttled": throttled}).run_until_idle()
    [job] = await job_rows(db)
    assert job.status == "queued"
    assert job.due_at == clock.now() + timedelta(seconds=42)
    assert job.last_error == "RetryLater: 429 Too Many Requests"


async def test_deferred_job_runs_later_without_spending_an_attempt(db, queue, clock):
    runs: list[int] = []

    async def limited(job: ClaimedJob) -> None:
        runs.append(job.attempts)
        if len(runs) < 3:
            raise Deferred(0.5, "rate limit of +15550001 reached")

    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("limited", max_attempts=1))
    worker = make_worker(queue, {"limited": limited})
    for _ in range(3):
        await worker.run_until_idle()
        clock.advance(timedelta(seconds=0.5))
    [job] = await job_rows(db)
    assert runs == [1, 1, 1]
    assert (job.status, job.attempts) == ("done", 1)


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    settings = JobsSettings(backoff_base_seconds=5, backoff_max_seconds=60)
    rng = random.Random(1)
    for attempts, ceiling in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (12, 60)]:
        samples = [backoff_seconds(attempts, settings, rng) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert len(set(samples)) > 100  # jittered, so retries of many jobs spread out


async def test_lost_worker_jobs_are_taken_back_and_effects_recorded_once(db, queue, clock):
    """A worker dies after its effect but before recording the job done: the job runs again,
    and the idempotency key keeps the second execution from recording a second effect."""
    shop_id = await add_shop(db, clock)
    executions: list[int] = []

    async def send(job: ClaimedJob) -> None:
        executions.append(job.id)
        async with db.transaction() as session:
            stmt = db.insert(Message.__table__).on_conflict_do_nothing(
                index_elements=["idempotency_key"]
            )
            await session.execute(
                stmt,
                {
                    "shop_id": shop_id,
                    "channel": "sms",
                    "direction": "out",
                    "provider": "sandbox",
                    "account": "platform",
                    "to_phone": "+919876543210",
                    "idempotency_key": job.idempotency_key,
                    "status": "sent",
                    "created_at": clock.now(),
                    "updated_at": clock.now(),
                },
            )

    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("send", idempotency_key="ver:7:attempt:1:sms"))

    # The first worker claims and performs the effect, then dies before reporting.
    [job] = await queue.claim("doomed", 10)
    await send(job)
    assert await queue.requeue_expired() == 0  # lease still valid
    clock.advance(timedelta(seconds=queue.settings.lease_seconds + 1))
    assert await queue.requeue_expired() == 1

    await make_worker(queue, {"send": send}).run_until_idle()
    [row] = await job_rows(db)
    assert (row.status, row.attempts) == ("done", 2)
    assert executions == [row.id, row.id]
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Message)) == 1


async def test_a_taken_over_job_ignores_its_old_workers_late_result(db, queue, clock):
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("slow"))
    [job] = await queue.claim("old", 1)
    clock.advance(timedelta(seconds=queue.settings.lease_seconds + 1))
    await queue.requeue_expired()
    [again] = await queue.claim("new", 1)
    await queue.finish("old", [Outcome(job.id, "dead", "stale")])
    [row] = await job_rows(db)
    assert (row.status, row.locked_by) == ("running", "new")
    await queue.finish("new", [Outcome(again.id, "done")])
    assert (await job_rows(db))[0].status == "done"


async def test_lease_is_renewed_while_the_job_runs(db, queue, clock):
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("long"))
    [job] = await queue.claim("w", 1)
    clock.advance(timedelta(seconds=queue.settings.lease_seconds - 1))
    await queue.extend("w", [job.id])
    clock.advance(timedelta(seconds=queue.settings.lease_seconds - 1))
    assert await queue.requeue_expired() == 0


async def test_spent_job_of_a_lost_worker_goes_dead(db, queue, clock):
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("crashy", max_attempts=1))
    await queue.claim("doomed", 1)
    clock.advance(timedelta(seconds=queue.settings.lease_seconds + 1))
    await queue.requeue_expired()
    [row] = await job_rows(db)
    assert row.status == "dead"
    assert "worker lost" in row.last_error


async def test_done_jobs_are_pruned_after_retention(db, queue, clock):
    async def noop(job: ClaimedJob) -> None:
        return None

    async with db.transaction() as session:
        await queue.enqueue(
            session, NewJob("noop"), NewJob("noop", due_at=clock.now() + timedelta(days=9))
        )
    await make_worker(queue, {"noop": noop}).run_until_idle()
    assert await queue.prune_done() == 0
    clock.advance(timedelta(hours=queue.settings.keep_done_hours + 1))
    assert await queue.prune_done() == 1
    assert [j.status for j in await job_rows(db)] == ["queued"]


async def test_worker_wakes_on_commit_without_waiting_for_the_poll(db, clock):
    settings = JobsSettings(poll_seconds=60)
    queue = JobQueue(db, clock, settings)
    ran = asyncio.Event()

    async def mark(job: ClaimedJob) -> None:
        ran.set()

    worker = make_worker(queue, {"mark": mark})
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.idle.wait(), timeout=5)
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("mark"))
    # Far below the 60 s poll: only the wake-up can make this in time.
    await asyncio.wait_for(ran.wait(), timeout=5)
    worker.stop()
    await asyncio.wait_for(task, timeout=5)
    assert (await queue.counts())["done"] == 1


async def test_stop_finishes_running_jobs_within_grace(db, clock):
    queue = JobQueue(db, clock, JobsSettings(shutdown_grace_seconds=5))
    release = asyncio.Event()
    started = asyncio.Event()

    async def wait_for_release(job: ClaimedJob) -> None:
        started.set()
        await release.wait()

    worker = make_worker(queue, {"wait": wait_for_release})
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("wait"))
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), timeout=5)
    worker.stop()
    release.set()
    await asyncio.wait_for(task, timeout=5)
    assert await queue.counts() == {"queued": 0, "running": 0, "done": 1, "dead": 0}


async def test_stop_hands_back_jobs_still_running_after_grace(db, clock):
    queue = JobQueue(db, clock, JobsSettings(shutdown_grace_seconds=0))
    started = asyncio.Event()

    async def hang(job: ClaimedJob) -> None:
        started.set()
        await asyncio.Event().wait()

    worker = make_worker(queue, {"hang": hang})
    async with db.transaction() as session:
        await queue.enqueue(session, NewJob("hang"))
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), timeout=5)
    worker.stop()
    await asyncio.wait_for(task, timeout=5)
    [row] = await job_rows(db)
    assert (row.status, row.attempts, row.locked_by) == ("queued", 0, None)


class _FailureSignal(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.twice = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "database step failed" in record.getMessage():
            self.failures += 1
            if self.failures >= 2:
                self.twice.set()


async def test_worker_survives_a_database_outage(clock):
    """A worker whose database is unreachable keeps going round and logging; it never dies."""
    db = Database("postgresql+asyncpg://postgres@127.0.0.1:9/test")  # connection refused
    worker = make_worker(JobQueue(db, clock, JobsSettings(poll_seconds=0.01)), {})
    signal = _FailureSignal()
    logger = logging.getLogger("storage.jobs.worker")
    logger.addHandler(signal)
    try:
        task = asyncio.create_task(worker.run())
        await asyncio.wait_for(signal.twice.wait(), timeout=5)
        assert not task.done()
    finally:
        logger.removeHandler(signal)
    worker.stop()
    await asyncio.wait_for(task, timeout=5)
    await db.close()


def test_wakeup_fans_out_to_every_subscriber():
    wakeup = Wakeup()
    first, second = wakeup.subscribe(), wakeup.subscribe()
    wakeup.wake()
    assert first.is_set() and second.is_set()
    wakeup.unsubscribe(first)
    first.clear()
    wakeup.wake()
    assert not first.is_set()


async def test_redis_wakeup_reaches_other_processes(redis_url):
    channel = f"ordertalk-test-{random.getrandbits(32)}"
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    sender, receiver = (RedisWakeup(client, channel) for client in clients)
    try:
        await receiver.start()
        assert receiver.listening.is_set()
        event = receiver.subscribe()
        await sender.announce()
        await asyncio.wait_for(event.wait(), timeout=5)
    finally:
        await receiver.stop()
        for client in clients:
            await client.aclose()


async def test_postgres_notify_wakes_workers_of_other_processes(pg_migrated_url, clock):
    listener = PostgresWakeup(asyncpg_dsn(pg_migrated_url), JOBS_CHANNEL)
    db = Database(pg_migrated_url)  # another "process": its own engine, no shared wake-up
    try:
        await listener.start()
        assert listener.listening.is_set()
        event = listener.subscribe()
        async with db.transaction() as session:
            await JobQueue(db, clock, JobsSettings()).enqueue(session, NewJob("noop"))
        await asyncio.wait_for(event.wait(), timeout=5)
    finally:
        await listener.stop()
        await db.close()


async def test_batch_handler_runs_jobs_of_a_kind_together(db, queue, clock):
    batches: list[list[int]] = []

    async def together(jobs: list[ClaimedJob]) -> list[BaseException | None]:
        batches.append([job.payload["n"] for job in jobs])
        return [ConnectionError("again") if job.payload["n"] == 3 else None for job in jobs]

    async with db.transaction() as session:
        await queue.enqueue(session, *[NewJob("flood", {"n": n}) for n in range(5)])
    worker = Worker(
        queue,
        {},
        clock=clock,
        settings=queue.settings,
        wakeup=db.wakeup,
        batch_handlers={"flood": together},
    )
    assert await worker.run_until_idle() == 5
    assert sorted(batches[0]) == [0, 1, 2, 3, 4]
    rows = {job.payload["n"]: job for job in await job_rows(db)}
    assert [rows[n].status for n in range(5)] == ["done", "done", "done", "queued", "done"]
    assert rows[3].last_error == "ConnectionError: again"


async def test_batches_take_turns_while_the_intake_is_busy_and_overdue_ones_do_not(
    db, queue, clock
):
    running = 0
    most = 0

    async def together(jobs: list[ClaimedJob]) -> list[BaseException | None]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)  # let any other batch start, if it may
        running -= 1
        return [None] * len(jobs)

    async def flood(count: int) -> None:
        async with db.transaction() as session:
            await queue.enqueue(session, *[NewJob("flood", {"n": n}) for n in range(count)])

    worker = make_worker(queue, {}, batch_handlers={"flood": together}, paced=("flood",))
    count = 3 * BATCH_SIZE  # at least three batches
    await flood(count)
    assert await worker.run_until_idle() == count
    assert most > 1  # nothing to give way to: batches overlap

    most = 0
    queue.pace.foreground()
    await flood(count)
    assert await worker.run_until_idle() == count
    assert most == 1

    most = 0
    await flood(count)
    clock.advance(timedelta(seconds=queue.settings.flood_max_delay_seconds + 1))
    queue.pace.foreground()
    assert await worker.run_until_idle() == count
    assert most > 1  # overdue: processed at full speed though the intake is busy


async def test_paced_single_jobs_take_turns_while_the_intake_is_busy(db, queue, clock):
    running = 0
    most = 0

    async def one(job: ClaimedJob) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)  # let any other job start, if it may
        running -= 1

    async def flood(count: int) -> None:
        async with db.transaction() as session:
            await queue.enqueue(session, *[NewJob("inbound", {"n": n}) for n in range(count)])

    worker = make_worker(queue, {"inbound": one}, paced=("inbound",))
    await flood(20)
    assert await worker.run_until_idle() == 20
    assert most > 1  # nothing to give way to: jobs overlap

    most = 0
    queue.pace.foreground()
    await flood(20)
    assert await worker.run_until_idle() == 20
    assert most == 1
