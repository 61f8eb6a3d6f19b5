"""Transfers between wallets the token can see (a reseller moving credit to its customers)."""

from __future__ import annotations

import uuid
from typing import Any

from flask import request
from sqlalchemy.orm import Session

from ledger.models import Category
from ledger.transfer import TransferRequest, transfer
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import visible_wallet
from webhook_receiver.api.mutation import mutation
from webhook_receiver.api.validation import AMOUNT, ID, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.errors import Invalid

CREATE = body_schema(
    {"from_wallet_id": ID, "to_wallet_id": ID, "amount_minor": AMOUNT},
    {"memo": {"type": "string", "maxLength": 500}},
)


@blueprint.post("/transfers", endpoint="transfer_create")
@requires("wallets:write")
@mutation("wallet.transfer")
def create(session: Session) -> tuple[dict[str, Any], int]:
    """Move credit between two wallets of one currency; 422 when the source cannot cover it."""
    body = json_body(CREATE)
    if body["from_wallet_id"] == body["to_wallet_id"]:
        raise Invalid("from_wallet_id and to_wallet_id must differ")
    source = visible_wallet(session, uuid.UUID(body["from_wallet_id"]))
    target = visible_wallet(session, uuid.UUID(body["to_wallet_id"]))
    key = request.headers.get("Idempotency-Key") or str(uuid.uuid4())
    applied = transfer(
        session,
        TransferRequest(
            idempotency_key=f"api-transfer:{key}",
            debit_account_id=source.id,
            credit_account_id=target.id,
            amount_minor=body["amount_minor"],
            currency=source.currency,
            category=Category.TRANSFER,
            memo=body.get("memo"),
        ),
    )
    return views.transfer(applied.transfer, source.id), 201
