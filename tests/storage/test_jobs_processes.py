"""Job workers as separate processes on PostgreSQL: shared draining and SIGKILL recovery."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from clock import SystemClock
from settings import JobsSettings
from storage import migrate
from storage.db import Database
from storage.jobs import JobQueue, NewJob
from storage.models import Message, Shop

WORKER = Path(__file__).with_name("worker_process.py")
CONCURRENCY = 50
DEADLINE = 120.0  # seconds: a hung run fails instead of blocking CI


class WorkerProcess:
    def __init__(self, url: str, log: Path, lease: float) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), url, str(log), str(CONCURRENCY), str(lease)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def ready(self) -> None:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        assert line.strip() == "ready", f"worker did not start: {line!r}"

    def executed(self) -> list[int]:
        return [int(x) for x in self.log.read_text().split()] if self.log.exists() else []

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self._reap()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> int:
        code = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        return code


@pytest.fixture
def procs() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill()


@pytest.fixture
async def pg(pg_scratch) -> tuple[str, Database, JobQueue]:
    url = pg_scratch()
    db = Database(url)
    await migrate.upgrade(db)
    clock = SystemClock()
    async with db.transaction() as session:
        session.add(
            Shop(id=1, domain="load.myshopify.com", created_at=clock.now(), updated_at=clock.now())
        )
    yield url, db, JobQueue(db, clock, JobsSettings())
    await db.close()


async def enqueue(db: Database, queue: JobQueue, prefix: str, count: int) -> None:
    async with db.transaction() as session:
        await queue.enqueue(
            session, *[NewJob("effect", idempotency_key=f"{prefix}-{i}") for i in range(count)]
        )


async def wait_until(condition, what: str) -> None:
    """Poll a database condition: the processes work on their own time, not the test's."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def effects(db: Database, prefix: str) -> int:
    async with db.sessions() as session:
        return await session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.idempotency_key.like(f"{prefix}-%"))
        )


async def test_two_workers_drain_5000_jobs_each_exactly_once(pg, procs, tmp_path):
    url, db, queue = pg
    procs += [WorkerProcess(url, tmp_path / f"w{n}.log", lease=30) for n in range(2)]
    for proc in procs:
        await proc.ready()

    await enqueue(db, queue, "drain", 5000)

    async def drained() -> bool:
        return (await queue.counts())["done"] == 5000

    await wait_until(drained, "5,000 jobs done")
    assert [proc.stop() for proc in procs] == [0, 0]
    runs = [proc.executed() for proc in procs]
    counts = collections.Counter(runs[0] + runs[1])
    assert len(counts) == 5000
    assert max(counts.values()) == 1, "a job ran twice although no worker died"
    assert all(runs), "both workers took a share"
    assert await effects(db, "drain") == 5000
    assert await queue.counts() == {"queued": 0, "running": 0, "done": 5000, "dead": 0}


async def test_sigkilled_worker_loses_no_job(pg, procs, tmp_path):
    url, db, queue = pg
    lease = 2.0
    doomed = WorkerProcess(url, tmp_path / "doomed.log", lease)
    procs.append(doomed)
    await doomed.ready()
    await enqueue(db, queue, "crash", 2000)

    async def mid_run() -> bool:
        return len(doomed.executed()) >= 300

    await wait_until(mid_run, "the first worker to be mid-run")
    doomed.kill()
    before_kill = doomed.executed()
    assert len(before_kill) < 2000, "the run finished before the kill; nothing was tested"

    survivor = WorkerProcess(url, tmp_path / "survivor.log", lease)
    procs.append(survivor)
    await survivor.ready()

    async def all_done() -> bool:
        return (await queue.counts())["done"] == 2000

    await wait_until(all_done, "every job done after the crash")
    assert survivor.stop() == 0

    assert await queue.counts() == {"queued": 0, "running": 0, "done": 2000, "dead": 0}
    counts = collections.Counter(before_kill + survivor.executed())
    assert len(counts) == 2000, "a job was lost"
    twice = [job for job, n in counts.items() if n > 1]
    assert max(counts.values()) <= 2
    # Only the batch the killed worker held can run again...
    assert len(twice) <= CONCURRENCY
    # ...and its idempotency keys keep every effect single.
    assert await effects(db, "crash") == 2000
