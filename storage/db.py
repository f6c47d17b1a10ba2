"""The database handle: async engine, sessions, one-transaction unit of work, health ping.

SQLite runs in WAL mode behind a single pooled connection: the process's writes queue in
asyncio instead of spinning on SQLite's lock, and `BEGIN IMMEDIATE` keeps other processes
sharing the file from failing a read-then-write transaction. So code must never open a
second session while it holds one. PostgreSQL uses asyncpg.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from storage.wakeup import Wakeup

JOBS_CHANNEL = "ordertalk_jobs"


class Database:
    def __init__(self, url: str, wakeup: Wakeup | None = None) -> None:
        self.url = url
        self.dialect = make_url(url).get_backend_name()
        self.wakeup = wakeup or Wakeup()
        self.engine = _create_engine(url, self.dialect)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits on success and rolls back on error.

        Workers are woken once the commit of a transaction that enqueued jobs is done.
        """
        async with self.sessions() as session:
            async with session.begin():
                yield session
            if session.info.pop("jobs_enqueued", False):
                await self.wakeup.announce()

    def insert(self, table: Any) -> Any:
        """An INSERT construct of this database's dialect (for ON CONFLICT clauses)."""
        return pg_insert(table) if self.dialect == "postgresql" else sqlite_insert(table)

    async def ping(self) -> None:
        """Raise if the database does not answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()


def _create_engine(url: str, dialect: str) -> AsyncEngine:
    if dialect != "sqlite":
        # No pre-ping: a connection broken by a server restart is invalidated on its first error
        # and the job loop or the request retries, instead of a round trip on every checkout.
        return create_async_engine(url, pool_size=10, max_overflow=10)
    engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=60)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, start transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
