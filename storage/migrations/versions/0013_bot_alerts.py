"""The merchant bot's alerts: the phone an agent's click-to-call rings first, and when a
chat blocked the bot (its alerts are skipped until it turns them on again).

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bot_links") as batch:
        batch.add_column(
            sa.Column("phone", sa.String(length=20), server_default="", nullable=False)
        )
        batch.add_column(sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bot_links") as batch:
        batch.drop_column("blocked_at")
        batch.drop_column("phone")
