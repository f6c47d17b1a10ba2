"""The one injectable source of the current time: nothing else reads the wall clock.

`SystemClock` serves production; `ManualClock` serves tests; `OffsetClock` serves the sandbox,
whose time runs like the wall clock's and can be moved forward to see retries and windows.
All values are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("time does not run backwards")
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> datetime:
        if moment < self._now:
            raise ValueError("time does not run backwards")
        self._now = moment
        return self._now


class OffsetClock:
    """The system time plus an offset that only grows: time runs, and can jump forward.

    The sandbox's clock: `advance` and `advance_to` move it ahead (never back), so timers
    and calling windows can be seen without waiting.
    """

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        if offset < timedelta(0):
            raise ValueError("time does not run backwards")
        self._offset = offset

    @property
    def offset(self) -> timedelta:
        """How far ahead of the system time this clock is."""
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by `delta`; returns the new time."""
        if delta < timedelta(0):
            raise ValueError("time does not run backwards")
        self._offset += delta
        return self.now()

    def advance_to(self, moment: datetime) -> datetime:
        """Move forward to `moment` (timezone-aware); a moment already past changes nothing."""
        if moment.tzinfo is None:
            raise ValueError("OffsetClock needs a timezone-aware moment")
        self._offset += max(moment - self.now(), timedelta(0))
        return self.now()
