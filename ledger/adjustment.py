"""Manual corrections: an audited credit or debit of a wallet against the adjustments account."""

from __future__ import annotations

import enum
import uuid

from sqlalchemy.orm import Session

from ledger import audit
from ledger.account import get_wallet, system_account_id
from ledger.models import Category, SystemAccount
from ledger.transfer import Applied, TransferRequest, transfer


class Direction(enum.StrEnum):
    CREDIT = "credit"
    DEBIT = "debit"


def adjust(
    session: Session,
    *,
    wallet_id: uuid.UUID,
    direction: Direction,
    amount_minor: int,
    reason: str,
    actor: str,
    idempotency_key: str | None = None,
) -> Applied:
    """Credit or debit a wallet by hand, with a reason, and record who did it.

    A debit obeys the wallet's available balance like any spend (raises InsufficientFunds).
    Without `idempotency_key` every call is a new adjustment; with one, a repeat returns the
    first result and writes no second audit entry.
    """
    if not reason.strip():
        raise ValueError("an adjustment needs a reason")
    wallet = get_wallet(session, wallet_id)
    adjustments = system_account_id(session, SystemAccount.ADJUSTMENTS, wallet.currency)
    debit, credit = (
        (adjustments, wallet.id) if direction is Direction.CREDIT else (wallet.id, adjustments)
    )
    applied = transfer(
        session,
        TransferRequest(
            idempotency_key=f"adjust:{idempotency_key or uuid.uuid4()}",
            debit_account_id=debit,
            credit_account_id=credit,
            amount_minor=amount_minor,
            currency=wallet.currency,
            category=Category.ADJUSTMENT,
            memo=reason,
        ),
    )
    if not applied.replayed:
        audit.record(
            session,
            actor=actor,
            action=f"wallet.adjust.{direction}",
            subject=str(wallet.id),
            details={
                "transfer_id": applied.transfer.id,
                "amount_minor": amount_minor,
                "currency": wallet.currency,
                "reason": reason,
            },
        )
    return applied
