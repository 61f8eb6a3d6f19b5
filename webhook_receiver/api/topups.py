"""Top-ups: the intent a paying client references in the gateway; the gateway's event settles it."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify
from sqlalchemy.orm import Session

from ledger.topup import create_topup, get_topup
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import check_visible, visible_wallet
from webhook_receiver.api.mutation import mutation
from webhook_receiver.api.validation import AMOUNT, ID, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.errors import Unprocessable
from webhook_receiver.services import services

CREATE_TOPUP = body_schema(
    {"wallet_id": ID, "amount_minor": AMOUNT, "gateway": {"type": "string", "maxLength": 32}}
)


@blueprint.post("/topups", endpoint="topup_create")
@requires("wallets:write")
@mutation("topup.create")
def create(session: Session) -> tuple[dict[str, Any], int]:
    body = json_body(CREATE_TOPUP)
    if body["gateway"] not in services().adapters:
        configured = ", ".join(sorted(services().adapters)) or "none"
        raise Unprocessable(
            f'gateway "{body["gateway"]}" is not configured here (configured: {configured})'
        )
    wallet = visible_wallet(session, uuid.UUID(body["wallet_id"]))
    row = create_topup(
        session, wallet_id=wallet.id, amount_minor=body["amount_minor"], gateway=body["gateway"]
    )
    return views.topup(row), 201


@blueprint.get("/topups/<uuid:topup_id>", endpoint="topup_show")
@requires("wallets:read")
def show(topup_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        row = get_topup(session, topup_id)
        check_visible(session, row.wallet_id, "top-up", topup_id)
        return jsonify(views.topup(row))
