"""How a provider failure becomes a job outcome (retry later, retry with backoff, or stop),
and how a send job waits for its turn under the sender's rate limit.

Pacing: a send job that may not go now reserves the sender's next free slot and is deferred
to it, holding it in its payload; when it comes back it goes without asking again, unless a
provider throttled the sender meanwhile and moved every slot (it then waits that much
longer). So N jobs at rate r come back one slot apart: none early, none churning. A held
slot is for the run at its time: a job that comes back much later (a calling window closed
meanwhile) takes a new one.

Slots say when a job may go at the earliest; a busy worker may run several late, together.
So the sends themselves also pass a plain rate limit of the same rate (`SENT`, a few at most
together) just before the request (`space_send`), which takes nothing from those it stops:
jobs that come back late together leave spaced, and the provider never sees more than the
rate. A batch's sends due together wait their turns in the batch when the wait is short
(`send_spaced`) instead of each being deferred and prepared again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from clock import Clock
from providers.base import ProviderError
from storage.jobs import ClaimedJob, Deferred, PermanentJobError, RetryLater
from storage.ratelimit import RateLimiter

SLOT = "rate_slot"
SENT = ":sent"
THROTTLED = "THROTTLED"
# A slot is used late by up to this much (a busy worker), else a new one is taken.
SLOT_GRACE_SECONDS = 30.0
# Sends may come this many together (one a little late, the next on time): a worker's small
# delays do not add up. At high rates, a twentieth of a second's worth: a busy event loop
# looks again only every few milliseconds, and a burst of two would then cap the rate (two
# per look: ~50/s measured under load against a configured 200/s).
SENT_BURST = 2
SENT_BURST_SECONDS = 0.05
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
    limiter: RateLimiter,
    job: ClaimedJob,
    key: str,
    per_second: float,
    now: datetime,
    patience: float = 0.0,
) -> Deferred | None:
    """`batch_slots` for one job sending through `key`, with its own `patience`: None when it
    may send now; else its slot, as the Deferred that holds it, returned when the slot comes
    within `patience` seconds, else raised."""
    [(slot_at, shift, why)] = await _slot_times(limiter, [job], key, per_second, now.timestamp())
    return _decide(job, key, slot_at, shift, why, now.timestamp(), patience)


async def batch_slots(
    limiter: RateLimiter,
    clock: Clock,
    jobs: list[ClaimedJob],
    keys: dict[int, tuple[str, float]],
    errors: list[BaseException | None],
) -> tuple[list[int], dict[int, Deferred | None]]:
    """The slots of a batch's jobs (`keys`: job index -> rate key and rate), asked once per
    key: the indexes that may go, in order, with each one's slot (None: now; else within
    `SPACE_WAIT_SECONDS`, for `send_spaced`); a job whose slot is further is deferred, its
    Deferred put in `errors`."""
    at = clock.now().timestamp()
    by_key: dict[str, list[int]] = {}
    for i, (key, _) in keys.items():
        by_key.setdefault(key, []).append(i)
    times: dict[int, tuple[float, float, str]] = {}
    for key, members in by_key.items():
        found = await _slot_times(
            limiter, [jobs[i] for i in members], key, keys[members[0]][1], at
        )
        times.update(zip(members, found, strict=True))
    going: list[int] = []
    slots: dict[int, Deferred | None] = {}
    for i, (key, _) in keys.items():
        try:
            slots[i] = _decide(jobs[i], key, *times[i], at, SPACE_WAIT_SECONDS)
        except Deferred as exc:
            errors[i] = exc
            continue
        going.append(i)
    return going, slots


async def _slot_times(
    limiter: RateLimiter, jobs: list[ClaimedJob], key: str, per_second: float, at: float
) -> list[tuple[float, float, str]]:
    """Each job's slot through `key` (time, the key's shift, why it waits): a job keeps the
    slot it holds, moved by as much as the provider moved the key's slots since, and the
    others take the key's next free slots, in order. One ask of each kind at most."""
    held = [job.payload.get(SLOT) for job in jobs]
    keeps = [h is not None and h["key"] == key and at - h["at"] < SLOT_GRACE_SECONDS for h in held]
    shift = await limiter.shift(key) if any(keeps) else 0.0
    fresh = iter(
        await limiter.reserve(key, per_second, keeps.count(False)) if not all(keeps) else []
    )
    times = []
    for slot, keep in zip(held, keeps, strict=True):
        if not keep:
            new = next(fresh)
            times.append((new.at, new.shift, "rate limit"))
        elif shift > slot["shift"]:
            moved = slot["at"] + shift - slot["shift"]
            times.append((moved, shift, "the provider throttled: slots moved"))
        else:
            times.append((slot["at"], shift, "rate limit"))
    return times


