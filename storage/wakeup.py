"""Wake job workers as soon as new work is committed, instead of waiting for their next poll.

`Wakeup` works inside one process. `RedisWakeup` also publishes on a Redis channel and
listens to it, and `PostgresWakeup` listens to PostgreSQL NOTIFY (the enqueue transaction
sends it, so PostgreSQL delivers it exactly when the jobs become visible). A lost wake-up
only costs latency: workers still poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any

import asyncpg

_LOGGER = logging.getLogger(__name__)


class Wakeup:
    """In-process fan-out: every subscribed event is set when work arrives."""

    def __init__(self) -> None:
        self._events: set[asyncio.Event] = set()

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def wake(self) -> None:
        for event in self._events:
            event.set()

    async def announce(self) -> None:
        """Called after a commit that enqueued jobs."""
        self.wake()

    async def start(self) -> None:
        """Start listening to other processes (nothing to do in-process)."""

    async def stop(self) -> None:
        """Stop listening to other processes."""


class _ListeningWakeup(Wakeup, ABC):
    """A wake-up fed by a background listener task that reconnects when it fails."""

    def __init__(self) -> None:
        super().__init__()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen_forever(), name=type(self).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listening.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _LOGGER.warning("wake-up listener lost (%s); retrying in %.1fs", exc, delay)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)

    @abstractmethod
    async def _listen(self) -> None:
        """Wake subscribers on every message until the connection fails."""


class RedisWakeup(_ListeningWakeup):
    def __init__(self, redis: Any, channel: str) -> None:
        super().__init__()
        self._redis = redis
        self._channel = channel

    async def announce(self) -> None:
        self.wake()
        try:
            await self._redis.publish(self._channel, b"1")
        except Exception as exc:  # the poll still finds the work
            _LOGGER.warning("wake-up publish failed: %s", exc)

    async def _listen(self) -> None:
        async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self._channel)
            self.listening.set()
            async for _message in pubsub.listen():
                self.wake()


class PostgresWakeup(_ListeningWakeup):
    def __init__(self, dsn: str, channel: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._channel = channel

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(self._channel, lambda *_args: self.wake())
            self.listening.set()
            # Work enqueued while we were not listening is found by the next poll.
            self.wake()
            await lost.wait()
            raise ConnectionError("PostgreSQL LISTEN connection closed")
        finally:
            await conn.close()
