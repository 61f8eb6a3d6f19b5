"""`walletctl contact set|show|remove`: where an owner hears of its wallets' events."""

from __future__ import annotations

import click

from ledger import contact as contacts
from walletctl.context import CommandFailed, Context, pass_context


@click.group()
def contact() -> None:
    """Owners' contacts for notifications (WhatsApp confirmations)."""


@contact.command("set")
@click.argument("owner_id")
@click.option("--whatsapp", "number", required=True, help="E.164 number, e.g. +27821234567.")
@pass_context
def set_(ctx: Context, owner_id: str, number: str) -> None:
    """Send the owner's confirmations to this WhatsApp number."""
    try:
        with ctx.transaction() as session:
            row = contacts.set_whatsapp(session, owner_id, number)
            data = {"owner_id": row.owner_id, "whatsapp": row.whatsapp_to}
    except ValueError as exc:
        raise CommandFailed(f"{exc}; give the number with its country code.") from exc
    ctx.emit(data, f"owner {owner_id}: WhatsApp confirmations go to {data['whatsapp']}")


@contact.command("show")
@click.argument("owner_id")
@pass_context
def show(ctx: Context, owner_id: str) -> None:
    """Show where the owner's confirmations go."""
    with ctx.transaction() as session:
        row = contacts.get(session, owner_id)
        data = {"owner_id": owner_id, "whatsapp": row.whatsapp_to if row else None}
    ctx.emit(data, f"owner {owner_id}: WhatsApp {data['whatsapp'] or 'not set'}")


@contact.command("remove")
@click.argument("owner_id")
@pass_context
def remove(ctx: Context, owner_id: str) -> None:
    """Stop sending the owner confirmations."""
    with ctx.transaction() as session:
        removed = contacts.remove(session, owner_id)
    if not removed:
        raise CommandFailed(f"owner {owner_id} has no contact; `walletctl contact set` adds one.")
    ctx.emit({"owner_id": owner_id, "removed": True}, f"owner {owner_id}: contact removed")
