"""Usage records: metered charges that services report, each stored and billed once under the
id they chose."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.account import get_wallet, system_account_id
from ledger.errors import IdempotencyConflict, NotFound
from ledger.models import Category, SystemAccount, UsageRecord
from ledger.money import validate_amount_minor
from ledger.transfer import TransferRequest, bounded_key, transfer

_PAYLOAD = ("wallet_id", "resource_id", "description", "amount_minor", "occurred_at")


def record_usage(
    session: Session,
    *,
    usage_id: str,
    wallet_id: uuid.UUID,
    resource_id: str,
    description: str,
    amount_minor: int,
    occurred_at: datetime,
) -> tuple[UsageRecord, bool]:
    """Store a usage record to be billed; returns it and whether it is new.

    The service's `usage_id` is the idempotency key: a repeat with the same payload returns the
    stored record, with a different one raises IdempotencyConflict.
    """
    wallet = get_wallet(session, wallet_id)
    values = {
        "id": usage_id,
        "wallet_id": wallet.id,
        "resource_id": resource_id,
        "description": description,
        "amount_minor": validate_amount_minor(amount_minor),
        "currency": wallet.currency,
        "occurred_at": occurred_at,
    }
    inserted = session.execute(
        insert(UsageRecord).values(**values).on_conflict_do_nothing().returning(UsageRecord.id)
    ).scalar_one_or_none()
    record = session.get(UsageRecord, (wallet.id, usage_id), populate_existing=True)
    assert record is not None
    if inserted is None and any(getattr(record, f) != values[f] for f in _PAYLOAD):
        raise IdempotencyConflict(f'usage id "{usage_id}" was already used for another record')
    return record, inserted is not None


def bill_usage_record(session: Session, wallet_id: uuid.UUID, usage_id: str) -> UsageRecord:
    """Charge a stored usage record to its wallet, once, however often it is called.

    The usage happened already, so the charge is forced: a wallet that cannot pay goes into
    debt and is blocked from spending until a top-up covers it. Raises NotFound.
    """
    record = session.scalar(
        select(UsageRecord)
        .where(UsageRecord.wallet_id == wallet_id, UsageRecord.id == usage_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if record is None:
        raise NotFound(f'no usage record "{usage_id}" for wallet {wallet_id}')
    if record.status == "billed":
        return record
    revenue = system_account_id(session, SystemAccount.REVENUE, record.currency)
    transfer(
        session,
        TransferRequest(
            idempotency_key=bounded_key(f"usage-record:{wallet_id}:{usage_id}"),
            debit_account_id=wallet_id,
            credit_account_id=revenue,
            amount_minor=record.amount_minor,
            currency=record.currency,
            category=Category.USAGE,
            forced=True,
            memo=f"{record.resource_id[:100]}: {record.description[:140]}",
        ),
    )
    record.status = "billed"
    record.billed_at = func.now()
    outbox.emit_if_now_negative(
        session, wallet_id, record.amount_minor, cause=f"usage-record:{wallet_id}:{usage_id}"
    )
    return record
