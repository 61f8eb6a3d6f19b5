"""`walletctl adjust`: an audited manual credit or debit."""

from __future__ import annotations

import getpass
import uuid

import click

from ledger.account import get_wallet, wallet_balance
from ledger.adjustment import Direction
from ledger.adjustment import adjust as adjust_wallet
from ledger.errors import InsufficientFunds
from ledger.money import AMOUNT_MINOR_MAX
from walletctl.context import CommandFailed, Context, pass_context

_AMOUNT = click.IntRange(min=1, max=AMOUNT_MINOR_MAX)


@click.command()
@click.option("--wallet", "wallet_id", type=click.UUID, required=True, help="Wallet id.")
@click.option("--credit", type=_AMOUNT, help="Amount to credit, in minor units.")
@click.option("--debit", type=_AMOUNT, help="Amount to debit, in minor units.")
@click.option("--reason", required=True, help="Why; kept in the audit log.")
@click.option("--idempotency-key", help="Makes a retried command apply once.")
@click.option("--actor", help="Who is adjusting (default: walletctl:<login name>).")
@pass_context
def adjust(
    ctx: Context,
    wallet_id: uuid.UUID,
    credit: int | None,
    debit: int | None,
    reason: str,
    idempotency_key: str | None,
    actor: str | None,
) -> None:
    """Credit or debit a wallet by hand, with a reason, recorded in the audit log."""
    if (credit is None) == (debit is None):
        raise click.UsageError("give exactly one of --credit N or --debit N (minor units).")
    if not reason.strip():
        raise click.UsageError("--reason must say why the wallet is adjusted.")
    direction, amount = (Direction.CREDIT, credit) if credit else (Direction.DEBIT, debit)
    assert amount is not None
    try:
        with ctx.transaction() as session:
            applied = adjust_wallet(
                session,
                wallet_id=wallet_id,
                direction=direction,
                amount_minor=amount,
                reason=reason,
                actor=actor or f"walletctl:{getpass.getuser()}",
                idempotency_key=idempotency_key,
            )
            balance = wallet_balance(get_wallet(session, wallet_id))
    except CommandFailed as exc:
        if isinstance(exc.__cause__, InsufficientFunds):
            with ctx.transaction() as session:
                shown = wallet_balance(get_wallet(session, wallet_id))
            raise CommandFailed(
                f"wallet {wallet_id} cannot cover a debit of {amount} minor units: "
                f"{shown.available_minor} minor units of {shown.currency} are available "
                f"(balance {shown.balance_minor}, held {shown.held_minor}, "
                f"overdraft limit {shown.overdraft_limit_minor})."
            ) from exc
        raise
    ctx.emit(
        {
            "transfer_id": applied.transfer.id,
            "replayed": applied.replayed,
            "wallet_id": str(wallet_id),
            "direction": str(direction),
            "amount_minor": amount,
            "balance_minor": balance.balance_minor,
            "available_minor": balance.available_minor,
        },
        f"{'already applied' if applied.replayed else 'applied'}: {direction} of {amount} "
        f"minor units to wallet {wallet_id} (transfer {applied.transfer.id}); "
        f"balance now {balance.balance_minor} minor units, "
        f"available {balance.available_minor} minor units",
    )
