"""Durable jobs: the transactional outbox that turns flow effects and timers into work.

Enqueue inside the caller's transaction (`JobQueue.enqueue`); workers (`Worker`) claim due
jobs in batches, run the handler registered for their kind, and retry failures with backoff.
Delivery is at least once: a handler must use the job's idempotency key so that a second
execution after a crash records no second effect.
"""

from storage.jobs.queue import ClaimedJob, Exchange, JobQueue, NewJob, Outcome
from storage.jobs.retention import PRUNE_JOB, Retention, prune_job
from storage.jobs.worker import (
    BatchHandler,
    Deferred,
    Handler,
    PermanentJobError,
    RetryLater,
    Worker,
    backoff_seconds,
)

__all__ = [
    "PRUNE_JOB",
    "BatchHandler",
    "ClaimedJob",
    "Deferred",
    "Exchange",
    "Handler",
    "JobQueue",
    "NewJob",
    "Outcome",
    "PermanentJobError",
    "Retention",
    "RetryLater",
    "Worker",
    "backoff_seconds",
    "prune_job",
]
