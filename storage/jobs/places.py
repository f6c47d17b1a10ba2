"""Where the intake puts a new job in the queue: each shop's jobs of a kind follow its own last
due one, and a shop with none due goes to the queue's head (start-time fair queuing).

A claim reads the oldest due jobs (see `storage.jobs.queue`), so a job's place is its due
time, set at or before its arrival, never after: it is due at once either way. A flooding
shop's jobs keep their order, placed `TURN` apart where there is room before now and packed
a microsecond apart where there is not, so another shop's first job, placed at the head, is
claimed before that flood's backlog instead of after it, and is never one of many jobs at
the same instant (a claim reads a fixed number of the oldest). A delivery that names no shop
keeps its arrival time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

# One job's room in its shop's run: a shop delivering faster than one job per TURN is
# placed at its arrival times, one delivering slower at its last job plus TURN.
TURN = timedelta(milliseconds=1)
TICK = timedelta(microseconds=1)  # the finest step of a due time

Key = tuple[int, str]  # (shop id, job kind)


def place(
    keys: Sequence[Key | None],
    now: datetime,
    head: datetime | None,
    last: Mapping[Key, datetime | None],
) -> list[datetime]:
    """The due time of each new job, in arrival order: `keys` names each one's shop and kind
    (None: no shop), `head` is the earliest queued job's due time, `last` each key's latest
    job due by `now` (None or absent: none)."""
    start = now if head is None else min(head, now)
    behind = Counter(key for key in keys if key is not None)  # each run's jobs still to place
    placed: dict[Key, datetime] = {}
    times = []
    for key in keys:
        if key is None:
            times.append(now)
            continue
        behind[key] -= 1
        latest = now - behind[key] * TICK  # leaves the rest of the run a tick each
        before = placed.get(key) or last.get(key)
        turn = start if before is None else max(start, before + TURN)
        at = min(turn, latest)
        if before is not None:
            at = min(max(at, before + TICK), now)  # after its last job, even at now
        placed[key] = at
        times.append(at)
    return times
