"""The JSON shapes of the API's resources."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ledger.account import wallet_balance
from ledger.grant import grant_view
from ledger.models import (
    Account,
    CreditGrant,
    Order,
    ProvisioningRequest,
    Topup,
    Transfer,
    UsageRecord,
)
from ledger.usage import UsageEntry


def wallet(account: Account, grants: Sequence[CreditGrant] = ()) -> dict[str, Any]:
    """A wallet: its balance split into paid and granted credit, with the grants left."""
    balance = wallet_balance(account)
    return {
        "id": str(account.id),
        "owner_id": balance.owner_id,
        "currency": balance.currency,
        "balance_minor": balance.balance_minor,
        "available_minor": balance.available_minor,
        "held_minor": balance.held_minor,
        "paid_minor": balance.paid_minor,
        "granted_minor": balance.granted_minor,
        "grants": [grant_view(row) for row in grants],
    }


def transfer(row: Transfer, wallet_id: uuid.UUID) -> dict[str, Any]:
    """A transfer as one wallet sees it: money in (credit) or out (debit) of that wallet."""
    outgoing = row.debit_account_id == wallet_id
    return {
        "id": str(row.id),
        "kind": row.kind,
        "category": row.category,
        "direction": "debit" if outgoing else "credit",
        "counterparty_account_id": str(row.credit_account_id if outgoing else row.debit_account_id),
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "pending_id": None if row.pending_id is None else str(row.pending_id),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "memo": row.memo,
        "created_at": row.created_at.isoformat(),
    }


def topup(row: Topup) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "wallet_id": str(row.wallet_id),
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "gateway": row.gateway,
        "status": row.status,
        "created_at": row.created_at.isoformat(),
        "settled_at": row.settled_at.isoformat() if row.settled_at else None,
    }


def order(row: Order) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "wallet_id": str(row.wallet_id),
        "reference": row.reference,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "status": row.status,
        "paid_minor": row.paid_minor,
        "refunded_minor": row.refunded_minor,
        "reason": row.reason,
        "created_at": row.created_at.isoformat(),
    }


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def provisioning_request(row: ProvisioningRequest) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "wallet_id": str(row.wallet_id),
        "resource_id": row.resource_id,
        "plan": row.plan,
        "status": row.status,
        "reason": row.reason,
        "reserve_minor": row.reserve_minor,
        "shortfall_minor": row.shortfall_minor,
        "monthly_price_minor": row.monthly_price_minor,
        "billed_hours": row.billed_hours,
        "created_at": row.created_at.isoformat(),
        "decided_at": _time(row.decided_at),
        "activated_at": _time(row.activated_at),
        "released_at": _time(row.released_at),
        "grace_started_at": _time(row.grace_started_at),
        "suspend_requested_at": _time(row.suspend_requested_at),
    }


def usage_record(row: UsageRecord | UsageEntry) -> dict[str, Any]:
    return {
        "id": row.id,
        "wallet_id": str(row.wallet_id),
        "resource_id": row.resource_id,
        "description": row.description,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
        "occurred_at": row.occurred_at.isoformat(),
        "status": row.status,
    }
