"""Foreground first: batch jobs give way to an active webhook intake, and only to it."""

from __future__ import annotations

import asyncio

import pytest

from storage.jobs.pace import MAX_REST_SECONDS, QUIET_SECONDS, Pace


class FakeTime:
    """A monotonic clock that moves only when told to, and a sleep that moves it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_pace(share: float = 0.25, max_delay: float = 60.0) -> tuple[Pace, FakeTime]:
    time = FakeTime()
    return Pace(share, max_delay, monotonic=time, sleep=time.sleep), time


async def run_batch(pace: Pace, time: FakeTime, seconds: float, waited: float = 0.0) -> None:
    async with pace.turn(waited):
        time.now += seconds


async def test_without_intake_batches_never_rest():
    pace, time = make_pace()
    for _ in range(3):
        await run_batch(pace, time, 2.0)
    assert time.slept == []
    assert not pace.busy()


async def test_while_the_intake_works_batches_rest_to_keep_to_their_share():
    pace, time = make_pace(share=0.25)
    pace.foreground()
    await run_batch(pace, time, 0.1)
    pace.foreground()
    await run_batch(pace, time, 0.2)
    # 0.1 s of batch at a 25 % share: 0.3 s of rest before the next one.
    assert time.slept == [pytest.approx(0.3)]
    pace.foreground()
    await run_batch(pace, time, 0.0)
    assert time.slept[-1] == pytest.approx(0.6)


async def test_rest_is_capped():
    pace, time = make_pace(share=0.1)
    pace.foreground()
    await run_batch(pace, time, 5.0)
    pace.foreground()
    await run_batch(pace, time, 0.0)
    assert time.slept == [MAX_REST_SECONDS]


async def test_the_intake_counts_as_active_only_for_a_while():
    pace, time = make_pace()
    pace.foreground()
    assert pace.busy()
    time.now += QUIET_SECONDS
    assert not pace.busy()
    await run_batch(pace, time, 1.0)
    await run_batch(pace, time, 1.0)
    assert time.slept == []


async def test_overdue_batches_and_a_full_share_are_not_paced():
    pace, time = make_pace(max_delay=60.0)
    pace.foreground()
    await run_batch(pace, time, 0.5)
    pace.foreground()
    await run_batch(pace, time, 0.5, waited=61.0)
    assert time.slept == []

    full, time = make_pace(share=1.0)
    full.foreground()
    assert not full.busy()
    await run_batch(full, time, 0.5)
    await run_batch(full, time, 0.5)
    assert time.slept == []


async def test_while_the_intake_works_batches_take_turns():
    pace, _ = make_pace()
    pace.foreground()
    inside = 0
    most = 0
    release = asyncio.Event()

    async def batch() -> None:
        nonlocal inside, most
        async with pace.turn(0.0):
            inside += 1
            most = max(most, inside)
            await release.wait()
            inside -= 1

    tasks = [asyncio.create_task(batch()) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert most == 1


async def test_a_higher_lane_waiting_for_its_turn_goes_first():
    pace, _ = make_pace()
    pace.foreground()
    order: list[str] = []
    release = asyncio.Event()

    async def batch(name: str, lane: int) -> None:
        async with pace.turn(0.0, lane):
            order.append(name)
            await release.wait()

    first = asyncio.create_task(batch("running", 0))
    await asyncio.sleep(0)
    waiting = [("intake 1", 0), ("contact", 2), ("intake 2", 0), ("start", 1), ("contact 2", 2)]
    tasks = [asyncio.create_task(batch(name, lane)) for name, lane in waiting]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *tasks)
    # Lane by lane from the highest; within a lane, in the order they came.
    assert order == ["running", "contact", "contact 2", "start", "intake 1", "intake 2"]


async def test_share_must_be_a_fraction():
    with pytest.raises(ValueError, match="share"):
        Pace(0, 60)
    with pytest.raises(ValueError, match="share"):
        Pace(1.5, 60)
