"""Messages by the phone they went to: a customer's reply finds the shops that wrote to it.

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_messages_to_phone_channel_direction"),
        "messages",
        ["to_phone", "channel", "direction"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_messages_to_phone_channel_direction"), table_name="messages")
