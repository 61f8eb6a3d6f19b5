"""Inbox relay: when an event was last re-sent to the workers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 20:43:08.728848
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "inbox_events", sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("inbox_events", "relayed_at")
