"""Orders: create, pay from the wallet (in the request), refund in part or in full, show."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from ledger.order import create_order, get_order, pay_order, refund_order
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import check_visible, visible_wallet
from webhook_receiver.api.mutation import ledger_key, mutation
from webhook_receiver.api.validation import AMOUNT, ID, TEXT_ID, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.services import services

CREATE_ORDER = body_schema({"wallet_id": ID, "amount_minor": AMOUNT, "reference": TEXT_ID})
REFUND = body_schema({"amount_minor": AMOUNT})
EMPTY = body_schema({})


@blueprint.post("/orders", endpoint="order_create")
@requires("orders:write")
@mutation("order.create")
def create(session: Session) -> tuple[dict[str, Any], int]:
    body = json_body(CREATE_ORDER)
    wallet = visible_wallet(session, uuid.UUID(body["wallet_id"]))
    row = create_order(
        session, wallet_id=wallet.id, amount_minor=body["amount_minor"], reference=body["reference"]
    )
    session.flush()
    return views.order(row), 201


@blueprint.post("/orders/<uuid:order_id>/pay", endpoint="order_pay")
@requires("orders:write")
@mutation("order.pay")
def pay(session: Session, order_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """200 with status paid, or rejected with reason insufficient_funds (no money moved)."""
    if request.get_data(cache=True):
        json_body(EMPTY)
    check_visible(session, get_order(session, order_id).wallet_id, "order", order_id)
    return views.order(pay_order(session, order_id)), 200


@blueprint.post("/orders/<uuid:order_id>/refunds", endpoint="order_refund")
@requires("orders:write")
@mutation("order.refund", key_required=True)
def refund(session: Session, order_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """One refund per Idempotency-Key (required): a retried call refunds once."""
    body = json_body(REFUND)
    check_visible(session, get_order(session, order_id).wallet_id, "order", order_id)
    row = refund_order(
        session, order_id, amount_minor=body["amount_minor"], refund_key=ledger_key("refund")
    )
    return views.order(row), 200


@blueprint.get("/orders/<uuid:order_id>", endpoint="order_show")
@requires("wallets:read")
def show(order_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        row = get_order(session, order_id)
        check_visible(session, row.wallet_id, "order", order_id)
        return jsonify(views.order(row))
