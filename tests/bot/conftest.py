"""The fake Telegram Bot API, started on loopback for each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from clock import ManualClock
from tests.fakes.telegram import FakeTelegram


@pytest.fixture
async def telegram(clock: ManualClock) -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram(clock=clock)
    await fake.start()
    yield fake
    await fake.close()
