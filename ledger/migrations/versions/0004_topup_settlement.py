"""Top-up settlement: the gateway payment id, what was credited and what was refunded.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 20:38:00.620678
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("topups", sa.Column("payment_id", sa.Text(), nullable=True))
    op.add_column(
        "topups", sa.Column("credited_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "topups", sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.create_unique_constraint(
        op.f("uq_topups_gateway_payment_id"), "topups", ["gateway", "payment_id"]
    )
    op.create_check_constraint(
        op.f("ck_topups_credited_when_succeeded"),
        "topups",
        "(status = 'succeeded') = (credited_minor > 0)",
    )
    op.create_check_constraint(
        op.f("ck_topups_refunds_within_credited"),
        "topups",
        "refunded_minor BETWEEN 0 AND credited_minor",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_topups_refunds_within_credited"), "topups", type_="check")
    op.drop_constraint(op.f("ck_topups_credited_when_succeeded"), "topups", type_="check")
    op.drop_constraint(op.f("uq_topups_gateway_payment_id"), "topups", type_="unique")
    op.drop_column("topups", "refunded_minor")
    op.drop_column("topups", "credited_minor")
    op.drop_column("topups", "payment_id")
