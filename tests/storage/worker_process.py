"""A job worker process for the crash tests: the real Worker, queue and wake-up wiring,
with one test job kind whose effect is keyed by the job's idempotency key.

    python tests/storage/worker_process.py DATABASE_URL EXECUTION_LOG CONCURRENCY LEASE_SECONDS

Each execution appends the job id to EXECUTION_LOG before recording its effect (a message
row, inserted once per idempotency key), so the test can count executions and effects.
Prints "ready" once listening; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from clock import SystemClock
from main import open_resources
from settings import Settings
from storage.jobs import ClaimedJob, Worker
from storage.models import Message

SHOP_ID = 1


async def main(url: str, log_path: str, concurrency: int, lease: float) -> None:
    settings = Settings(
        database={"url": url},
        security={"secret_key": "worker-process-secret-key-0123456789"},
        jobs={"concurrency": concurrency, "lease_seconds": lease, "poll_seconds": 0.2},
    )
    clock = SystemClock()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    async with open_resources(settings, clock) as res:
        db = res.db

        async def effect(job: ClaimedJob) -> None:
            os.write(log, f"{job.id}\n".encode())
            stmt = db.insert(Message.__table__).on_conflict_do_nothing(
                index_elements=["idempotency_key"]
            )
            async with db.transaction() as session:
                await session.execute(
                    stmt,
                    {
                        "shop_id": SHOP_ID,
                        "channel": "sms",
                        "direction": "out",
                        "provider": "test",
                        "account": "platform",
                        "to_phone": "+15550000000",
                        "idempotency_key": job.idempotency_key,
                        "status": "sent",
                        "created_at": clock.now(),
                        "updated_at": clock.now(),
                    },
                )

        worker = Worker(
            res.queue,
            {"effect": effect},
            clock=clock,
            settings=settings.jobs,
            wakeup=db.wakeup,
        )
        task = asyncio.create_task(worker.run())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, worker.stop)
        print("ready", flush=True)
        await task


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
