"""Pacing across two worker processes on PostgreSQL + Redis: the jobs of one sender share its
slots, so together they are given slots one apart, none sends before its slot, each exactly
once, and the sends never come faster than the rate (two at most together)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clock import SystemClock
from settings import JobsSettings
from storage import migrate
from storage.db import Database
from storage.jobs import JobQueue, NewJob

PROCESS = Path(__file__).with_name("pacing_process.py")
RATE = 25.0  # sends per second, one slot every 40 ms
JOBS = 60
DEADLINE = 60.0  # seconds: a hung run fails instead of blocking CI
# The processes read the same system clock; a slot's time and its send's are a few
# milliseconds apart at most, and Redis keeps times to 14 digits.
EPSILON = 0.001


class PacingProcess:
    def __init__(self, url: str, redis_url: str, key: str, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(PROCESS), url, redis_url, key, str(RATE), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def ready(self) -> None:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        assert line.strip() == "ready", f"worker did not start: {line!r}"

    def sends(self) -> list[tuple[int, float, float]]:
        if not self.log.exists():
            return []
        rows = [line.split() for line in self.log.read_text().splitlines()]
        return [(int(job), float(slot), float(sent)) for job, slot, sent in rows]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        return code


@pytest.fixture
def procs() -> Iterator[list[PacingProcess]]:
    started: list[PacingProcess] = []
    yield started
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(timeout=30)
            proc.proc.stdout.close()


async def test_two_workers_share_one_senders_slots(pg_scratch, redis, redis_url, procs, tmp_path):
    url = pg_scratch()
    db = Database(url)
    await migrate.upgrade(db)
    queue = JobQueue(db, SystemClock(), JobsSettings())
    key = f"test:{uuid.uuid4().hex}"
    procs += [PacingProcess(url, redis_url, key, tmp_path / f"w{n}.log") for n in range(2)]
    for proc in procs:
        await proc.ready()

    async with db.transaction() as session:
        await queue.enqueue(session, *[NewJob("send", {"n": n}) for n in range(JOBS)])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while (await queue.counts())["done"] < JOBS:
        assert loop.time() < deadline, "timed out waiting for the sends"
        await asyncio.sleep(0.05)
    assert [proc.stop() for proc in procs] == [0, 0]
    await db.close()

    sends = [send for proc in procs for send in proc.sends()]
    assert all(proc.sends() for proc in procs), "both workers sent a share"
    counts = collections.Counter(job for job, _, _ in sends)
    assert len(counts) == JOBS and max(counts.values()) == 1, "a send was lost or repeated"
    slots = sorted(slot for _, slot, sent in sends if slot != sent)
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert len(slots) >= JOBS - 2, "the jobs waited for slots"
    assert min(gaps) == pytest.approx(1 / RATE, abs=EPSILON), "two jobs were given one slot"
    early = [(job, sent - slot) for job, slot, sent in sends if sent < slot]
    assert early == [], "a send went before its slot"
    times = sorted(sent for _, _, sent in sends)
    pairs = [third - first for first, third in zip(times, times[2:], strict=False)]
    assert min(pairs) >= 1 / RATE - EPSILON, "three sends within one interval"
    assert times[-1] - times[0] >= (JOBS - 2) / RATE - EPSILON
