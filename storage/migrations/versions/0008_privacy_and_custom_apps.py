"""A custom app's API secret key per shop (it signs that shop's webhooks).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.add_column(sa.Column("app_secret", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.drop_column("app_secret")
