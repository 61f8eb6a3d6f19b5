"""Usage records: metered charges that services report, each once under the id they chose."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.account import get_wallet
from ledger.errors import IdempotencyConflict
from ledger.models import UsageRecord
from ledger.money import validate_amount_minor

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
        raise IdempotencyConflict(f"usage id {usage_id!r} was already used for another record")
    return record, inserted is not None
