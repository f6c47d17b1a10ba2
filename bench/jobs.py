"""Benchmark of the durable job queue on SQLite and PostgreSQL: throughput, start lag under a
paced load and the claim query behind a large backlog, beside a naive one-job-per-transaction
floor measured in the same run.

    python bench/jobs.py [--jobs N] [--pg URL] [--concurrency N]

--pg names a PostgreSQL server (default: $TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/test); the scratch database `ordertalk_bench` is
created there and dropped at the end. SQLite runs on a temporary file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.shared import (
    DEFAULT_PG,
    Row,
    percentile,
    print_table,
    scratch_postgres,
    target_note,
)
from clock import SystemClock
from settings import JobsSettings
from storage import migrate
from storage.db import JOBS_CHANNEL, Database
from storage.jobs import ClaimedJob, JobQueue, NewJob, Outcome, Worker
from storage.models import Job
from storage.wakeup import PostgresWakeup, Wakeup

SCRIPT = Path(__file__).resolve()
SCRATCH_DB = "ordertalk_bench"
KIND = "noop"
BATCH = 5_000  # rows per enqueue call
POLL_SECONDS = 0.05
DONE_TIMEOUT_SECONDS = 120
TICK_SECONDS = 0.01
LAG_SECONDS = 5
LAG_RATE = {"sqlite": 1_000, "postgresql": 2_000}  # jobs/s offered by the paced producer
LAG_WORKERS = {"sqlite": 1, "postgresql": 2}
BACKLOG = 100_000
DUE_NOW = 1_000
CLAIM_LIMIT = 100
CLAIM_ROUNDS = 200
NAIVE_JOBS = 2_000
PING_ROUNDS = 200
THROUGHPUT_TARGET = {("sqlite", 1): 1_000, ("postgresql", 2): 2_000}  # jobs/s
LAG_P99_TARGET_MS = 100
CLAIM_P99_TARGET_MS = 10

Workers = Callable[[int], AbstractAsyncContextManager[None]]


async def noop(job: ClaimedJob) -> None:
    pass


@asynccontextmanager
async def opened(url: str, settings: JobsSettings) -> AsyncIterator[JobQueue]:
    """A queue on its own Database and wake-up, wired as `main.open_resources` does."""
    parsed = make_url(url)
    wakeup = Wakeup()
    if parsed.get_backend_name() == "postgresql":
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        wakeup = PostgresWakeup(dsn, JOBS_CHANNEL)
    db = Database(url, wakeup)
    try:
        await wakeup.start()
        yield JobQueue(db, SystemClock(), settings)
    finally:
        await wakeup.stop()
        await db.close()


def make_worker(queue: JobQueue) -> Worker:
    return Worker(
        queue,
        {KIND: noop},
        clock=queue.clock,
        settings=queue.settings,
        wakeup=queue.db.wakeup,
    )


@asynccontextmanager
async def worker_in_process(queue: JobQueue) -> AsyncIterator[None]:
    worker = make_worker(queue)
    task = asyncio.create_task(worker.run(), name="bench-worker")
    try:
        yield
    finally:
        worker.stop()
        await task


@asynccontextmanager
async def worker_processes(url: str, count: int, concurrency: int) -> AsyncIterator[None]:
    """`count` worker processes (this script in --worker-child mode), each ready and idle."""
    children: list[asyncio.subprocess.Process] = []
    try:
        for _ in range(count):
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(SCRIPT),
                "--worker-child",
                url,
                "--concurrency",
                str(concurrency),
                stdout=asyncio.subprocess.PIPE,
            )
            children.append(child)
        for child in children:
            assert child.stdout is not None
            if not await asyncio.wait_for(child.stdout.readline(), timeout=30):
                raise RuntimeError(f"worker process {child.pid} exited before it was ready")
        yield
    finally:
        for child in children:
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                await asyncio.wait_for(child.wait(), timeout=30)
            except TimeoutError:
                child.kill()
                await child.wait()


async def worker_child(url: str, concurrency: int) -> None:
    async with opened(url, JobsSettings(concurrency=concurrency)) as queue:
        worker = make_worker(queue)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        print("ready", flush=True)
        await worker.run()


async def clear(db: Database) -> None:
    statement = "TRUNCATE jobs" if db.dialect == "postgresql" else "DELETE FROM jobs"
    async with db.transaction() as session:
        await session.execute(text(statement))


async def enqueue_many(queue: JobQueue, count: int, due_at: datetime | None = None) -> None:
    """Enqueue `count` no-op jobs in one transaction."""
    async with queue.db.transaction() as session:
        for start in range(0, count, BATCH):
            size = min(BATCH, count - start)
            await queue.enqueue(session, *[NewJob(KIND, due_at=due_at)] * size)


async def wait_done(queue: JobQueue, total: int) -> None:
    deadline = time.perf_counter() + DONE_TIMEOUT_SECONDS
    while (counts := await queue.counts())["done"] < total:
        if counts["dead"] or time.perf_counter() > deadline:
            raise RuntimeError(f"jobs did not all finish: {counts}")
        await asyncio.sleep(POLL_SECONDS)


async def select_one_ms(db: Database) -> float:
    """Median `SELECT 1` round trip on one held connection."""
    timings = []
    async with db.engine.connect() as conn:
        for _ in range(PING_ROUNDS):
            began = time.perf_counter()
            await conn.execute(text("SELECT 1"))
            timings.append((time.perf_counter() - began) * 1000)
    return statistics.median(timings)


async def naive_rate(queue: JobQueue) -> float:
    """Jobs/s when each job is claimed alone and finished alone."""
    await clear(queue.db)
    await enqueue_many(queue, NAIVE_JOBS)
    began = time.perf_counter()
    for _ in range(NAIVE_JOBS):
        claimed = await queue.claim("bench-naive", 1)
        await queue.finish("bench-naive", [Outcome(job.id, "done") for job in claimed])
    return NAIVE_JOBS / (time.perf_counter() - began)


async def throughput(queue: JobQueue, count: int, workers: Workers, processes: int) -> float:
    await clear(queue.db)
    async with workers(processes):
        await enqueue_many(queue, count)
        # The commit makes the jobs visible and wakes the idle workers: the clock starts here.
        began = time.perf_counter()
        await wait_done(queue, count)
        return count / (time.perf_counter() - began)


async def start_lag(
    queue: JobQueue, rate: int, workers: Workers, processes: int
) -> tuple[list[float], float]:
    """Job start lags (ms) while a producer enqueues `rate` jobs/s in small transactions,
    and the rate it achieved."""
    await clear(queue.db)
    per_tick = round(rate * TICK_SECONDS)
    ticks = round(LAG_SECONDS / TICK_SECONDS)
    async with workers(processes):
        began = time.perf_counter()
        for tick in range(ticks):
            # Sleep to the tick's own time, so one slow enqueue does not delay all later ones.
            await asyncio.sleep(began + tick * TICK_SECONDS - time.perf_counter())
            await enqueue_many(queue, per_tick)
        achieved = per_tick * ticks / (time.perf_counter() - began)
        await wait_done(queue, per_tick * ticks)
    async with queue.db.sessions() as session:
        rows = await session.execute(select(Job.due_at, Job.started_at))
        lags = [(started - due).total_seconds() * 1000 for due, started in rows]
    return lags, achieved


async def load_backlog(queue: JobQueue) -> None:
    await clear(queue.db)
    await enqueue_many(queue, BACKLOG, due_at=queue.clock.now() + timedelta(days=1))
    await enqueue_many(queue, DUE_NOW)


async def claim_ms(queue: JobQueue) -> list[float]:
    """Durations (ms) of full claims; each claimed batch is finished and replaced by new jobs."""
    timings = []
    for _ in range(CLAIM_ROUNDS):
        began = time.perf_counter()
        claimed = await queue.claim("bench-claim", CLAIM_LIMIT)
        timings.append((time.perf_counter() - began) * 1000)
        if len(claimed) != CLAIM_LIMIT:
            raise RuntimeError(f"a claim took {len(claimed)} jobs, not {CLAIM_LIMIT}")
        await queue.finish("bench-claim", [Outcome(job.id, "done") for job in claimed])
        await enqueue_many(queue, CLAIM_LIMIT)
    return timings


async def analyze(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(text("ANALYZE jobs"))


async def bench_database(url: str, args: argparse.Namespace) -> list[Row]:
    async with opened(url, JobsSettings(concurrency=args.concurrency)) as queue:
        name = queue.db.dialect
        await migrate.upgrade(queue.db)

        def workers(processes: int) -> AbstractAsyncContextManager[None]:
            if name == "sqlite":
                return worker_in_process(queue)
            return worker_processes(url, processes, args.concurrency)

        print(f"{name}: floor (SELECT 1, naive claim + finish)", flush=True)
        ping = await select_one_ms(queue.db)
        naive = await naive_rate(queue)
        rows = [
            Row(
                f"{name} floor, naive",
                f"{naive:,.0f} jobs/s",
                f"claim 1 + finish 1 per job; SELECT 1 p50 {ping:.2f} ms",
            )
        ]

        for processes in (1,) if name == "sqlite" else (1, 2):
            print(f"{name}: throughput, {processes} worker(s), {args.jobs:,} jobs", flush=True)
            rate = await throughput(queue, args.jobs, workers, processes)
            note = f"naive {naive:,.0f} jobs/s (x{rate / naive:.1f})"
            if (target := THROUGHPUT_TARGET.get((name, processes))) is not None:
                note += "; " + target_note(rate, target, True, "jobs/s")
            rows.append(Row(f"{name} {processes} worker throughput", f"{rate:,.0f} jobs/s", note))

        processes = LAG_WORKERS[name]
        print(f"{name}: lag, {LAG_RATE[name]:,} jobs/s for {LAG_SECONDS} s", flush=True)
        lags, achieved = await start_lag(queue, LAG_RATE[name], workers, processes)
        rows.append(
            Row(
                f"{name} {processes} worker lag @ {achieved:,.0f}/s",
                f"p50 {percentile(lags, 50):.1f} / p99 {percentile(lags, 99):.1f} ms",
                target_note(percentile(lags, 99), LAG_P99_TARGET_MS, False, "ms p99"),
            )
        )

        print(f"{name}: claim {CLAIM_LIMIT} with {BACKLOG:,} jobs due tomorrow", flush=True)
        await load_backlog(queue)
        fresh = await claim_ms(queue)
        # Planner statistics: autovacuum (when enabled) gathers PostgreSQL's a while after a
        # bulk load; nothing in the service gathers SQLite's. Both states are measured.
        await analyze(queue.db)
        analysed = await claim_ms(queue)
        for state, claims in (("just loaded", fresh), ("analysed", analysed)):
            rows.append(
                Row(
                    f"{name} claim {CLAIM_LIMIT}, {BACKLOG // 1000}k backlog, {state}",
                    f"p50 {percentile(claims, 50):.1f} / p99 {percentile(claims, 99):.1f} ms",
                    target_note(percentile(claims, 99), CLAIM_P99_TARGET_MS, False, "ms p99"),
                )
            )
        return rows


async def bench(args: argparse.Namespace) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="ordertalk-bench-") as directory:
        rows = await bench_database(f"sqlite+aiosqlite:///{directory}/bench.db", args)
    async with scratch_postgres(args.pg, SCRATCH_DB) as url:
        rows += await bench_database(url, args)
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per throughput run")
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    parser.add_argument("--concurrency", type=int, default=100, help="jobs held per worker")
    parser.add_argument("--worker-child", metavar="URL", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.worker_child:
        asyncio.run(worker_child(args.worker_child, args.concurrency))
        return
    began = time.perf_counter()
    print_table(asyncio.run(bench(args)), "floor / target")
    print(f"\n(total {time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
