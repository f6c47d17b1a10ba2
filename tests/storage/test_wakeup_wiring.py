"""Which processes listen for the work other processes enqueue: those that run jobs, not a
`serve` whose jobs run in `worker` processes; one that does not listen still wakes the others."""

from __future__ import annotations

import asyncio

import pytest

from main import open_resources
from settings import JobsSettings, Settings
from storage.jobs import ClaimedJob, NewJob, Worker
from tests.conftest import SECURITY


@pytest.fixture(params=["alone", "with redis"])
def shared_settings(request, database_url) -> Settings:
    """Two "processes" of one deployment: SQLite alone wakes within its process only; with
    Redis (SQLite or PostgreSQL) or on PostgreSQL (NOTIFY) it wakes the others too."""
    redis = {"url": request.getfixturevalue("redis_url")} if request.param == "with redis" else {}
    return Settings(database={"url": database_url}, redis=redis, security=SECURITY)


def across_processes(settings: Settings) -> bool:
    return settings.database.url.startswith("postgresql") or bool(settings.redis.url)


async def enqueue(res, kind: str) -> None:
    async with res.db.transaction() as session:
        await res.queue.enqueue(session, NewJob(kind))


async def test_a_process_that_does_not_listen_still_wakes_those_that_do(shared_settings, clock):
    async with (
        open_resources(shared_settings, clock, listen=False) as intake,
        open_resources(shared_settings, clock) as worker_side,
    ):
        assert not getattr(intake.db.wakeup, "listening", asyncio.Event()).is_set()
        own, other = intake.db.wakeup.subscribe(), worker_side.db.wakeup.subscribe()
        await enqueue(intake, "from the intake")
        assert own.is_set()  # its own process's workers, if any, at once
        if across_processes(shared_settings):
            await asyncio.wait_for(other.wait(), timeout=5)
        else:
            assert not other.is_set()


@pytest.fixture
def waking_settings(database_url, redis_url) -> Settings:
    """A deployment whose processes wake each other: NOTIFY on PostgreSQL, Redis with SQLite."""
    redis = {} if database_url.startswith("postgresql") else {"url": redis_url}
    return Settings(database={"url": database_url}, redis=redis, security=SECURITY)


async def test_jobs_a_non_listening_process_enqueues_start_at_once_elsewhere(
    waking_settings, clock
):
    """Each of several commits starts its job in the worker's process at once: with a poll
    of a minute, only the wake-up can have started it within seconds."""
    settings = waking_settings.model_copy(
        update={"jobs": JobsSettings(poll_seconds=60, run_in_serve=False)}
    )
    started: asyncio.Queue[str] = asyncio.Queue()

    async def handle(job: ClaimedJob) -> None:
        started.put_nowait(job.payload["n"])

    async with (
        open_resources(settings, clock, listen=settings.jobs.run_in_serve) as intake,
        open_resources(settings, clock) as worker_side,
    ):
        worker = Worker(
            worker_side.queue,
            {"ping": handle},
            clock=clock,
            settings=settings.jobs,
            wakeup=worker_side.db.wakeup,
        )
        task = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.idle.wait(), timeout=5)
            for n in ("first", "second", "third"):
                async with intake.db.transaction() as session:
                    await intake.queue.enqueue(session, NewJob("ping", {"n": n}))
                assert await asyncio.wait_for(started.get(), timeout=5) == n
        finally:
            worker.stop()
            await task
