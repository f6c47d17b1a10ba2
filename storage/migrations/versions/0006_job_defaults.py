"""A new job's starting values (queued, never attempted, no error) are the jobs table's
defaults, so every writer of job rows (the queue, the webhook intake's batch SQL) leaves
them to the schema.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULTS = {"status": "queued", "attempts": sa.text("0"), "last_error": ""}


def _set(defaults: dict[str, str | sa.TextClause | None]) -> None:
    with op.batch_alter_table("jobs") as batch:
        for column, default in defaults.items():
            batch.alter_column(column, server_default=default)


def upgrade() -> None:
    _set(DEFAULTS)


def downgrade() -> None:
    _set(dict.fromkeys(DEFAULTS))
