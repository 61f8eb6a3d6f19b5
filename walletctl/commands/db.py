"""`walletctl db upgrade`: migrate the ledger schema."""

from __future__ import annotations

import click
from sqlalchemy.exc import OperationalError

from ledger.migrate import current_revision, upgrade
from walletctl.context import Context, pass_context


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_context
def upgrade_command(ctx: Context) -> None:
    """Migrate the database to the newest schema (safe to run from several processes)."""
    try:
        before = current_revision(ctx.engine)
        upgrade(ctx.engine)
        after = current_revision(ctx.engine)
    except OperationalError as exc:
        raise ctx.unavailable(exc, then="run `walletctl db upgrade` again") from exc
    ctx.emit(
        {"database": ctx.database, "from": before, "to": after},
        f"{ctx.database}: schema at {after}" + ("" if before == after else f" (was {before})"),
    )
