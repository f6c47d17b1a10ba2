"""How a provider failure becomes a job outcome (retry later, retry with backoff, or stop),
and how a send job waits for its turn under the sender's rate limit.

Pacing: a send job that may not go now reserves the sender's next free slot and is deferred
to it, holding it in its payload; when it comes back it goes without asking again, unless a
provider throttled the sender meanwhile and moved every slot (it then waits that much
longer). So N jobs at rate r come back one slot apart: none early, none churning. A held
slot is for the run at its time: a job that comes back much later (a calling window closed
meanwhile) takes a new one.

Slots say when a job may go at the earliest; a busy worker may run several late, together.
So the sends themselves also pass a plain rate limit of the same rate (`SENT`, two at most
together) just before the request (`space_send`), which takes nothing from those it stops:
jobs that come back late together leave spaced, and the provider never sees more than the
rate. A batch's sends due together wait their turns in the batch when the wait is short
(`send_spaced`) instead of each being deferred and prepared again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from providers.base import ProviderError
from storage.jobs import ClaimedJob, Deferred, PermanentJobError, RetryLater
from storage.ratelimit import RateLimiter

SLOT = "rate_slot"
SENT = ":sent"
THROTTLED = "THROTTLED"
# A slot is used late by up to this much (a busy worker), else a new one is taken.
SLOT_GRACE_SECONDS = 30.0
# Sends may come this many together (one a little late, the next on time): a worker's small
# delays do not add up.
SENT_BURST = 2
# Sends of a batch due together leave spaced: one waits this long at most for its turn.
SPACE_WAIT_SECONDS = 0.5
# Deferrals are whole milliseconds, and Redis keeps times to 14 digits: a slot less than this
# ahead is now.
TIME_RESOLUTION = 0.001
# A throttling provider that does not say how long to wait.
THROTTLED_SECONDS = 1.0

T = TypeVar("T")


def provider_failure(exc: ProviderError) -> Exception:
    """The exception a job handler raises for `exc`, so the worker retries or stops rightly."""
    if not exc.retryable:
        return PermanentJobError(f"{exc.code or 'refused'}: {exc}")
    if exc.retry_after is not None:
        return RetryLater(exc.retry_after, f"{exc.code or 'retry'}: {exc}")
    return exc


async def wait_for_slot(
    limiter: RateLimiter, job: ClaimedJob, key: str, per_second: float, now: datetime
) -> None:
    """Return when `job` may send through `key` now; else raise Deferred to its slot."""
    held = job.payload.get(SLOT)
    at = now.timestamp()
    if held and held["key"] == key and at - held["at"] < SLOT_GRACE_SECONDS:
        shift = await limiter.shift(key)
        if shift > held["shift"]:
            moved = held["at"] + shift - held["shift"]
            raise _hold(job, key, moved, shift, at, "the provider throttled: slots moved")
    else:
        slot = await limiter.reserve(key, per_second)
        if slot.at > at + TIME_RESOLUTION:
            raise _hold(job, key, slot.at, slot.shift, at, "rate limit")


async def space_send(
    limiter: RateLimiter, key: str, per_second: float, patience: float = 0.0
) -> None:
    """The last check before the provider is called (after `wait_for_slot`, and after the
    database work that precedes the request, which may have held jobs up together): raise
    Deferred when the send would come too soon after the last ones, unless its turn comes
    within `patience` seconds (it then waits for it)."""
    wait = await limiter.try_acquire(key + SENT, per_second, SENT_BURST)
    if 0 < wait <= patience:
        await asyncio.sleep(wait)
        wait = await limiter.try_acquire(key + SENT, per_second, SENT_BURST)
    if wait > 0:
        raise Deferred(wait, f"sends spaced: {key} in {wait:.3f}s")


async def send_spaced(
    limiter: RateLimiter, sends: list[tuple[str, float, Callable[[], Awaitable[T]]]]
) -> list[T | BaseException]:
    """A batch's requests (rate key, rate, request), each answer or exception in order. The
    requests of one key start one after another as `space_send` lets them (each waits for its
    turn up to SPACE_WAIT_SECONDS, else its answer is the Deferred), and run together."""
    results: dict[int, T | BaseException] = {}
    started: dict[int, asyncio.Task[T]] = {}
    by_key: dict[str, list[int]] = {}
    for n, (key, _, _) in enumerate(sends):
        by_key.setdefault(key, []).append(n)

    async def start(numbers: list[int]) -> None:
        for n in numbers:
            key, per_second, request = sends[n]
            try:
                await space_send(limiter, key, per_second, SPACE_WAIT_SECONDS)
            except Deferred as exc:
                results[n] = exc
                continue
            started[n] = asyncio.ensure_future(request())

    try:
        await asyncio.gather(*(start(numbers) for numbers in by_key.values()))
        answers = await asyncio.gather(*started.values(), return_exceptions=True)
    finally:
        for task in started.values():
            task.cancel()  # only the unfinished ones: a shutdown that did not wait
    results.update(zip(started, answers, strict=True))
    return [results[n] for n in range(len(sends))]


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
    job: ClaimedJob,
    key: str,
    slot_at: float,
    shift: float,
    now: float,
    why: str,
) -> Deferred:
    payload: dict[str, Any] = {**job.payload, SLOT: {"key": key, "at": slot_at, "shift": shift}}
    wait = slot_at - now
    return Deferred(wait, f"{why}: {key} slot in {wait:.3f}s", payload=payload)