def _decide(
    job: ClaimedJob, key: str, slot_at: float, shift: float, why: str, at: float, patience: float
) -> Deferred | None:
    """None when the slot is now; its Deferred when it comes within `patience`; else raised."""
    if slot_at <= at + TIME_RESOLUTION:
        return None
    hold = _hold(job, key, slot_at, shift, at, why, patience)
    if slot_at - at > patience:
        raise hold
    return hold


async def space_send(
    limiter: RateLimiter, key: str, per_second: float, patience: float = 0.0
) -> None:
    """The last check before the provider is called (after `batch_slots`, and after the
    database work that precedes the request, which may have held jobs up together): raise
    Deferred when the send would come too soon after the last ones, unless its turn comes
    within `patience` seconds (it then waits for it; asked again after each wait, as the
    sends of other batches take turns too)."""
    burst = max(SENT_BURST, int(per_second * SENT_BURST_SECONDS))
    waited = 0.0
    while (wait := await limiter.try_acquire(key + SENT, per_second, burst)) > 0:
        if waited + wait > patience:
            raise Deferred(wait, f"sends spaced: {key} in {wait:.3f}s")
        await asyncio.sleep(wait)
        waited += wait


async def send_spaced(
    limiter: RateLimiter,
    clock: Clock,
    sends: list[tuple[str, float, Deferred | None, Callable[[], Awaitable[T]]]],
) -> list[T | BaseException]:
    """A batch's requests (rate key, rate, slot from `batch_slots`, request), each answer
    or exception in order. The requests of one key start one after another: each at its
    slot (one whose slot the clock has not reached after SPACE_WAIT_SECONDS answers the
    Deferred holding it), then as `space_send` lets it (waiting for its turn up to
    SPACE_WAIT_SECONDS, else its answer is the Deferred); and they run together."""
    results: dict[int, T | BaseException] = {}
    started: dict[int, asyncio.Task[T]] = {}
    by_key: dict[str, list[int]] = {}
    for n, (key, _, _, _) in enumerate(sends):
        by_key.setdefault(key, []).append(n)

    async def start(numbers: list[int]) -> None:
        for n in numbers:
            key, per_second, slot, request = sends[n]
            if slot is not None and not await _reached(clock, slot):
                # Not to the grid: the clock (a test's) did not move, so back at the slot.
                wait = slot.payload[SLOT]["at"] - clock.now().timestamp()
                results[n] = Deferred(wait, str(slot), payload=slot.payload)
                continue
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


async def _reached(clock: Clock, slot: Deferred) -> bool:
    """Wait for the slot `slot` holds, SPACE_WAIT_SECONDS at most; True once the clock is
    there (a sleep may end a little early: it is asked again)."""
    at = (slot.payload or {})[SLOT]["at"]
    waited = 0.0
    while (wait := at - clock.now().timestamp()) > TIME_RESOLUTION:
        if waited >= SPACE_WAIT_SECONDS:
            return False
        await asyncio.sleep(wait)
        waited += wait
    return True


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
    [slot] = await limiter.reserve(key, per_second)
    return _hold(job, key, slot.at, slot.shift, now.timestamp(), f"{exc.code}: {exc}")


def _hold(
    job: ClaimedJob,
    key: str,
    slot_at: float,
    shift: float,
    now: float,
    why: str,
    patience: float = 0.0,
) -> Deferred:
    """The deferral of `job` holding its slot. With `patience` (its batch waits that long for
    a slot) the job comes back a little before the slot, on a grid of half the patience
    shared by every job: the jobs of close slots come back together, as one batch that
    waits for their slots, instead of one small batch per slot."""
    payload: dict[str, Any] = {**job.payload, SLOT: {"key": key, "at": slot_at, "shift": shift}}
    wait = slot_at - now
    if patience > 0:
        grid = patience / 2
        wait = max(0.0, min(wait, (math.floor(slot_at / grid) - 1) * grid - now))
    return Deferred(wait, f"{why}: {key} slot at {slot_at - now:.3f}s", payload=payload)
