"""Outbox, owner contacts and dead letters; indexes for claiming a hot wallet's captures.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            r"event_type ~ '^[a-z_]+(\.[a-z_]+)+$'", name=op.f("ck_outbox_events_event_type_format")
        ),
        sa.CheckConstraint(
            "length(key) BETWEEN 1 AND 255", name=op.f("ck_outbox_events_key_length")
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_events_attempts_nonnegative")),
        sa.CheckConstraint(
            "delivered_at IS NULL OR failed_at IS NULL",
            name=op.f("ck_outbox_events_delivered_or_failed"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_outbox_events_wallet_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("key", name=op.f("uq_outbox_events_key")),
    )
    op.create_index(op.f("ix_outbox_events_wallet_id"), "outbox_events", ["wallet_id"])
    op.create_index(
        "ix_outbox_events_undelivered",
        "outbox_events",
        ["created_at"],
        postgresql_where=sa.text("delivered_at IS NULL AND failed_at IS NULL"),
    )
    op.create_table(
        "outbox_deliveries",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column(
            "delivered_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "length(channel) BETWEEN 1 AND 255", name=op.f("ck_outbox_deliveries_channel_length")
        ),
        sa.ForeignKeyConstraint(
            ["event_id"], ["outbox_events.id"], name=op.f("fk_outbox_deliveries_event_id")
        ),
        sa.PrimaryKeyConstraint("event_id", "channel", name=op.f("pk_outbox_deliveries")),
    )
    op.create_table(
        "owner_contacts",
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("whatsapp_to", sa.Text(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "length(owner_id) BETWEEN 1 AND 255", name=op.f("ck_owner_contacts_owner_id_length")
        ),
        sa.CheckConstraint(
            r"whatsapp_to ~ '^\+[1-9][0-9]{6,14}$'", name=op.f("ck_owner_contacts_whatsapp_e164")
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_contacts")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("queue_name", sa.Text(), nullable=False),
        sa.Column("actor_name", sa.Text(), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("kwargs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column(
            "failed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_message_id", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "length(message_id) BETWEEN 1 AND 255", name=op.f("ck_dead_letters_message_id_length")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("message_id", name=op.f("uq_dead_letters_message_id")),
    )
    op.create_index(
        "ix_dead_letters_waiting",
        "dead_letters",
        ["failed_at"],
        postgresql_where=sa.text("replayed_at IS NULL"),
    )
    op.create_index(
        "ix_inbox_events_received_reference",
        "inbox_events",
        ["reference"],
        postgresql_where=sa.text("status = 'received'"),
    )
    op.create_index(
        "ix_topups_unsettled_wallet_id",
        "topups",
        ["wallet_id"],
        postgresql_where=sa.text("status <> 'succeeded'"),
    )


def downgrade() -> None:
    op.drop_index("ix_topups_unsettled_wallet_id", table_name="topups")
    op.drop_index("ix_inbox_events_received_reference", table_name="inbox_events")
    op.drop_index("ix_dead_letters_waiting", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_table("owner_contacts")
    op.drop_table("outbox_deliveries")
    op.drop_index("ix_outbox_events_undelivered", table_name="outbox_events")
    op.drop_index(op.f("ix_outbox_events_wallet_id"), table_name="outbox_events")
    op.drop_table("outbox_events")
