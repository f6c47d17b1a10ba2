"""A custom app's API secret key per shop (it signs that shop's webhooks); data request
exports; dead jobs found by age (their retention).

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DEAD = sa.text("status = 'dead'")


def upgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.add_column(sa.Column("app_secret", sa.Text(), server_default="", nullable=False))
    op.create_table(
        "data_requests",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("shop_id", BIG_ID, nullable=False),
        sa.Column("shopify_request_id", sa.String(length=64), nullable=False),
        sa.Column("shopify_customer_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("document", JSON, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_data_requests_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_requests")),
    )
    op.create_index(op.f("ix_data_requests_shop_id"), "data_requests", ["shop_id"])
    op.create_index(
        op.f("ix_data_requests_shop_id_received_at"), "data_requests", ["shop_id", "received_at"]
    )
    op.create_index(
        "ix_jobs_dead_finished",
        "jobs",
        ["finished_at"],
        postgresql_where=DEAD,
        sqlite_where=DEAD,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_dead_finished", table_name="jobs")
    op.drop_table("data_requests")
    with op.batch_alter_table("shops") as batch:
        batch.drop_column("app_secret")
