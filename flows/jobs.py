"""How a provider failure becomes a job outcome (retry later, retry with backoff, or stop),
and how a send job waits for its turn under the sender's rate limit.

Pacing: a send job that may not go now reserves the sender's next free slot and is deferred
to it, holding it in its payload; when it comes back it goes without asking again, unless a
provider throttled the sender meanwhile and moved every slot (it then waits that much
longer). So N jobs at rate r come back one slot apart: none early, none churning. A held
slot is for the run at its time: a job that comes back much later (a calling window closed
meanwhile) takes a new one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from providers.base import ProviderError
from storage.jobs import ClaimedJob, Deferred, PermanentJobError, RetryLater
from storage.ratelimit import RateLimiter

SLOT = "rate_slot"
THROTTLED = "THROTTLED"
# A slot is used late by up to this much (a busy worker), else a new one is taken.
SLOT_GRACE_SECONDS = 30.0
# A throttling provider that does not say how long to wait.
THROTTLED_SECONDS = 1.0


def provider_failure(exc: ProviderError) -> Exception:
    """The exception a job handler raises for `exc`, so the worker retries or stops rightly."""
    if not exc.retryable:
        return PermanentJobError(f"{exc.code or 'refused'}: {exc}")
    if exc.retry_after is not None:
        return RetryLater(exc.retry_after, f"{exc.code or 'retry'}: {exc}")
    return exc


async def wait_for_slot(
    limiter: RateLimiter, job: ClaimedJob, key: str, per_second: float, now: datetime
) -> float:
    """Return when `job` may send through `key` now (the time of its slot, a timestamp);
    else raise Deferred to its slot."""
    held = job.payload.get(SLOT)
    at = now.timestamp()
    if held and held["key"] == key and at - held["at"] < SLOT_GRACE_SECONDS:
        shift = await limiter.shift(key)
        slot_at = held["at"] + max(0.0, shift - held["shift"])
        if slot_at <= at:
            return slot_at
        raise _hold(job, key, slot_at, shift, at, "its slot moved: the provider throttled")
    slot = await limiter.reserve(key, per_second)
    if slot.at > at:
        raise _hold(job, key, slot.at, slot.shift, at, "rate limit")
    return slot.at


async def throttled(
    limiter: RateLimiter,
    job: ClaimedJob,
    key: str,
    per_second: float,
    now: datetime,
    exc: ProviderError,
) -> Deferred:
    """The provider refused the send for a while (HTTP 429): every slot of `key` moves past
    its Retry-After, and this job takes the next free one (the attempt is not counted)."""
    await limiter.throttled(key, exc.retry_after or THROTTLED_SECONDS)
    slot = await limiter.reserve(key, per_second)
    return _hold(job, key, slot.at, slot.shift, now.timestamp(), f"{exc.code}: {exc}")


def _hold(
    job: ClaimedJob, key: str, slot_at: float, shift: float, now: float, why: str
) -> Deferred:
    payload: dict[str, Any] = {**job.payload, SLOT: {"key": key, "at": slot_at, "shift": shift}}
    wait = slot_at - now
    return Deferred(wait, f"{why}: {key} slot in {wait:.3f}s", payload=payload)
