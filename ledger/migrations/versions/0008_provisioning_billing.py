"""Provisioning with holds, hourly billing, plans, resellers, low-balance alerts; indexes for
the relay and the backlog gauges.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The four sizes of the original system, in ZAR: a month (730 hours) costs R150 to R1200.
SEED_PLANS = (
    ("small", "Small", 1, 2, 15_000),
    ("medium", "Medium", 2, 4, 30_000),
    ("large", "Large", 4, 8, 60_000),
    ("enterprise", "Enterprise", 8, 16, 120_000),
)
_NEW_COLUMNS = (
    ("monthly_price_minor", sa.BigInteger()),
    ("reserve_minor", sa.BigInteger()),
    ("shortfall_minor", sa.BigInteger()),
    ("hold_id", sa.BigInteger()),
    ("activated_at", sa.DateTime(timezone=True)),
    ("released_at", sa.DateTime(timezone=True)),
    ("next_bill_at", sa.DateTime(timezone=True)),
    ("grace_started_at", sa.DateTime(timezone=True)),
    ("suspend_requested_at", sa.DateTime(timezone=True)),
    ("relayed_at", sa.DateTime(timezone=True)),
)
_USAGE_COLUMNS = ("billed_at", "relayed_at")
_CHECKS = (
    (
        "approved_with_hold",
        "status NOT IN ('approved', 'active') OR (hold_id IS NOT NULL"
        " AND monthly_price_minor > 0 AND reserve_minor > 0)",
    ),
    (
        "active_since",
        "status <> 'active' OR (activated_at IS NOT NULL AND next_bill_at IS NOT NULL)",
    ),
    ("billed_hours_nonnegative", "billed_hours >= 0"),
    ("shortfall_positive", "shortfall_minor IS NULL OR shortfall_minor > 0"),
)


def upgrade() -> None:
    table = "provisioning_requests"
    for name, type_ in _NEW_COLUMNS:
        op.add_column(table, sa.Column(name, type_, nullable=True))
    op.add_column(
        table, sa.Column("billed_hours", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_foreign_key(
        op.f("fk_provisioning_requests_hold_id"), table, "transfers", ["hold_id"], ["id"]
    )
    for name, condition in _CHECKS:
        op.create_check_constraint(op.f(f"ck_provisioning_requests_{name}"), table, condition)
    op.create_index(
        "uq_provisioning_requests_live_resource_id",
        table,
        ["wallet_id", "resource_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('pending', 'approved', 'active')"),
    )
    op.create_index(
        "ix_provisioning_requests_next_bill_at",
        table,
        ["next_bill_at"],
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_provisioning_requests_in_grace",
        table,
        ["wallet_id"],
        postgresql_where=sa.text("grace_started_at IS NOT NULL"),
    )
    for name in _USAGE_COLUMNS:
        op.add_column("usage_records", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_usage_records_pending",
        "usage_records",
        ["created_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_inbox_events_needs_review",
        "inbox_events",
        ["received_at"],
        postgresql_where=sa.text("status = 'needs_review'"),
    )
    op.create_index(
        "ix_outbox_events_failed",
        "outbox_events",
        ["failed_at"],
        postgresql_where=sa.text("failed_at IS NOT NULL"),
    )
    plans = op.create_table(
        "plans",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("vcpus", sa.BigInteger(), nullable=False),
        sa.Column("memory_gb", sa.BigInteger(), nullable=False),
        sa.Column("monthly_price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("id ~ '^[a-z0-9_-]{1,64}$'", name=op.f("ck_plans_id_format")),
        sa.CheckConstraint("length(name) BETWEEN 1 AND 255", name=op.f("ck_plans_name_length")),
        sa.CheckConstraint("vcpus > 0 AND memory_gb > 0", name=op.f("ck_plans_size_positive")),
        sa.CheckConstraint(
            "monthly_price_minor > 0 AND monthly_price_minor <= 1000000000000",
            name=op.f("ck_plans_price_positive"),
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_plans_currency_iso")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    op.bulk_insert(
        plans,
        [
            {
                "id": plan_id,
                "name": name,
                "vcpus": vcpus,
                "memory_gb": memory_gb,
                "monthly_price_minor": price,
                "currency": "ZAR",
            }
            for plan_id, name, vcpus, memory_gb, price in SEED_PLANS
        ],
    )
    op.create_table(
        "owner_parents",
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("parent_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint("owner_id <> parent_id", name=op.f("ck_owner_parents_not_own_parent")),
        sa.CheckConstraint(
            "length(owner_id) BETWEEN 1 AND 255 AND length(parent_id) BETWEEN 1 AND 255",
            name=op.f("ck_owner_parents_ids_length"),
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_parents")),
    )
    op.create_index(op.f("ix_owner_parents_parent_id"), "owner_parents", ["parent_id"])
    op.create_table(
        "low_balance_alerts",
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("threshold_h", sa.BigInteger(), nullable=False),
        sa.Column(
            "crossed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "threshold_h > 0", name=op.f("ck_low_balance_alerts_threshold_positive")
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_low_balance_alerts_wallet_id")
        ),
        sa.PrimaryKeyConstraint("wallet_id", "threshold_h", name=op.f("pk_low_balance_alerts")),
    )


def downgrade() -> None:
    table = "provisioning_requests"
    op.drop_table("low_balance_alerts")
    op.drop_index(op.f("ix_owner_parents_parent_id"), table_name="owner_parents")
    op.drop_table("owner_parents")
    op.drop_table("plans")
    op.drop_index("ix_outbox_events_failed", table_name="outbox_events")
    op.drop_index("ix_inbox_events_needs_review", table_name="inbox_events")
    op.drop_index("ix_usage_records_pending", table_name="usage_records")
    for name in reversed(_USAGE_COLUMNS):
        op.drop_column("usage_records", name)
    op.drop_index("ix_provisioning_requests_in_grace", table_name=table)
    op.drop_index("ix_provisioning_requests_next_bill_at", table_name=table)
    op.drop_index("uq_provisioning_requests_live_resource_id", table_name=table)
    for name, _ in reversed(_CHECKS):
        op.drop_constraint(op.f(f"ck_provisioning_requests_{name}"), table, type_="check")
    op.drop_constraint(op.f("fk_provisioning_requests_hold_id"), table, type_="foreignkey")
    op.drop_column(table, "billed_hours")
    for name, _ in reversed(_NEW_COLUMNS):
        op.drop_column(table, name)
