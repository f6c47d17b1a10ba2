"""Shop onboarding: bot link code, order sync cursor, missed webhooks; receipts keyed by event.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.add_column(sa.Column("bot_link_code_hash", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("bot_link_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("orders_synced_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("missed_webhooks", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_unique_constraint(
            batch.f("uq_shops_bot_link_code_hash"), ["bot_link_code_hash"]
        )
    with op.batch_alter_table("shops") as batch:
        batch.alter_column("missed_webhooks", server_default=None)
    op.drop_index("ix_webhook_receipts_provider_event_id", table_name="webhook_receipts")
    with op.batch_alter_table("webhook_receipts") as batch:
        batch.alter_column("event_id", existing_type=sa.String(length=255), nullable=True)
        batch.create_unique_constraint(
            batch.f("uq_webhook_receipts_provider_topic_event_id"),
            ["provider", "topic", "event_id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_receipts") as batch:
        batch.drop_constraint(
            batch.f("uq_webhook_receipts_provider_topic_event_id"), type_="unique"
        )
    op.execute("UPDATE webhook_receipts SET event_id = '' WHERE event_id IS NULL")
    with op.batch_alter_table("webhook_receipts") as batch:
        batch.alter_column("event_id", existing_type=sa.String(length=255), nullable=False)
    op.create_index(
        "ix_webhook_receipts_provider_event_id",
        "webhook_receipts",
        ["provider", "event_id"],
        unique=False,
    )
    with op.batch_alter_table("shops") as batch:
        batch.drop_constraint(batch.f("uq_shops_bot_link_code_hash"), type_="unique")
        batch.drop_column("missed_webhooks")
        batch.drop_column("orders_synced_at")
        batch.drop_column("bot_link_expires_at")
        batch.drop_column("bot_link_code_hash")
