"""Inbox: verified gateway events, durable and unique per gateway event id; conflicts kept apart.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:37:31.358877
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.Text(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("reference", sa.Text(), nullable=True),
        sa.Column("payment_method", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payload_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.Text(), server_default="received", nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "currency IS NULL OR currency ~ '^[A-Z]{3}$'", name=op.f("ck_inbox_events_currency_iso")
        ),
        sa.CheckConstraint(
            "status IN ('received', 'ignored', 'applied', 'parked', 'needs_review')",
            name=op.f("ck_inbox_events_status_known"),
        ),
        sa.CheckConstraint(
            "amount_minor IS NULL OR amount_minor > 0", name=op.f("ck_inbox_events_amount_positive")
        ),
        sa.CheckConstraint(
            "length(event_id) BETWEEN 1 AND 255", name=op.f("ck_inbox_events_event_id_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
        sa.UniqueConstraint("gateway", "event_id", name=op.f("uq_inbox_events_gateway_event_id")),
    )
    op.create_index(
        "ix_inbox_events_waiting",
        "inbox_events",
        ["received_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('received', 'parked')"),
    )
    op.create_table(
        "inbox_conflicts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("inbox_event_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("payload_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["inbox_event_id"], ["inbox_events.id"], name=op.f("fk_inbox_conflicts_inbox_event_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_conflicts")),
    )
    op.create_index(
        op.f("ix_inbox_conflicts_inbox_event_id"),
        "inbox_conflicts",
        ["inbox_event_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_inbox_conflicts_inbox_event_id"), table_name="inbox_conflicts")
    op.drop_table("inbox_conflicts")
    op.drop_index(
        "ix_inbox_events_waiting",
        table_name="inbox_events",
        postgresql_where=sa.text("status IN ('received', 'parked')"),
    )
    op.drop_table("inbox_events")
