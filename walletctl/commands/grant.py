"""`walletctl grant`: granted credit (promotion, goodwill), audited, with optional expiry."""

from __future__ import annotations

import getpass
import uuid
from datetime import UTC, datetime

import click

from ledger import grant as grants
from ledger.account import get_wallet, wallet_balance
from ledger.errors import InsufficientFunds
from ledger.money import AMOUNT_MINOR_MAX
from walletctl.context import CommandFailed, Context, pass_context


@click.command()
@click.option("--wallet", "wallet_id", type=click.UUID, required=True, help="Wallet id.")
@click.option(
    "--amount-minor",
    type=click.IntRange(min=1, max=AMOUNT_MINOR_MAX),
    required=True,
    help="Credit to grant, in minor units.",
)
@click.option("--reason", required=True, help="Why; kept with the grant and in the audit log.")
@click.option(
    "--expires-at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"]),
    help="When the unused part expires, with its UTC offset: 2026-12-31T23:59:59+00:00.",
)
@click.option(
    "--priority",
    type=click.IntRange(grants.PRIORITY_MIN, grants.PRIORITY_MAX),
    default=grants.PRIORITY_DEFAULT,
    show_default=True,
    help="Spends draw on the lowest number first.",
)
@click.option(
    "--from-wallet",
    "from_wallet_id",
    type=click.UUID,
    help="A reseller's wallet to fund the grant (default: the promotions account).",
)
@click.option("--idempotency-key", help="Makes a retried command grant once.")
@click.option("--actor", help="Who grants (default: walletctl:<login name>).")
@pass_context
def grant(
    ctx: Context,
    wallet_id: uuid.UUID,
    amount_minor: int,
    reason: str,
    expires_at: datetime | None,
    priority: int,
    from_wallet_id: uuid.UUID | None,
    idempotency_key: str | None,
    actor: str | None,
) -> None:
    """Grant credit to a wallet; spends draw on granted credit before paid credit."""
    if not reason.strip():
        raise click.UsageError("--reason must say why the credit is granted.")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise click.UsageError("--expires-at must be in the future.")
    try:
        with ctx.transaction() as session:
            granted = grants.grant_credit(
                session,
                wallet_id=wallet_id,
                amount_minor=amount_minor,
                reason=reason,
                actor=actor or f"walletctl:{getpass.getuser()}",
                expires_at=expires_at,
                priority=priority,
                from_wallet_id=from_wallet_id,
                idempotency_key=idempotency_key,
            )
            data = grants.grant_view(granted.grant)
            balance = wallet_balance(get_wallet(session, wallet_id))
    except CommandFailed as exc:
        if isinstance(exc.__cause__, InsufficientFunds):
            raise CommandFailed(
                f"wallet {from_wallet_id} cannot fund a grant of {amount_minor} minor units:"
                " check `walletctl wallet show` for its available balance."
            ) from exc
        raise
    expiry = f", expires {data['expires_at']}" if data["expires_at"] else ""
    ctx.emit(
        {
            **data,
            "wallet_id": str(wallet_id),
            "replayed": granted.transfer.replayed,
            "balance_minor": balance.balance_minor,
            "paid_minor": balance.paid_minor,
            "granted_minor": balance.granted_minor,
        },
        f"{'already granted' if granted.transfer.replayed else 'granted'}: {amount_minor} minor"
        f" units to wallet {wallet_id} (grant {data['id']}, priority {priority}{expiry});"
        f" balance now {balance.balance_minor} = paid {balance.paid_minor}"
        f" + granted {balance.granted_minor}",
    )
