"""Conversations: keyword consent per line, merchant threads, held replies on shared numbers.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "line_consents",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_consents")),
        sa.UniqueConstraint(
            "line", "phone", "channel", name=op.f("uq_line_consents_line_phone_channel")
        ),
    )
    op.create_table(
        "threads",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("customer_id", BIG_ID, nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("handed_over", sa.String(length=64), nullable=False),
        sa.Column("last_inbound_at", TIME, nullable=True),
        sa.Column("last_outbound_at", TIME, nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_threads_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_threads_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threads")),
        sa.UniqueConstraint(
            "shop_id", "phone", "channel", name=op.f("uq_threads_shop_id_phone_channel")
        ),
    )
    op.create_index(op.f("ix_threads_shop_id"), "threads", ["shop_id"])
    op.create_index(
        op.f("ix_threads_shop_id_status_updated_at"),
        "threads",
        ["shop_id", "status", "updated_at"],
    )
    op.create_table(
        "pending_choices",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("options", JSON, nullable=False),
        sa.Column("held_text", sa.Text(), nullable=False),
        sa.Column("held_button", sa.String(length=255), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("answered_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_choices")),
    )
    op.create_index(
        op.f("ix_pending_choices_line_phone_channel"),
        "pending_choices",
        ["line", "phone", "channel"],
    )
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("thread_id", BIG_ID, nullable=True))
        batch.create_foreign_key(
            op.f("fk_messages_thread_id_threads"),
            "threads",
            ["thread_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(op.f("ix_messages_thread_id"), ["thread_id"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index(op.f("ix_messages_thread_id"))
        batch.drop_constraint(op.f("fk_messages_thread_id_threads"), type_="foreignkey")
        batch.drop_column("thread_id")
    op.drop_table("pending_choices")
    op.drop_table("threads")
    op.drop_table("line_consents")
