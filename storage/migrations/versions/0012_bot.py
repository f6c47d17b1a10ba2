"""The merchant bot: names of linked chats, one-time invitation codes, the polling lease and
conversation states kept in the database.

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("bot_links") as batch:
        batch.add_column(
            sa.Column("name", sa.String(length=128), server_default="", nullable=False)
        )
    op.create_table(
        "bot_invites",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("code_hash", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("invited_by", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("used_at", TIME, nullable=True),
        sa.Column("used_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_bot_invites_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_invites")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_bot_invites_code_hash")),
    )
    op.create_index(op.f("ix_bot_invites_shop_id"), "bot_invites", ["shop_id"])
    op.create_table(
        "bot_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("next_update_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bot_leases")),
    )
    op.create_table(
        "bot_states",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=255), nullable=True),
        sa.Column("data", JSON, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_bot_states")),
    )


def downgrade() -> None:
    op.drop_table("bot_states")
    op.drop_table("bot_leases")
    op.drop_index(op.f("ix_bot_invites_shop_id"), table_name="bot_invites")
    op.drop_table("bot_invites")
    with op.batch_alter_table("bot_links") as batch:
        batch.drop_column("name")
