"""Schema migrations (Alembic), run on the application's own engine.

`python main.py migrate` calls `upgrade`; `serve` calls it for an SQLite file by itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(db: Database, revision: str = "head") -> None:
    await _run(db, command.upgrade, revision)


async def downgrade(db: Database, revision: str) -> None:
    await _run(db, command.downgrade, revision)


async def current_revision(db: Database) -> str | None:
    async with db.engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


async def _run(db: Database, action: Any, revision: str) -> None:
    config = alembic_config(db.url)

    def run(sync_conn: Any) -> None:
        config.attributes["connection"] = sync_conn
        action(config, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)
