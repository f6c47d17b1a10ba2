"""Rate limits per sending identity (messages/s, calls/s), shared across processes via Redis.

The generic cell rate algorithm: each key keeps a theoretical arrival time; a send is allowed
when that time is within the burst tolerance of now. `try_acquire` either takes the slot and
answers 0, or takes nothing and answers how many seconds to wait. Time comes from the clock.
"""

from __future__ import annotations

from typing import Any, Protocol

from clock import Clock


class RateLimiter(Protocol):
    async def try_acquire(self, key: str, per_second: float, burst: int = 1) -> float:
        """Take one slot of `key` now (0.0) or say how long to wait (seconds, nothing taken)."""
        ...


def _decide(tat: float, now: float, per_second: float, burst: int) -> tuple[float, float]:
    """(wait, new theoretical arrival time)."""
    interval = 1.0 / per_second
    tat = max(tat, now)
    wait = tat - (burst - 1) * interval - now
    return (wait, tat) if wait > 0 else (0.0, tat + interval)


class LocalRateLimiter:
    """One process: the state lives in a dict."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}

    async def try_acquire(self, key: str, per_second: float, burst: int = 1) -> float:
        now = self.clock.now().timestamp()
        wait, self._tat[key] = _decide(self._tat.get(key, now), now, per_second, burst)
        return wait


# The same decision as _decide, atomically in Redis; the key expires once it is idle.
_GCRA = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or ARGV[1])
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return tostring(wait) end
local new_tat = tat + interval
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return '0'
"""


class RedisRateLimiter:
    """Many processes: the state lives in Redis, decided by one Lua script per call."""

    def __init__(self, redis: Any, clock: Clock, prefix: str = "ordertalk:rate:") -> None:
        self.clock = clock
        self.prefix = prefix
        self._script = redis.register_script(_GCRA)

    async def try_acquire(self, key: str, per_second: float, burst: int = 1) -> float:
        interval = 1.0 / per_second
        answer = await self._script(
            keys=[self.prefix + key],
            args=[
                repr(self.clock.now().timestamp()),
                repr(interval),
                repr((burst - 1) * interval),
            ],
        )
        return float(answer)
