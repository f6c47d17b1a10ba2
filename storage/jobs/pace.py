"""Foreground first: background floods give way to the webhook intake sharing their process.

In `serve` the web side and the worker share one event loop, so a flood of webhooks would
otherwise be answered only as fast as the worker turns them into orders. The intake marks
itself active (`foreground`); while it has been active lately, batch jobs take turns
(`turn`): one batch at a time, each followed by a rest long enough that batches fill at most
`share` of the time. Acknowledged webhooks are durable, so the backlog waits safely and
drains at full speed once the intake is quiet. A batch whose jobs have waited longer than
`max_delay_seconds` is not paced, so a flood that does not end still gets processed (the
intake then slows down instead). A process without an intake is never paced. Batches of a
higher lane (see `storage.jobs.queue`) waiting for a turn go before those of lower lanes;
within a lane they go in the order they came.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from storage.turns import Turns

# The intake counts as active this long after its last batch.
QUIET_SECONDS = 0.5
# The longest rest between two turns, whatever the last batch cost.
MAX_REST_SECONDS = 1.0


class Pace:
    def __init__(
        self,
        share: float,
        max_delay_seconds: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self.share = share
        self.max_delay_seconds = max_delay_seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self._last_foreground = -math.inf
        self._next_turn = -math.inf
        self._turns = Turns()  # one batch at a time, higher lanes first

    def foreground(self) -> None:
        """The intake is working now."""
        self._last_foreground = self._monotonic()

    def busy(self) -> bool:
        return self.share < 1 and self._monotonic() - self._last_foreground < QUIET_SECONDS

    @asynccontextmanager
    async def turn(self, waited_seconds: float, lane: int = 0) -> AsyncIterator[None]:
        """Run one background batch of `lane` whose oldest job has waited `waited_seconds`:
        at once while the intake is quiet or the batch is overdue, else in turn."""
        # Not past batches still waiting their turn: a later batch of their lane would
        # overtake them (a journey's "shipped" decided before its order's "created").
        if (not self.busy() and not self._turns.taken) or waited_seconds > self.max_delay_seconds:
            yield
            return
        async with self._turns.hold(-lane):
            if self.busy() and (wait := self._next_turn - self._monotonic()) > 0:
                await self._sleep(wait)
            began = self._monotonic()
            try:
                yield
            finally:
                spent = self._monotonic() - began
                rest = min(spent * (1 - self.share) / self.share, MAX_REST_SECONDS)
                self._next_turn = self._monotonic() + rest
