"""An index of queued jobs by shop, kind and due time: the intake places a shop's new job
after that shop's latest due job of its kind (see storage.jobs.places) with one short read.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_queued_shop_kind_due",
        "jobs",
        ["shop_id", "kind", "due_at"],
        postgresql_where=sa.text("status = 'queued'"),
        sqlite_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_queued_shop_kind_due", table_name="jobs")
