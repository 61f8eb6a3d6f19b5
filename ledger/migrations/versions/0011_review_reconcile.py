"""Operators close money questions: review resolutions, reconciliation runs, and the gateway's
refund id on inbox events (so a refund reported twice, by webhook and by report, moves once).

Revision ID: 0011
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES_BEFORE = "status IN ('received', 'ignored', 'applied', 'parked', 'needs_review')"
_STATUSES = "status IN ('received', 'ignored', 'applied', 'parked', 'needs_review', 'resolved')"


def upgrade() -> None:
    op.add_column("inbox_events", sa.Column("refund_id", sa.Text(), nullable=True))
    op.drop_constraint(op.f("ck_inbox_events_status_known"), "inbox_events", type_="check")
    op.create_check_constraint(op.f("ck_inbox_events_status_known"), "inbox_events", _STATUSES)
    op.create_table(
        "review_resolutions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("inbox_event_id", sa.BigInteger(), nullable=True),
        sa.Column("inbox_conflict_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("topup_id", sa.Uuid(), nullable=True),
        sa.Column("wallet_id", sa.Uuid(), nullable=True),
        sa.Column("transfer_id", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column(
            "resolved_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "action IN ('apply_to_topup', 'credit_wallet', 'dismiss')",
            name=op.f("ck_review_resolutions_action_known"),
        ),
        sa.CheckConstraint(
            "(inbox_event_id IS NULL) <> (inbox_conflict_id IS NULL)",
            name=op.f("ck_review_resolutions_one_item"),
        ),
        sa.CheckConstraint(
            "length(note) BETWEEN 1 AND 2000", name=op.f("ck_review_resolutions_note_length")
        ),
        sa.ForeignKeyConstraint(
            ["inbox_event_id"],
            ["inbox_events.id"],
            name=op.f("fk_review_resolutions_inbox_event_id"),
        ),
        sa.ForeignKeyConstraint(
            ["inbox_conflict_id"],
            ["inbox_conflicts.id"],
            name=op.f("fk_review_resolutions_inbox_conflict_id"),
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"], ["transfers.id"], name=op.f("fk_review_resolutions_transfer_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_resolutions")),
        sa.UniqueConstraint("inbox_event_id", name=op.f("uq_review_resolutions_inbox_event_id")),
        sa.UniqueConstraint(
            "inbox_conflict_id", name=op.f("uq_review_resolutions_inbox_conflict_id")
        ),
    )
    op.create_table(
        "reconcile_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("source_name", sa.Text(), nullable=False),
        sa.Column("source_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("summary", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("result", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )


def downgrade() -> None:
    op.drop_table("reconcile_runs")
    op.drop_table("review_resolutions")
    op.execute("UPDATE inbox_events SET status = 'needs_review' WHERE status = 'resolved'")
    op.drop_constraint(op.f("ck_inbox_events_status_known"), "inbox_events", type_="check")
    op.create_check_constraint(
        op.f("ck_inbox_events_status_known"), "inbox_events", _STATUSES_BEFORE
    )
    op.drop_column("inbox_events", "refund_id")
