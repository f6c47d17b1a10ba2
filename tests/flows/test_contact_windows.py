"""No call or verification message outside the calling window, however late its job runs
(issue 14 item 13): a property over IANA zones, DST change days, window hours, cascades and
job delays (backlogs, retries after backoff, rate-limit deferrals).

The jobs are simulated over the pure flow as the call and send jobs run them: a job checks
`held_until` when it runs and, if the window is closed, tells the flow (WindowClosed) and
runs again at the window start, itself possibly late again. Nobody answers. A job late by
more than the window every time never finds it open: it makes no contact, which is right.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.shops.settings import ShopSettings
from flows.verification.flow import (
    PENDING,
    CallEnded,
    PlaceCall,
    SendMessage,
    Start,
    StartTimer,
    Timer,
    VState,
    WindowClosed,
    held_until,
    step,
)
from tests.flows.test_verification import order

YEAR = 2026
ZONES = sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/"))
CASCADES = [
    {"verification": {"type": "ivr"}, "fallback": {"mode": "sms_link"}},
    {"verification": {"type": "whatsapp", "then": ["ivr"]}, "fallback": {"mode": "missed_call"}},
    {"verification": {"type": "ivr"}, "fallback": {"mode": "missed_call"}},
]


@cache
def changes(zone: str) -> tuple[datetime, ...]:
    """The days of the year (UTC midnight after) when the zone's UTC offset changes."""
    tz = ZoneInfo(zone)
    found = []
    moment = datetime(YEAR, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(tz).utcoffset()
    while moment.year == YEAR:
        moment += timedelta(days=1)
        now = moment.astimezone(tz).utcoffset()
        if now != offset:
            found.append(moment)
            offset = now
    return tuple(found)


@st.composite
def starts(draw: st.DrawFn, zone: str) -> datetime:
    """An order time within two days of a day the zone's offset changes (any if none)."""
    around = changes(zone)
    if around:
        base = draw(st.sampled_from(around))
        return base + timedelta(minutes=draw(st.integers(-48 * 60, 48 * 60)))
    day = draw(st.integers(0, 364))
    return datetime(YEAR, 1, 1, tzinfo=UTC) + timedelta(
        days=day, minutes=draw(st.integers(0, 1439))
    )


@st.composite
def spacing(draw: st.DrawFn, longest: int) -> dict[str, int]:
    retries = draw(st.integers(0, 3))
    interval = draw(st.integers(10, longest)) if retries else 0
    return {"retries": retries, "retry_interval_minutes": interval}


@st.composite
def shops(draw: st.DrawFn, zone: str) -> ShopSettings:
    start = draw(st.integers(0, 22))
    end = draw(st.integers(start + 1, 23))
    document: dict[str, Any] = dict(draw(st.sampled_from(CASCADES)))
    document["verification"] = {
        **document["verification"],
        "window_first_call": True,
        "window_first_message": True,
    }
    document["ivr"] = {
        "timezone": zone,
        "window_start_hour": start,
        "window_end_hour": end,
        **draw(spacing(120)),
    }
    document["fallback"] = {
        **document["fallback"],
        "sms_link": draw(spacing(60)),
        "missed_call": draw(spacing(60)),
    }
    document["whatsapp"] = {"retries": draw(st.integers(0, 2)), "retry_interval_minutes": 30}
    return ShopSettings.model_validate(document)


# How late a job runs: on time, a rate-limit deferral, a backoff, a backlog of hours.
DELAYS = st.lists(
    st.sampled_from([0, 1, 30, 300, 3600, 4 * 3600, 9 * 3600, 13 * 3600]).map(
        lambda s: timedelta(seconds=s)
    ),
    min_size=1,
    max_size=12,
)


def simulate(
    shop: ShopSettings, placed: datetime, delays: list[timedelta]
) -> list[tuple[datetime, str, str]]:
    """Run one verification nobody answers for 30 days; every contact: (when, purpose, key)."""
    lateness = itertools.cycle(delays)
    order_ = itertools.count()
    jobs: list[tuple[datetime, int, str, Any]] = []
    state = VState()
    contacts: list[tuple[datetime, str, str]] = []

    def push(at: datetime, kind: str, what: Any) -> None:
        heapq.heappush(jobs, (at, next(order_), kind, what))

    def apply(event: Any, now: datetime) -> None:
        nonlocal state
        state, effects = step(state, event, shop, now)
        for effect in effects:
            if isinstance(effect, StartTimer):
                push(effect.at + next(lateness), "timer", effect.seq)
            elif isinstance(effect, PlaceCall):
                push(now + next(lateness), "contact", ("call", effect.call))
            elif isinstance(effect, SendMessage):
                push(now + next(lateness), "contact", (effect.purpose, effect.key))

    apply(Start(order(placed_at=placed)), placed)
    while jobs and jobs[0][0] < placed + timedelta(days=30):
        now, _, kind, what = heapq.heappop(jobs)
        if kind == "timer":
            apply(Timer(what), now)
        elif kind == "ended":
            apply(CallEnded(what, "no-answer"), now)
        else:
            purpose, key = what
            if purpose == "call" and (state.status != PENDING or state.open_call != key):
                continue  # the call job's own check: decided or moved on
            until = held_until(purpose, key, shop, now)
            if until is not None:
                apply(WindowClosed(purpose, key, until), now)
                push(until + next(lateness), "contact", what)
                continue
            contacts.append((now, purpose, key))
            if purpose == "call":
                push(now + timedelta(minutes=1), "ended", key)
    return contacts


@settings(max_examples=300, deadline=None)
@given(data=st.data(), zone=st.sampled_from(ZONES), delays=DELAYS)
def test_no_contact_outside_the_calling_window(
    data: st.DataObject, zone: str, delays: list[timedelta]
) -> None:
    shop = data.draw(shops(zone))
    placed = data.draw(starts(zone))
    contacts = simulate(shop, placed, delays)
    ivr, tz = shop.ivr, ZoneInfo(zone)
    outside = [
        (when.astimezone(tz).isoformat(), purpose, key)
        for when, purpose, key in contacts
        if not ivr.window_start_hour <= when.astimezone(tz).hour < ivr.window_end_hour
    ]
    assert outside == []
    assert len({(purpose, key) for _, purpose, key in contacts}) == len(contacts)
