"""Provider accounts per shop (its own, checked live, or the platform's) and the account
chosen per channel.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "provider_accounts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.String(length=128), nullable=False),
        sa.Column("details", JSON, nullable=False),
        sa.Column("secrets", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_provider_accounts_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_accounts")),
        sa.UniqueConstraint(
            "shop_id",
            "provider",
            "owner",
            name=op.f("uq_provider_accounts_shop_id_provider_owner"),
        ),
    )
    op.create_index(
        op.f("ix_provider_accounts_shop_id"), "provider_accounts", ["shop_id"], unique=False
    )
    op.create_index(
        op.f("ix_provider_accounts_provider_external_id"),
        "provider_accounts",
        ["provider", "external_id"],
        unique=False,
    )
    with op.batch_alter_table("shops") as batch:
        batch.add_column(sa.Column("channels", JSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.drop_column("channels")
    op.drop_index(
        op.f("ix_provider_accounts_provider_external_id"), table_name="provider_accounts"
    )
    op.drop_index(op.f("ix_provider_accounts_shop_id"), table_name="provider_accounts")
    op.drop_table("provider_accounts")
