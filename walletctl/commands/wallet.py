"""`walletctl wallet create|show`."""

from __future__ import annotations

import uuid
from typing import Any

import click

from ledger.account import WalletBalance, get_wallet, open_wallet, wallet_balance
from ledger.money import Money
from ledger.provisioning import burn_rate
from walletctl.context import Context, pass_context


def describe(balance: WalletBalance) -> tuple[dict[str, Any], str]:
    """A wallet balance as JSON data and as text."""
    data = {
        "id": str(balance.wallet_id),
        "owner_id": balance.owner_id,
        "currency": balance.currency,
        "balance_minor": balance.balance_minor,
        "available_minor": balance.available_minor,
        "held_minor": balance.held_minor,
        "overdraft_limit_minor": balance.overdraft_limit_minor,
    }

    lines = [f"wallet {balance.wallet_id} (owner {balance.owner_id})"]
    for label, amount_minor in (
        ("balance", balance.balance_minor),
        ("available", balance.available_minor),
        ("held", balance.held_minor),
    ):
        lines.append(f"  {label:<9} {amount(amount_minor, balance.currency)}")
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
    """Show a wallet's balance, available and held amounts."""
    with ctx.transaction() as session:
        data, text = describe(wallet_balance(get_wallet(session, wallet_id)))
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
