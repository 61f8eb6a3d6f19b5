"""Workers claim waiting inbox events in batches, oldest id first; the indexes that served the
search for one hot wallet's companion captures go.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_inbox_events_claimable",
        "inbox_events",
        ["id"],
        postgresql_where=sa.text("status IN ('received', 'parked')"),
    )
    op.drop_index("ix_inbox_events_received_reference", table_name="inbox_events")
    op.drop_index("ix_topups_unsettled_wallet_id", table_name="topups")


def downgrade() -> None:
    op.create_index(
        "ix_topups_unsettled_wallet_id",
        "topups",
        ["wallet_id"],
        postgresql_where=sa.text("status <> 'succeeded'"),
    )
    op.create_index(
        "ix_inbox_events_received_reference",
        "inbox_events",
        ["reference"],
        postgresql_where=sa.text("status = 'received'"),
    )
    op.drop_index("ix_inbox_events_claimable", table_name="inbox_events")
