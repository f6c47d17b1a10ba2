"""A job worker process for the pacing test: the real Worker, queue, wake-ups and Redis rate
limiter, with one send job kind that waits for its slot of one key.

    python tests/storage/pacing_process.py DATABASE_URL REDIS_URL KEY PER_SECOND SEND_LOG

Each send appends "job_id slot_time send_time" (timestamps; the slot the job was deferred
to, or its send time when it went at once) to SEND_LOG. Prints "ready" once
listening; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clock import SystemClock
from flows.jobs import SLOT, space_send, wait_for_slot
from main import open_resources
from settings import Settings
from storage.jobs import ClaimedJob, Worker


async def main(url: str, redis_url: str, key: str, per_second: float, log_path: str) -> None:
    settings = Settings(
        database={"url": url},
        redis={"url": redis_url},
        security={"secret_key": "pacing-process-secret-key-0123456789"},
        jobs={"concurrency": 50, "poll_seconds": 0.5},
    )
    clock = SystemClock()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    async with open_resources(settings, clock) as res:

        async def send(job: ClaimedJob) -> None:
            await wait_for_slot(res.limiter, job, key, per_second, clock.now())
            await space_send(res.limiter, key, per_second)
            sent = clock.now().timestamp()
            slot = job.payload.get(SLOT, {}).get("at", sent)
            os.write(log, f"{job.id} {slot!r} {sent!r}\n".encode())

        worker = Worker(
            res.queue, {"send": send}, clock=clock, settings=settings.jobs, wakeup=res.db.wakeup
        )
        task = asyncio.create_task(worker.run())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        print("ready", flush=True)
        await task


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4], float(sys.argv[4]), sys.argv[5]))
