"""The bot's records in the database, on SQLite and PostgreSQL: the polling lease (one holder,
renewed, expired, released, with the position reached) and the FSM storage (state and data
per chat user; no row once both are cleared)."""

from __future__ import annotations

from datetime import timedelta

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import func, select

from bot.fsm import DatabaseStorage
from storage import leases
from storage.models import BotState

TTL = timedelta(seconds=60)


class Steps(StatesGroup):
    code = State()


async def test_a_lease_has_one_holder_until_it_expires_or_is_released(db, clock):
    now = clock.now()
    assert await leases.hold(db, "telegram:1", "a", now, TTL) == 0
    assert await leases.hold(db, "telegram:1", "b", now, TTL) is None
    assert await leases.hold(db, "telegram:1", "a", now + TTL / 2, TTL, position=42) == 42
    # Renewed at TTL/2: still a's at TTL, b's once it lapsed.
    assert await leases.hold(db, "telegram:1", "b", now + TTL, TTL) is None
    assert await leases.hold(db, "telegram:1", "b", now + TTL * 3 / 2, TTL) == 42
    assert await leases.hold(db, "telegram:1", "a", now + TTL * 3 / 2, TTL) is None
    await leases.release(db, "telegram:1", "a", now + TTL * 2)  # not a's: changes nothing
    assert await leases.hold(db, "telegram:1", "a", now + TTL * 2, TTL) is None
    await leases.release(db, "telegram:1", "b", now + TTL * 2)
    assert await leases.hold(db, "telegram:1", "a", now + TTL * 2, TTL) == 42
    assert await leases.hold(db, "telegram:2", "b", now, TTL) == 0  # another bot's lease


async def test_fsm_state_and_data_are_kept_per_user_and_cleared_rows_go(db, clock):
    storage = DatabaseStorage(db, clock)
    key = StorageKey(bot_id=1, chat_id=10, user_id=10)
    other = StorageKey(bot_id=1, chat_id=11, user_id=11)
    assert (await storage.get_state(key), await storage.get_data(key)) == (None, {})

    await storage.set_state(key, Steps.code)
    await storage.update_data(key, {"page": "contact", "tries": 1})
    await storage.set_state(other, "Other:step")
    again = DatabaseStorage(db, clock)  # another process, or this one restarted
    assert await again.get_state(key) == Steps.code.state
    assert await again.get_data(key) == {"page": "contact", "tries": 1}
    assert await again.get_state(other) == "Other:step"

    await again.set_state(key, None)
    assert await again.get_data(key) == {"page": "contact", "tries": 1}
    await again.set_data(key, {})
    await again.set_state(other, None)
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(BotState)) == 0


async def test_fsm_data_updates_merge_into_what_is_stored(db, clock):
    storage = DatabaseStorage(db, clock)
    key = StorageKey(bot_id=1, chat_id=10, user_id=10)
    assert await storage.update_data(key, {}) == {}  # nothing to keep: still no row
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(BotState)) == 0

    assert await storage.update_data(key, {"report": {"kind": "orders"}}) == {
        "report": {"kind": "orders"}
    }
    await storage.set_state(key, Steps.code)
    merged = await storage.update_data(key, {"page": 2})
    assert merged == {"report": {"kind": "orders"}, "page": 2}
    assert await storage.update_data(key, {"page": 3}) == {"report": {"kind": "orders"}, "page": 3}
    again = DatabaseStorage(db, clock)
    assert await again.get_data(key) == {"report": {"kind": "orders"}, "page": 3}
    assert await again.get_state(key) == Steps.code.state
