"""Order verification: the city and items the customer's page shows; orders found by phone.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(
            sa.Column("city", sa.String(length=128), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column(
                "items",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )
    with op.batch_alter_table("orders") as batch:
        batch.alter_column("city", server_default=None)
        batch.alter_column("items", server_default=None)
    op.create_index("ix_orders_shop_id_phone", "orders", ["shop_id", "phone"])


def downgrade() -> None:
    op.drop_index("ix_orders_shop_id_phone", table_name="orders")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("items")
        batch.drop_column("city")
