"""Where the bot keeps each user's place in a conversation (aiogram FSM): aiogram's own
RedisStorage when Redis is configured, otherwise `DatabaseStorage`, a row per chat user in our
database. Either way the state survives a restart and every process sees the same one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from redis.asyncio import Redis

from clock import Clock
from storage.db import Database
from storage.models import BotState

FSM_PREFIX = "ordertalk_bot"


def key_builder() -> KeyBuilder:
    return DefaultKeyBuilder(prefix=FSM_PREFIX, with_bot_id=True, with_destiny=True)


def fsm_storage(
    db: Database, clock: Clock, redis: Redis | None
) -> tuple[BaseStorage, BaseEventIsolation]:
    """The storage of conversation states, and how one user's updates are kept in order:
    across processes with Redis, within the process otherwise."""
    if redis is not None:
        keys = key_builder()
        return RedisStorage(redis, key_builder=keys), RedisEventIsolation(redis, key_builder=keys)
    return DatabaseStorage(db, clock), SimpleEventIsolation()


class DatabaseStorage(BaseStorage):
    """aiogram FSM storage in the `bot_states` table; a user with neither state nor data has
    no row."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self.keys = key_builder()

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        name = state.state if isinstance(state, State) else state
        await self._change(key, state=name)

    async def get_state(self, key: StorageKey) -> str | None:
        row = await self._row(key)
        return row.state if row is not None else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._change(key, data=dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await self._row(key)
        return dict(row.data) if row is not None else {}

    async def update_data(self, key: StorageKey, data: Mapping[str, Any]) -> dict[str, Any]:
        """`data` merged into the user's, read and written in one transaction."""
        return await self._change(key, merge=data)

    async def close(self) -> None:
        """Nothing to close: the database handle belongs to the process."""

    async def _row(self, key: StorageKey) -> BotState | None:
        async with self.db.sessions() as session:
            return await session.get(BotState, self.keys.build(key))

    async def _change(
        self, key: StorageKey, merge: Mapping[str, Any] | None = None, **values: Any
    ) -> dict[str, Any]:
        """Set `values` (and `merge` into the data) on the user's row; its data after."""
        record_key = self.keys.build(key)
        async with self.db.transaction() as session:
            row = await session.get(BotState, record_key, with_for_update=True)
            if merge is not None:
                values["data"] = {**(row.data if row is not None else {}), **merge}
            if row is None:
                if values.get("state") is None and not values.get("data"):
                    return {}
                row = BotState(key=record_key, state=None, data={})
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            row.updated_at = self.clock.now()
            if row.state is None and not row.data:
                await session.delete(row)
            return dict(row.data)
