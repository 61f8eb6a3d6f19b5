"""Transfers between wallets: a reseller funding its customers, or an operator (admin) moving
credit between any two owners."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from ledger.models import Category
from ledger.transfer import TransferRequest, transfer
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import visible_wallet
from webhook_receiver.api.mutation import ledger_key, mutation
from webhook_receiver.api.validation import AMOUNT, ID, body_schema, json_body
from webhook_receiver.auth import current_principal, requires
from webhook_receiver.errors import Forbidden, Invalid

CREATE = body_schema(
    {"from_wallet_id": ID, "to_wallet_id": ID, "amount_minor": AMOUNT},
    {"memo": {"type": "string", "maxLength": 500}},
)


@blueprint.post("/transfers", endpoint="transfer_create")
@requires("wallets:write")
@mutation("wallet.transfer", key_required=True)
def create(session: Session) -> tuple[dict[str, Any], int]:
    """Move credit between two wallets of one currency; 422 when the source cannot cover it.

    A token bound to an owner moves credit from that owner's own wallets to wallets in its
    tree (a reseller to its customers). A token bound to no owner needs `admin`.
    """
    body = json_body(CREATE)
    source_id, target_id = uuid.UUID(body["from_wallet_id"]), uuid.UUID(body["to_wallet_id"])
    if source_id == target_id:
        raise Invalid("from_wallet_id and to_wallet_id must differ")
    principal = current_principal()
    if principal.owner_id is None and not principal.has("admin"):
        raise Forbidden("moving credit between owners needs admin, or a reseller's own token")
    source = visible_wallet(session, source_id)
    if principal.owner_id is not None and source.owner_id != principal.owner_id:
        raise Forbidden(f"this token moves credit out of owner {principal.owner_id}'s wallets only")
    target = visible_wallet(session, target_id)
    applied = transfer(
        session,
        TransferRequest(
            idempotency_key=ledger_key("api-transfer"),
            debit_account_id=source.id,
            credit_account_id=target.id,
            amount_minor=body["amount_minor"],
            currency=source.currency,
            category=Category.TRANSFER,
            memo=body.get("memo"),
        ),
    )
    return views.transfer(applied.transfer, source.id), 201
