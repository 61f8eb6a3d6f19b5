"""`walletctl wallet create|show|burn|statement|balance`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import click

from ledger import statement as statements
from ledger.account import WalletBalance, get_wallet, open_wallet, wallet_balance
from ledger.grant import grant_view, open_grants
from ledger.models import CreditGrant
from ledger.money import Money
from ledger.provisioning import burn_rate
from walletctl.context import Context, pass_context


def describe(
    balance: WalletBalance, grants: Sequence[CreditGrant] = ()
) -> tuple[dict[str, Any], str]:
    """A wallet balance, split into paid and granted credit, as JSON data and as text."""
    data = {
        "id": str(balance.wallet_id),
        "owner_id": balance.owner_id,
        "currency": balance.currency,
        "balance_minor": balance.balance_minor,
        "available_minor": balance.available_minor,
        "held_minor": balance.held_minor,
        "overdraft_limit_minor": balance.overdraft_limit_minor,
        "paid_minor": balance.paid_minor,
        "granted_minor": balance.granted_minor,
        "grants": [grant_view(row) for row in grants],
    }

    lines = [f"wallet {balance.wallet_id} (owner {balance.owner_id})"]
    for label, amount_minor in (
        ("balance", balance.balance_minor),
        ("available", balance.available_minor),
        ("held", balance.held_minor),
        ("paid", balance.paid_minor),
        ("granted", balance.granted_minor),
    ):
        lines.append(f"  {label:<9} {amount(amount_minor, balance.currency)}")
    for row in grants:
        expiry = f", expires {row.expires_at.isoformat()}" if row.expires_at else ""
        lines.append(
            f"    grant {row.id}: {amount(row.remaining_minor, balance.currency)} left of"
            f" {amount(row.amount_minor, balance.currency)}, priority {row.priority}{expiry}"
            f" ({row.reason})"
        )
    return data, "\n".join(lines)


def amount(amount_minor: int, currency: str) -> str:
    """An amount as the API gives it, in minor units, with its unit and the major reading."""
    sign = "-" if amount_minor < 0 else ""
    major = Money(abs(amount_minor), currency).format_major()
    return f"{amount_minor} minor units ({sign}{major} {currency})"


@click.group()
def wallet() -> None:
    """Customer wallets."""


@wallet.command("create")
@click.option("--owner", "owner_id", required=True, help="The owner (tenant) id.")
@click.option("--currency", required=True, help="ISO 4217 code, for example ZAR.")
@click.option(
    "--overdraft-limit-minor",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="How far below zero spending may go, in minor units.",
)
@pass_context
def create(ctx: Context, owner_id: str, currency: str, overdraft_limit_minor: int) -> None:
    """Open a wallet for an owner in one currency."""
    with ctx.transaction() as session:
        account = open_wallet(
            session, owner_id, currency.upper(), overdraft_limit_minor=overdraft_limit_minor
        )
        session.flush()
        data, text = describe(wallet_balance(account))
    ctx.emit(data, text)


@wallet.command("show")
@click.argument("wallet_id", type=click.UUID)
@pass_context
def show(ctx: Context, wallet_id: uuid.UUID) -> None:
    """Show a wallet's balance, available, held, paid and granted amounts, and its grants."""
    with ctx.transaction() as session:
        found = get_wallet(session, wallet_id)
        data, text = describe(wallet_balance(found), open_grants(session, found.id))
    ctx.emit(data, text)


@wallet.command("burn")
@click.argument("wallet_id", type=click.UUID)
@pass_context
def burn(ctx: Context, wallet_id: uuid.UUID) -> None:
    """Show what the wallet's running resources cost a month and hours until it runs out."""
    with ctx.transaction() as session:
        get_wallet(session, wallet_id)
        found = burn_rate(session, wallet_id)
    data = found.as_dict()
    monthly = amount(found.burn_minor_per_month, found.currency)
    lasts = "nothing burns" if found.hours_to_zero is None else f"{found.hours_to_zero} h to zero"
    ctx.emit(data, f"wallet {wallet_id}: burns {monthly} a month; {lasts}")


_TIME = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"])


def _utc(value: datetime) -> datetime:
    """A time given without an offset is read as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@wallet.command("statement")
@click.argument("wallet_id", type=click.UUID)
@click.option("--from", "start", type=_TIME, required=True, help="Start (UTC if no offset).")
@click.option("--to", "end", type=_TIME, required=True, help="End, not included.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["text", "csv", "json"]),
    default="text",
    show_default=True,
    help="csv for a spreadsheet; json as the API gives it (also with --json).",
)
@pass_context
def statement(
    ctx: Context, wallet_id: uuid.UUID, start: datetime, end: datetime, form: str
) -> None:
    """A wallet's statement: opening balance, each entry and its running balance, closing."""
    try:
        with ctx.transaction() as session:
            found = statements.statement(session, wallet_id, _utc(start), _utc(end))
    except ValueError as exc:
        raise click.UsageError(f"{exc}.") from exc
    if form == "csv":
        click.echo("".join(statements.as_csv(found)), nl=False)
        return
    if form == "json":
        ctx.as_json = True
    lines = [
        f"statement of wallet {wallet_id} ({found.currency}) from {found.start.isoformat()}"
        f" to {found.end.isoformat()}",
        f"  opening balance {found.opening.balance_minor}",
        *(
            f"  {e.at.isoformat()}  {e.type:<14} {e.amount_minor:>14}  balance"
            f" {e.balance_minor:>14}  available {e.available_minor}  {e.memo or ''}"
            for e in found.entries
        ),
        f"  closing balance {found.closing.balance_minor} ({len(found.entries)} entries)",
    ]
    ctx.emit(statements.as_json(found), "\n".join(lines))


@wallet.command("balance")
@click.argument("wallet_id", type=click.UUID)
@click.option("--at", type=_TIME, help="The moment (UTC if no offset); default now.")
@pass_context
def balance(ctx: Context, wallet_id: uuid.UUID, at: datetime | None) -> None:
    """A wallet's balance, available and held amounts at a moment of its history."""
    moment = _utc(at) if at else datetime.now(UTC)
    with ctx.transaction() as session:
        found = statements.balance_at(session, wallet_id, moment)
    ctx.emit(
        {"wallet_id": str(wallet_id), **statements.balance_view(found)},
        f"wallet {wallet_id} at {moment.isoformat()}: balance {found.balance_minor},"
        f" available {found.available_minor}, held {found.held_minor}"
        f" (paid {found.paid_minor}, granted {found.granted_minor})",
    )
