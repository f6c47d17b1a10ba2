"""Migrations apply to an empty database, match the models, and round-trip down and up."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from storage import migrate
from storage.db import Database
from storage.models import Base

TABLES = {
    "shops", "customers", "orders", "verifications", "messages", "calls", "missed_calls",
    "activities", "credit_ledger", "webhook_receipts", "bot_links", "jobs", "provider_accounts",
    "consents", "consent_events", "line_consents", "threads", "pending_choices",
}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    return request.getfixturevalue("pg_scratch")()


async def table_names(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def schema_drift(db: Database) -> list:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
            )
        )


async def test_upgrade_downgrade_upgrade_round_trip(empty_url):
    db = Database(empty_url)
    try:
        assert await migrate.current_revision(db) is None
        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        assert await table_names(db) >= TABLES
        assert await schema_drift(db) == []

        await migrate.downgrade(db, "base")
        assert await migrate.current_revision(db) is None
        assert await table_names(db) & TABLES == set()

        await migrate.upgrade(db)
        assert await table_names(db) >= TABLES
        assert await schema_drift(db) == []
    finally:
        await db.close()
