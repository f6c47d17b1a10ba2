"""Calling windows: `in_window(moment, zone, start, end)` keeps a moment inside [start, end) of
the shop's local day and moves any other to the next window start, right across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.verification.windows import in_window

KOLKATA = "Asia/Kolkata"  # UTC+05:30, no DST
NEW_YORK = "America/New_York"  # 2026: EDT from Sun 8 March 02:00, EST from Sun 1 November 02:00


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "start", "end", "moment", "expected"),
    [
        # Kolkata, 9-21 (UTC 03:30-15:30)
        pytest.param(KOLKATA, 9, 21, utc(2026, 3, 2, 6, 0), None, id="inside"),
        pytest.param(KOLKATA, 9, 21, utc(2026, 3, 2, 3, 30), None, id="at-start"),
        pytest.param(KOLKATA, 9, 21, utc(2026, 3, 2, 15, 29, 59), None, id="just-before-end"),
        pytest.param(
            KOLKATA, 9, 21, utc(2026, 3, 2, 15, 30), utc(2026, 3, 3, 3, 30), id="at-end-excluded"
        ),
        pytest.param(
            KOLKATA, 9, 21, utc(2026, 3, 2, 1, 0), utc(2026, 3, 2, 3, 30), id="before-start"
        ),
        pytest.param(
            KOLKATA, 9, 21, utc(2026, 3, 1, 18, 30), utc(2026, 3, 2, 3, 30), id="local-midnight"
        ),
        pytest.param(
            KOLKATA, 9, 21, utc(2026, 3, 2, 17, 0), utc(2026, 3, 3, 3, 30), id="after-end"
        ),
        # 23:55 on 31 December -> 09:00 on 1 January
        pytest.param(
            KOLKATA, 9, 21, utc(2026, 12, 31, 18, 25), utc(2027, 1, 1, 3, 30), id="new-year"
        ),
        pytest.param(KOLKATA, 0, 23, utc(2026, 3, 2, 18, 30), None, id="midnight-start"),
        pytest.param(
            KOLKATA, 0, 23, utc(2026, 3, 2, 17, 30), utc(2026, 3, 2, 18, 30), id="23-to-midnight"
        ),
        # New York, spring forward: Sat 21:10 EST -> Sun 09:00 EDT
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 3, 8, 2, 10), utc(2026, 3, 8, 13, 0), id="ny-spring-eve"
        ),
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 13, 0), id="ny-spring-1:30"
        ),
        # 02:00 does not exist that day: the window opens at 03:00 EDT
        pytest.param(
            NEW_YORK, 2, 21, utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 0), id="ny-start-in-gap"
        ),
        pytest.param(NEW_YORK, 9, 21, utc(2026, 3, 8, 13, 0), None, id="ny-spring-at-start"),
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 3, 9, 1, 0), utc(2026, 3, 9, 13, 0), id="ny-spring-end"
        ),
        # New York, fall back: Sat 21:10 EDT -> Sun 09:00 EST
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 11, 1, 1, 10), utc(2026, 11, 1, 14, 0), id="ny-fall-eve"
        ),
        # 01:30 happens twice that day (EDT, then EST): both wait for 09:00 EST
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 14, 0), id="ny-fall-1:30a"
        ),
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 11, 1, 6, 30), utc(2026, 11, 1, 14, 0), id="ny-fall-1:30b"
        ),
        # a window from 01:00 opens at the first 01:00 (EDT)
        pytest.param(
            NEW_YORK, 1, 21, utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5, 0), id="ny-start-twice"
        ),
        pytest.param(NEW_YORK, 1, 21, utc(2026, 11, 1, 6, 30), None, id="ny-second-1:30-inside"),
        pytest.param(
            NEW_YORK, 9, 21, utc(2026, 11, 2, 2, 0), utc(2026, 11, 2, 14, 0), id="ny-fall-end"
        ),
    ],
)
def test_in_window(
    zone: str, start: int, end: int, moment: datetime, expected: datetime | None
) -> None:
    """`expected` None: the moment is inside and comes back unchanged."""
    assert in_window(moment, zone, start, end) == (expected or moment)


def test_a_window_wholly_inside_a_dst_gap_opens_the_next_day() -> None:
    moment = utc(2026, 3, 8, 6, 30)  # 01:30 EST, the night the clocks go forward
    assert in_window(moment, NEW_YORK, 2, 3) == utc(2026, 3, 9, 6, 0)


ZONES = [
    "UTC",
    KOLKATA,
    NEW_YORK,
    "Europe/London",
    "Europe/Berlin",
    "America/Santiago",  # DST changes at local midnight
    "America/St_Johns",  # UTC-03:30 / -02:30
    "Asia/Kathmandu",  # UTC+05:45
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Pacific/Chatham",  # UTC+12:45 / +13:45
]


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(0, 22))
    return start, draw(st.integers(start + 1, 23))


@settings(max_examples=400, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(ZONES),
    window=windows(),
)
def test_in_window_property(moment: datetime, zone: str, window: tuple[int, int]) -> None:
    start, end = window
    result = in_window(moment, zone, start, end)
    local = result.astimezone(ZoneInfo(zone))
    assert result >= moment
    assert start <= local.hour < end
    assert result - moment <= timedelta(hours=48)
    if start <= moment.astimezone(ZoneInfo(zone)).hour < end:
        assert result == moment
