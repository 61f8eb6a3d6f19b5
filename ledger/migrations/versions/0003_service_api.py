"""Service API: top-ups, orders, provisioning requests, usage records, Idempotency-Key responses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:21:39.593384
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_idempotency_keys",
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status_code", sa.BigInteger(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "length(key) BETWEEN 1 AND 255", name=op.f("ck_api_idempotency_keys_key_length")
        ),
        sa.PrimaryKeyConstraint("subject", "key", name=op.f("pk_api_idempotency_keys")),
    )
    op.create_index(
        "ix_api_idempotency_keys_created_at", "api_idempotency_keys", ["created_at"], unique=False
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("paid_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "CASE status WHEN 'pending' THEN paid_minor = 0 WHEN 'rejected' THEN paid_minor = 0 WHEN 'paid' THEN paid_minor > 0 AND refunded_minor = 0 WHEN 'partially_refunded' THEN refunded_minor > 0 AND refunded_minor < paid_minor WHEN 'refunded' THEN paid_minor > 0 AND refunded_minor = paid_minor END",
            name=op.f("ck_orders_status_matches_amounts"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'partially_refunded', 'refunded', 'rejected')",
            name=op.f("ck_orders_status_known"),
        ),
        sa.CheckConstraint(
            "amount_minor > 0 AND amount_minor <= 1000000000000000", name=op.f("ck_orders_amount")
        ),
        sa.CheckConstraint(
            "length(reference) BETWEEN 1 AND 255", name=op.f("ck_orders_reference_length")
        ),
        sa.CheckConstraint(
            "paid_minor IN (0, amount_minor)", name=op.f("ck_orders_paid_in_full_or_not")
        ),
        sa.CheckConstraint(
            "refunded_minor BETWEEN 0 AND paid_minor", name=op.f("ck_orders_refunds_within_paid")
        ),
        sa.ForeignKeyConstraint(["wallet_id"], ["accounts.id"], name=op.f("fk_orders_wallet_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("wallet_id", "reference", name=op.f("uq_orders_wallet_id_reference")),
    )
    op.create_table(
        "provisioning_requests",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "plan ~ '^[a-z0-9_-]{1,64}$'", name=op.f("ck_provisioning_requests_plan_name")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'active', 'released')",
            name=op.f("ck_provisioning_requests_status_known"),
        ),
        sa.CheckConstraint(
            "length(resource_id) BETWEEN 1 AND 255",
            name=op.f("ck_provisioning_requests_resource_id_length"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_provisioning_requests_wallet_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provisioning_requests")),
    )
    op.create_index(
        op.f("ix_provisioning_requests_wallet_id"),
        "provisioning_requests",
        ["wallet_id"],
        unique=False,
    )
    op.create_table(
        "topups",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("gateway ~ '^[a-z]{2,32}$'", name=op.f("ck_topups_gateway_name")),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_topups_status_known")
        ),
        sa.CheckConstraint(
            "amount_minor > 0 AND amount_minor <= 1000000000000000", name=op.f("ck_topups_amount")
        ),
        sa.ForeignKeyConstraint(["wallet_id"], ["accounts.id"], name=op.f("fk_topups_wallet_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topups")),
    )
    op.create_index(op.f("ix_topups_wallet_id"), "topups", ["wallet_id"], unique=False)
    op.create_table(
        "usage_records",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("resource_id", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'billed')", name=op.f("ck_usage_records_status_known")
        ),
        sa.CheckConstraint(
            "amount_minor > 0 AND amount_minor <= 1000000000000000",
            name=op.f("ck_usage_records_amount"),
        ),
        sa.CheckConstraint("length(id) BETWEEN 1 AND 255", name=op.f("ck_usage_records_id_length")),
        sa.CheckConstraint(
            "length(resource_id) BETWEEN 1 AND 255",
            name=op.f("ck_usage_records_resource_id_length"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_usage_records_wallet_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index(
        op.f("ix_usage_records_wallet_id"), "usage_records", ["wallet_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_records_wallet_id"), table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index(op.f("ix_topups_wallet_id"), table_name="topups")
    op.drop_table("topups")
    op.drop_index(op.f("ix_provisioning_requests_wallet_id"), table_name="provisioning_requests")
    op.drop_table("provisioning_requests")
    op.drop_table("orders")
    op.drop_index("ix_api_idempotency_keys_created_at", table_name="api_idempotency_keys")
    op.drop_table("api_idempotency_keys")
