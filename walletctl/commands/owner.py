"""`walletctl owner set|show`: resellers and the customer owners under them."""

from __future__ import annotations

import click

from ledger import owner as owners
from walletctl.context import CommandFailed, Context, pass_context


@click.group()
def owner() -> None:
    """Owners: put customers under resellers."""


@owner.command("set")
@click.argument("owner_id")
@click.option("--reseller", "reseller_id", required=True, help="The reseller above this owner.")
@pass_context
def set_(ctx: Context, owner_id: str, reseller_id: str) -> None:
    """Make OWNER_ID a customer of a reseller: the reseller's tokens then see and fund it."""
    try:
        with ctx.transaction() as session:
            owners.set_reseller(session, owner_id, reseller_id)
            above = owners.ancestors(session, owner_id)
    except ValueError as exc:
        raise CommandFailed(f"{exc}.") from exc
    ctx.emit(
        {"owner_id": owner_id, "reseller_id": reseller_id, "resellers_above": above},
        f"owner {owner_id} is a customer of {reseller_id} (resellers above: {', '.join(above)})",
    )


@owner.command("show")
@click.argument("owner_id")
@pass_context
def show(ctx: Context, owner_id: str) -> None:
    """Show an owner's resellers above it and its direct customers."""
    with ctx.transaction() as session:
        above = owners.ancestors(session, owner_id)
        below = owners.customers(session, owner_id)
    ctx.emit(
        {"owner_id": owner_id, "resellers_above": above, "customers": below},
        f"owner {owner_id}\n  resellers above: {', '.join(above) or 'none'}"
        f"\n  customers: {', '.join(below) or 'none'}",
    )
