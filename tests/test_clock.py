"""The sandbox's clock: the system time plus an offset that only grows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clock import Clock, OffsetClock


def test_offset_clock_runs_with_the_system_time_and_only_moves_forward():
    clock: Clock = OffsetClock()
    assert isinstance(clock, OffsetClock)
    before = datetime.now(UTC)
    assert before <= clock.now() <= datetime.now(UTC)
    moved = clock.advance(timedelta(minutes=10))
    assert moved >= before + timedelta(minutes=10) and clock.offset == timedelta(minutes=10)
    target = clock.now() + timedelta(hours=3)
    assert clock.advance_to(target) >= target
    assert abs(clock.offset - timedelta(hours=3, minutes=10)) < timedelta(seconds=1)
    offset = clock.offset
    clock.advance_to(target - timedelta(days=1))  # already past: nothing changes
    assert clock.offset == offset
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        clock.advance_to(datetime(2030, 1, 1))  # naive
    with pytest.raises(ValueError):
        OffsetClock(timedelta(minutes=-1))
