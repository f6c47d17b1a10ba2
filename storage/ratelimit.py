"""Rate limits per sending identity (messages/s, calls/s), shared across processes via Redis.

The generic cell rate algorithm: each key keeps a theoretical arrival time (TAT); a send is
allowed when that time is within the burst tolerance of now. Two ways to ask:

- `try_acquire` takes the slot now and answers 0, or takes nothing and answers how long to
  wait (for callers that refuse rather than wait: the OTP API answers 429).
- `reserve` always takes slots, the next free ones (as many as a batch asks for, in one
  call), and answers when each is: a job that must wait knows its own slot, so N waiting
  jobs come back one slot apart instead of all at once. A provider that throttles anyway
  (`throttled`, from its Retry-After) moves the key's next free time and every slot
  already given out: each key keeps a `shift`, the seconds its schedule has been moved so
  far; a holder compares the shift it was given with the current one (`shift`) before
  using its slot.

Time comes from the clock. Redis runs each decision as one Lua script, so any number of
processes share a key exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from clock import Clock


@dataclass(frozen=True)
class Slot:
    """A reserved slot: its time `at` (a timestamp, now or later); `wait`: seconds from the
    moment it was reserved; `shift`: the key's shift then."""

    at: float
    wait: float
    shift: float


class RateLimiter(Protocol):
    async def try_acquire(self, key: str, per_second: float, burst: int = 1) -> float:
        """Take one slot of `key` now (0.0) or say how long to wait (seconds, nothing taken)."""
        ...

    async def reserve(self, key: str, per_second: float, count: int = 1) -> list[Slot]:
        """Take the next `count` free slots of `key`, now or later, in order."""
        ...

    async def shift(self, key: str) -> float:
        """How far the slots of `key` have been moved so far (seconds)."""
        ...

    async def throttled(self, key: str, seconds: float) -> None:
        """The provider refused a send for `seconds`: no slot of `key` before then."""
        ...


@dataclass
class _Key:
    tat: float
    shift: float = 0.0
    held: float = 0.0  # the latest time a provider said to wait until


def _decide(tat: float, now: float, per_second: float, burst: int) -> tuple[float, float]:
    """(wait, new theoretical arrival time)."""
    interval = 1.0 / per_second
    tat = max(tat, now)
    wait = tat - (burst - 1) * interval - now
    return (wait, tat) if wait > 0 else (0.0, tat + interval)


def _reserve(key: _Key, now: float, per_second: float) -> float:
    """Take the next slot of `key` (mutated); its time."""
    tat = max(key.tat, now)
    key.tat = tat + 1.0 / per_second
    return tat


def _throttle(key: _Key, now: float, seconds: float) -> None:
    """Move the slots of `key` (mutated) so that none is before now + `seconds`. Several
    sends refused together name about the same time: the schedule moves once."""
    until = now + seconds
    delta = max(0.0, until - max(now, key.held))
    key.tat = max(key.tat, now) + delta
    key.shift += delta
    key.held = max(key.held, until)


class LocalRateLimiter:
    """One process: the state lives in a dict."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._keys: dict[str, _Key] = {}

    async def try_acquire(self, key: str, per_second: float, burst: int = 1) -> float:
        now = self.clock.now().timestamp()
        wait, self._tat[key] = _decide(self._tat.get(key, now), now, per_second, burst)
        return wait

    async def reserve(self, key: str, per_second: float, count: int = 1) -> list[Slot]:
        now = self.clock.now().timestamp()
        state = self._keys.setdefault(key, _Key(now))
        times = [_reserve(state, now, per_second) for _ in range(count)]
        return [Slot(at, at - now, state.shift) for at in times]

    async def shift(self, key: str) -> float:
        state = self._keys.get(key)
        return state.shift if state else 0.0

    async def throttled(self, key: str, seconds: float) -> None:
        now = self.clock.now().timestamp()
        _throttle(self._keys.setdefault(key, _Key(now)), now, seconds)


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

# _reserve and _throttle in Redis: a hash (tat, shift, held) per key, kept a minute past the
# last slot it gave out so that late holders still find its shift.
_KEEP = """
local function keep(key, now, tat, held)
  local last = math.max(tat, held)
  redis.call('PEXPIRE', key, math.ceil((last - now) * 1000) + 60000)
end
"""

_RESERVE = (
    _KEEP
    + """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tat', 'shift', 'held')
local tat = tonumber(state[1] or ARGV[1])
if tat < now then tat = now end
local answer = {state[2] or '0'}
for i = 1, count do
  answer[i + 1] = tostring(tat)
  tat = tat + interval
end
redis.call('HSET', KEYS[1], 'tat', tostring(tat))
keep(KEYS[1], now, tat, tonumber(state[3] or '0'))
return answer
"""
)

_THROTTLE = (
    _KEEP
    + """
local now = tonumber(ARGV[1])
local untill = now + tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tat', 'shift', 'held')
local tat = tonumber(state[1] or ARGV[1])
local shift = tonumber(state[2] or '0')
local held = tonumber(state[3] or '0')
local delta = untill - math.max(now, held)
if delta < 0 then delta = 0 end
if tat < now then tat = now end
tat = tat + delta
held = math.max(held, untill)
redis.call('HSET', KEYS[1], 'tat', tostring(tat), 'shift', tostring(shift + delta),
  'held', tostring(held))
keep(KEYS[1], now, tat, held)
return 1
"""
)


class RedisRateLimiter:
    """Many processes: the state lives in Redis, decided by one Lua script per call."""

    def __init__(self, redis: Any, clock: Clock, prefix: str = "ordertalk:rate:") -> None:
        self.clock = clock
        self.prefix = prefix
        self.redis = redis
        self._script = redis.register_script(_GCRA)
        self._reserve = redis.register_script(_RESERVE)
        self._throttle = redis.register_script(_THROTTLE)

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

    async def reserve(self, key: str, per_second: float, count: int = 1) -> list[Slot]:
        now = self.clock.now().timestamp()
        shift, *times = await self._script_call(
            self._reserve, key, repr(now), repr(1.0 / per_second), str(count)
        )
        return [Slot(float(at), float(at) - now, float(shift)) for at in times]

    async def shift(self, key: str) -> float:
        return float(await self.redis.hget(self._slots(key), "shift") or 0)

    async def throttled(self, key: str, seconds: float) -> None:
        await self._script_call(
            self._throttle, key, repr(self.clock.now().timestamp()), repr(seconds)
        )

    async def _script_call(self, script: Any, key: str, *args: str) -> Any:
        return await script(keys=[self._slots(key)], args=list(args))

    def _slots(self, key: str) -> str:
        # Apart from try_acquire's keys: a reserved schedule is not an OTP counter.
        return f"{self.prefix}slots:{key}"
