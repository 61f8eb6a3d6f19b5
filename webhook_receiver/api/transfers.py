"""Transfers between wallets: for now an operator's (admin) move of credit between owners."""

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
from webhook_receiver.auth import requires
from webhook_receiver.errors import Invalid

CREATE = body_schema(
    {"from_wallet_id": ID, "to_wallet_id": ID, "amount_minor": AMOUNT},
    {"memo": {"type": "string", "maxLength": 500}},
)


@blueprint.post("/transfers", endpoint="transfer_create")
@requires("admin")
@mutation("wallet.transfer", key_required=True)
def create(session: Session) -> tuple[dict[str, Any], int]:
    """Move credit between two wallets of one currency; 422 when the source cannot cover it.

    Until resellers own customer trees, only an admin token may move money between owners.
    """
    body = json_body(CREATE)
    source_id, target_id = uuid.UUID(body["from_wallet_id"]), uuid.UUID(body["to_wallet_id"])
    if source_id == target_id:
        raise Invalid("from_wallet_id and to_wallet_id must differ")
    source = visible_wallet(session, source_id)
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
