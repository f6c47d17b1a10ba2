"""Retention of dead jobs: their payloads hold raw webhook bodies (names, addresses, phones),
so a periodic job deletes those older than `jobs.keep_dead_days`, a batch at a time.

One pruning job per interval, however many processes start: each is keyed by its slot.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from storage.jobs.queue import ClaimedJob, JobQueue, NewJob

_LOGGER = logging.getLogger(__name__)

PRUNE_JOB = "jobs.prune"
INTERVAL = timedelta(hours=1)
BATCH = 10_000


def prune_job(now: datetime, *, next_slot: bool = True) -> NewJob:
    """The pruning job of the next interval (due at its start), or of the current one, due
    now (`next_slot=False`, at start-up)."""
    slot = int(now.timestamp() // INTERVAL.total_seconds()) + int(next_slot)
    due = datetime.fromtimestamp(slot * INTERVAL.total_seconds(), now.tzinfo)
    return NewJob(PRUNE_JOB, due_at=max(due, now), idempotency_key=f"{PRUNE_JOB}:{slot}")


class Retention:
    """The PRUNE_JOB handler."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    async def handle(self, job: ClaimedJob) -> None:
        removed = total = await self.queue.prune_dead(BATCH)
        while removed == BATCH:
            removed = await self.queue.prune_dead(BATCH)
            total += removed
        if total:
            _LOGGER.info("deleted %d dead jobs past their retention", total)
        async with self.queue.db.transaction() as session:
            await self.queue.enqueue(session, prune_job(self.queue.clock.now()))
