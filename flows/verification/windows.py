"""Calling windows: the hours of the shop's local day when a customer may be called or sent a
retry. Local time comes from the IANA zone, so a window is right on a DST change day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


def in_window(moment: datetime, zone: str, start_hour: int, end_hour: int) -> datetime:
    """`moment` if it falls in [start, end) of the local day, else the next window start:
    later the same day when it is before the start, the next day when it is past the end."""
    tz = ZoneInfo(zone)
    local = moment.astimezone(tz)
    if start_hour <= local.hour < end_hour:
        return moment
    day = local.date() if local.hour < start_hour else local.date() + timedelta(days=1)
    while True:
        opening = datetime.combine(day, time(start_hour), tz).astimezone(UTC)
        # A window wholly inside a DST gap does not exist that day: the next day's does.
        if start_hour <= opening.astimezone(tz).hour < end_hour and opening >= moment:
            return opening
        day += timedelta(days=1)
