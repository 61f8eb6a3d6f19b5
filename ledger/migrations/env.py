"""Alembic environment: migrations run on the connection that ledger.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from ledger.models import Base

# Several release processes may start at once; only one migrates at a time.
MIGRATION_LOCK_KEY = 0x77616C6C6574


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        transaction_per_migration=True,
    )
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})


if context.is_offline_mode():
    raise SystemExit("walletpipe migrations run online only: use `walletctl db upgrade`.")
run_migrations_online()
