"""Granted credit: promotions, goodwill, a reseller's gift, each with a priority and an
optional expiry; and the expiry of what is left of a grant, exactly once.

The split of a wallet's balance into paid and granted credit is kept by the transfer trigger
(see migration 0012): this module only creates the grant row and the transfer that funds it,
and the transfers that expire grants. A grant from an operator is funded by the promotions
account; a reseller's grant is spent from the reseller's own wallet, so no reseller can make
money from nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger import audit, outbox
from ledger.account import get_wallet, system_account_id
from ledger.errors import CurrencyMismatch, IdempotencyConflict
from ledger.models import Category, CreditGrant, SystemAccount
from ledger.money import validate_amount_minor
from ledger.transfer import Applied, TransferRequest, bounded_key, transfer

logger = logging.getLogger(__name__)

PRIORITY_DEFAULT = 50
PRIORITY_MIN, PRIORITY_MAX = 0, 100
REASON_CHARS_MAX = 500
EXPIRE_BATCH_MAX = 500
# Grants shown with a wallet, newest first; the rest stay in the statement.
SHOWN_MAX = 100

_GRANT_NAMESPACE = uuid.UUID("0b9a7a0e-3c55-4f0e-9a2f-0a7f3f0e1c12")

# Due grants, oldest expiry first: the database's clock decides what is due, as the trigger
# that refuses an early expiry does.
_DUE = text(
    """
    SELECT id, wallet_id, currency FROM credit_grants
    WHERE remaining_minor > 0 AND expires_at <= statement_timestamp()
    ORDER BY expires_at, id
    LIMIT :limit
    """
)
# Wallet first, then grant: the order the transfer trigger locks them in, so an expiry and a
# spend of the same wallet never deadlock. The remainder is read under both locks.
_LOCK_WALLET = text("SELECT id FROM accounts WHERE id = :wallet_id FOR NO KEY UPDATE")
_LOCK_REMAINING = text(
    "SELECT remaining_minor FROM credit_grants WHERE id = :grant_id AND expires_at IS NOT NULL"
    " FOR UPDATE"
)


@dataclass(frozen=True, slots=True)
class Granted:
    """A grant and the transfer that funded it; `replayed` when the key was used before."""

    grant: CreditGrant
    transfer: Applied


def grant_credit(
    session: Session,
    *,
    wallet_id: uuid.UUID,
    amount_minor: int,
    reason: str,
    actor: str,
    expires_at: datetime | None = None,
    priority: int = PRIORITY_DEFAULT,
    from_wallet_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> Granted:
    """Grant credit to a wallet, funded by promotions or by `from_wallet_id` (a reseller).

    Raises ValueError for a bad reason, priority or expiry; InsufficientFunds when the
    reseller's wallet cannot cover it; CurrencyMismatch. With `idempotency_key`, a repeat
    returns the first grant; the same key for another grant raises IdempotencyConflict.
    """
    reason = reason.strip()
    if not 1 <= len(reason) <= REASON_CHARS_MAX:
        raise ValueError(f"a grant needs a reason of 1 to {REASON_CHARS_MAX} characters")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be from {PRIORITY_MIN} (first) to {PRIORITY_MAX}")
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    validate_amount_minor(amount_minor)
    wallet = get_wallet(session, wallet_id)
    if from_wallet_id is not None:
        source = get_wallet(session, from_wallet_id)
        if source.currency != wallet.currency:
            raise CurrencyMismatch(
                f"wallet {source.id} holds {source.currency}, wallet {wallet.id} {wallet.currency}"
            )
        funded_by = source.id
    else:
        funded_by = system_account_id(session, SystemAccount.PROMOTIONS, wallet.currency)
    key = f"grant:{idempotency_key or uuid.uuid4()}"
    grant_id = uuid.uuid5(_GRANT_NAMESPACE, key)
    terms = {
        "wallet_id": wallet.id,
        "amount_minor": amount_minor,
        "currency": wallet.currency,
        "priority": priority,
        "expires_at": expires_at,
        "reason": reason,
        "granted_by": actor[:255],
        "funded_by": funded_by,
    }
    session.flush()
    session.execute(
        insert(CreditGrant)
        .values(id=grant_id, **terms)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    applied = transfer(
        session,
        TransferRequest(
            idempotency_key=bounded_key(key),
            debit_account_id=funded_by,
            credit_account_id=wallet.id,
            amount_minor=amount_minor,
            currency=wallet.currency,
            category=Category.GRANT,
            memo=reason,
            grant_id=grant_id,
        ),
    )
    grant = session.get(CreditGrant, grant_id, populate_existing=True)
    assert grant is not None
    if applied.replayed and any(getattr(grant, name) != value for name, value in terms.items()):
        raise IdempotencyConflict(f"idempotency key {key!r} was used for another grant")
    if not applied.replayed:
        audit.record(
            session,
            actor=actor,
            action="wallet.grant",
            subject=str(wallet.id),
            details={
                "grant_id": str(grant_id),
                "transfer_id": applied.transfer.id,
                "amount_minor": amount_minor,
                "currency": wallet.currency,
                "reason": reason,
                "priority": priority,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "funded_by": str(funded_by),
            },
        )
        outbox.emit_for_wallet(
            session,
            "wallet.granted",
            key=f"wallet.granted:{grant_id}",
            wallet_id=wallet.id,
            data=grant_view(grant),
        )
    return Granted(grant, applied)


def expire_due(session: Session, *, limit: int = EXPIRE_BATCH_MAX) -> list[uuid.UUID]:
    """Expire the unused part of up to `limit` grants whose expiry has passed; their ids.

    Each grant expires once (a unique index on its expiry transfer), with exactly what was
    left of it under the wallet's lock, so a spend racing the expiry either drew on the
    grant first or finds it gone. Grants due long ago (the scheduler was down) are expired
    the same way, oldest first.
    """
    expired: list[uuid.UUID] = []
    for grant_id, wallet_id, currency in session.execute(_DUE, {"limit": limit}).all():
        expired_to = system_account_id(session, SystemAccount.EXPIRED_CREDITS, currency)
        with session.begin_nested():
            session.execute(_LOCK_WALLET, {"wallet_id": wallet_id})
            remaining = session.execute(_LOCK_REMAINING, {"grant_id": grant_id}).scalar()
            if not remaining:
                continue  # spent to nothing, or expired by another process meanwhile
            applied = transfer(
                session,
                TransferRequest(
                    idempotency_key=f"grant-expiry:{grant_id}",
                    debit_account_id=wallet_id,
                    credit_account_id=expired_to,
                    amount_minor=remaining,
                    currency=currency,
                    category=Category.GRANT_EXPIRY,
                    memo="granted credit expired",
                    grant_id=grant_id,
                ),
            )
            outbox.emit_for_wallet(
                session,
                "wallet.grant_expired",
                key=f"wallet.grant_expired:{grant_id}",
                wallet_id=wallet_id,
                data={
                    "grant_id": str(grant_id),
                    "expired_minor": remaining,
                    "transfer_id": applied.transfer.id,
                },
            )
        expired.append(grant_id)
    if expired:
        logger.info("Expired the unused part of %d grants.", len(expired))
    return expired


def open_grants(session: Session, wallet_id: uuid.UUID) -> list[CreditGrant]:
    """The wallet's grants with credit left, in the order spends draw on them."""
    return list(
        session.scalars(
            select(CreditGrant)
            .where(CreditGrant.wallet_id == wallet_id, CreditGrant.remaining_minor > 0)
            .order_by(
                CreditGrant.priority,
                CreditGrant.expires_at.asc().nulls_last(),
                CreditGrant.created_at,
                CreditGrant.id,
            )
            .limit(SHOWN_MAX)
        )
    )


def grant_view(grant: CreditGrant) -> dict[str, object]:
    """A grant as JSON: ids as strings, money in minor units, times in ISO 8601."""
    return {
        "id": str(grant.id),
        "amount_minor": grant.amount_minor,
        "remaining_minor": grant.remaining_minor,
        "expired_minor": grant.expired_minor,
        "currency": grant.currency,
        "priority": grant.priority,
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "reason": grant.reason,
        "granted_by": grant.granted_by,
        "created_at": grant.created_at.isoformat() if grant.created_at else None,
        "expired_at": grant.expired_at.isoformat() if grant.expired_at else None,
    }
