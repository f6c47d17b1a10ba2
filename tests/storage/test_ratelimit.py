"""Rate limits behave the same in-process and in Redis (manual clock, no sleeps).

Redis keeps times with 14 significant digits, so waits compare to the millisecond.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from storage.ratelimit import LocalRateLimiter, RedisRateLimiter


@pytest.fixture(params=["memory", "redis"])
def limiter(request, clock):
    if request.param == "memory":
        return LocalRateLimiter(clock)
    redis = request.getfixturevalue("redis")
    return RedisRateLimiter(redis, clock, prefix=f"test:{uuid.uuid4().hex}:")


async def test_one_per_interval(limiter, clock):
    assert await limiter.try_acquire("twilio:+15550001", per_second=2) == 0
    assert await limiter.try_acquire("twilio:+15550001", per_second=2) == pytest.approx(
        0.5, abs=1e-3
    )
    # Waiting callers take nothing: the wait does not grow.
    assert await limiter.try_acquire("twilio:+15550001", per_second=2) == pytest.approx(
        0.5, abs=1e-3
    )
    clock.advance(timedelta(milliseconds=500))
    assert await limiter.try_acquire("twilio:+15550001", per_second=2) == 0


async def test_burst_then_steady_rate(limiter, clock):
    taken = [await limiter.try_acquire("exotel:calls", per_second=1, burst=3) for _ in range(4)]
    assert taken[:3] == [0, 0, 0]
    assert taken[3] == pytest.approx(1.0, abs=1e-3)
    clock.advance(timedelta(seconds=1))
    assert await limiter.try_acquire("exotel:calls", per_second=1, burst=3) == 0
    assert await limiter.try_acquire("exotel:calls", per_second=1, burst=3) == pytest.approx(
        1.0, abs=1e-3
    )


async def test_keys_are_independent(limiter):
    assert await limiter.try_acquire("a", per_second=1) == 0
    assert await limiter.try_acquire("b", per_second=1) == 0
    assert await limiter.try_acquire("a", per_second=1) > 0


async def test_idle_time_does_not_bank_more_than_the_burst(limiter, clock):
    assert await limiter.try_acquire("k", per_second=10, burst=2) == 0
    clock.advance(timedelta(hours=1))
    results = [await limiter.try_acquire("k", per_second=10, burst=2) for _ in range(3)]
    assert results[:2] == [0, 0] and results[2] == pytest.approx(0.1, abs=1e-3)
