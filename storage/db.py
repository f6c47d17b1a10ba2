"""The database handle: async engine, sessions, one-transaction unit of work, health ping.

SQLite runs in WAL mode behind a single pooled connection: the process's writes queue in
asyncio instead of spinning on SQLite's lock, and `BEGIN IMMEDIATE` keeps other processes
sharing the file from failing a read-then-write transaction. So code must never open a
second session while it holds one. Its commits are `synchronous=NORMAL` (the WAL is synced
at checkpoints: a process crash loses nothing, a power loss the last commits), except the
webhook intake's, which acknowledge deliveries and are FULL (see `storage.inbox_store`).
PostgreSQL uses asyncpg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import bindparam, event, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.turns import Turns
from storage.types import json_text, json_value
from storage.wakeup import Wakeup

JOBS_CHANNEL = "ordertalk_jobs"
SQLITE_SYNCHRONOUS = "NORMAL"
JSON_CODEC = {"json_serializer": json_text, "json_deserializer": json_value}
# Errors keep their statement, not its parameters: those carry phones, names and tokens into
# logs and jobs.last_error.
ENGINE_OPTIONS = {**JSON_CODEC, "hide_parameters": True}


class Database:
    def __init__(self, url: str, wakeup: Wakeup | None = None) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.wakeup = wakeup or Wakeup()
        self.engine = _create_engine(url, self.dialect)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # Webhook intake must not queue behind background jobs: on PostgreSQL it has its own
        # small pool; on SQLite's single connection it goes first (see storage.turns).
        self._gate = Turns() if self.dialect == "sqlite" else None
        self._priority_engine = (
            None
            if self._gate
            else create_async_engine(url, pool_size=3, max_overflow=2, **ENGINE_OPTIONS)
        )
        self._priority_sessions = async_sessionmaker(
            self._priority_engine or self.engine, expire_on_commit=False
        )

    @asynccontextmanager
    async def transaction(self, priority: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error.

        `priority` is for work a caller is waiting on (webhook intake) that must not queue
        behind background jobs. Workers are woken once the commit of a transaction that
        enqueued jobs is done.
        """
        sessions = self._priority_sessions if priority else self.sessions
        async with self._turn(priority), sessions() as session:
            async with session.begin():
                yield session
            if session.info.pop("jobs_enqueued", False):
                await self.wakeup.announce()

    @asynccontextmanager
    async def driver_connection(self, priority: bool = False) -> AsyncIterator[Any]:
        """The driver's own connection (asyncpg's or aiosqlite's), taken from the pool.

        For hand-written statements on a hot path; the caller runs its own transaction
        (none is open on checkout). A connection whose use raised is discarded, not pooled:
        it may hold an open transaction or be broken.
        """
        engine = self._priority_engine if priority and self._priority_engine else self.engine
        async with self._turn(priority), engine.connect() as conn:
            proxied = await conn.get_raw_connection()
            try:
                yield proxied.driver_connection
            except BaseException:
                await conn.invalidate()
                raise

    @asynccontextmanager
    async def _turn(self, priority: bool) -> AsyncIterator[None]:
        if self._gate is None:
            yield
            return
        async with self._gate.hold(0 if priority else 1):
            yield

    def insert(self, table: Any) -> Any:
        """An INSERT construct of this database's dialect (for ON CONFLICT clauses)."""
        return dialect_insert(self.dialect, table)

    async def ping(self) -> None:
        """Raise if the database does not answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()
        if self._priority_engine is not None:
            await self._priority_engine.dispose()


async def write_back(session: AsyncSession, rows: list[Any], *columns: str) -> None:
    """Write `columns` of ORM `rows` of one table (not tracked by `session`) back with one
    UPDATE by id for all of them."""
    if not rows:
        return
    table = type(rows[0]).__table__
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values({c: bindparam(f"b_{c}", type_=table.c[c].type) for c in columns}),
        [{"b_id": row.id, **{f"b_{c}": getattr(row, c) for c in columns}} for row in rows],
    )


def dialect_insert(dialect: str, table: Any) -> Any:
    """An INSERT construct of the named dialect (for ON CONFLICT clauses)."""
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)


def _create_engine(url: str, dialect: str) -> AsyncEngine:
    if dialect != "sqlite":
        # No pre-ping: a connection broken by a server restart is invalidated on its first error
        # and the job loop or the request retries, instead of a round trip on every checkout.
        return create_async_engine(url, pool_size=10, max_overflow=10, **ENGINE_OPTIONS)
    # No rollback on return to the pool: sessions and connections end their transactions
    # themselves, and on the only connection that round trip would be paid by every one.
    engine = create_async_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=60,
        pool_reset_on_return=None,
        **ENGINE_OPTIONS,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, start transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={SQLITE_SYNCHRONOUS}",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
