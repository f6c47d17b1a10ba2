"""Slots in a batch (issue 18), in-process and Redis limits, manual clock: a batch keeps the
slots that come within its patience (it waits for them instead of running the jobs again),
the others are deferred to come back together a little before their slots, and a send whose
slot the clock has not reached is never made: it goes back to its slot, holding it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from clock import ManualClock
from flows.jobs import SLOT, SPACE_WAIT_SECONDS, send_spaced, wait_for_slot
from storage.jobs import ClaimedJob, Deferred
from storage.ratelimit import LocalRateLimiter, RedisRateLimiter

KEY = "exotel:shop:7:+911140000000"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # on the grid: a whole second


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["memory", "redis"])
def limiter(request, clock):
    if request.param == "memory":
        return LocalRateLimiter(clock)
    redis = request.getfixturevalue("redis")
    return RedisRateLimiter(redis, clock, prefix=f"test:{uuid.uuid4().hex}:")


def job(n: int) -> ClaimedJob:
    return ClaimedJob(n, "send", {"n": n}, 1, 8, None, None, START, START)


async def slots_of(limiter, clock, count: int, rate: float) -> list[Deferred | None]:
    """Each job's answer from wait_for_slot: None (go now), a kept slot, or the deferral."""
    found: list[Deferred | None] = []
    for n in range(count):
        try:
            found.append(
                await wait_for_slot(limiter, job(n), KEY, rate, clock.now(), SPACE_WAIT_SECONDS)
            )
        except Deferred as exc:
            found.append(exc)
    return found


def slot_at(deferral: Deferred) -> float:
    return (deferral.payload or {})[SLOT]["at"] - START.timestamp()


async def test_a_batch_keeps_the_slots_within_its_patience(limiter, clock):
    first, *kept, later = await slots_of(limiter, clock, 4, rate=4.0)  # a slot every 250 ms

    assert first is None
    assert [slot_at(k) for k in kept] == pytest.approx([0.25, 0.5])
    assert all(k.seconds <= SPACE_WAIT_SECONDS for k in kept)
    # Beyond the patience the job is deferred, holding its slot, and comes back before it
    # by at most the patience: its batch then waits for the slot.
    with pytest.raises(Deferred) as raised:
        await wait_for_slot(limiter, job(9), KEY, 4.0, clock.now(), SPACE_WAIT_SECONDS)
    assert slot_at(raised.value) == pytest.approx(1.0)
    assert 1.0 - SPACE_WAIT_SECONDS <= raised.value.seconds < 1.0
    assert slot_at(later) == pytest.approx(0.75)


async def test_jobs_of_close_slots_come_back_together(limiter, clock):
    answers = await slots_of(limiter, clock, 60, rate=32.0)  # a slot every 1/32 s

    assert answers[0] is None
    kept, deferred = answers[1:17], answers[17:]
    assert [slot_at(k) for k in kept] == pytest.approx([n / 32 for n in range(1, 17)], abs=1e-3)
    for deferral in deferred:
        assert 0 <= slot_at(deferral) - deferral.seconds <= SPACE_WAIT_SECONDS
    # A quarter of a second of slots (8 jobs) comes back at one time: one batch.
    wakes = sorted({round(d.seconds, 3) for d in deferred})
    assert wakes == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25, 1.5])


async def test_a_send_before_its_slot_is_not_made_and_keeps_the_slot(limiter, clock):
    first, kept = await slots_of(limiter, clock, 2, rate=4.0)
    made: list[int] = []

    async def request(n: int) -> int:
        made.append(n)
        return n

    # The manual clock does not move while the batch waits: the second send's slot never
    # comes, so it is not made and goes back to its slot.
    answers = await send_spaced(
        limiter,
        clock,
        [(KEY, 4.0, first, lambda: request(0)), (KEY, 4.0, kept, lambda: request(1))],
    )

    assert made == [0] and answers[0] == 0
    assert isinstance(answers[1], Deferred)
    assert answers[1].seconds == pytest.approx(0.25)
    assert answers[1].payload == kept.payload
