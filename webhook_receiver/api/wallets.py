"""Wallets: create, show, and list their transfers page by page."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ledger.account import open_wallet
from ledger.grant import open_grants
from ledger.models import Transfer
from ledger.money import validate_currency
from ledger.provisioning import burn_rate
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import sees, visible_wallet
from webhook_receiver.api.mutation import mutation
from webhook_receiver.api.validation import CURRENCY, TEXT_ID, body_schema, json_body
from webhook_receiver.auth import current_principal, requires
from webhook_receiver.errors import Forbidden, Invalid
from webhook_receiver.services import services

CREATE_WALLET = body_schema({"owner_id": TEXT_ID, "currency": CURRENCY})
PAGE_LIMIT_MAX = 100
PAGE_LIMIT_DEFAULT = 50
# The cursor is the id of the last transfer seen: a page never shifts when new ones arrive.
CURSOR_DIGITS_MAX = 19


@blueprint.post("/wallets")
@requires("wallets:write")
@mutation("wallet.create")
def create_wallet(session: Session) -> tuple[dict[str, Any], int]:
    body = json_body(CREATE_WALLET)
    principal = current_principal()
    if not sees(session, body["owner_id"]):
        raise Forbidden(f"this token acts for owner {principal.owner_id} and its tree only")
    account = open_wallet(session, body["owner_id"], validate_currency(body["currency"]))
    session.flush()
    return views.wallet(account), 201


@blueprint.get("/wallets/<uuid:wallet_id>")
@requires("wallets:read")
def show_wallet(wallet_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        account = visible_wallet(session, wallet_id)
        return jsonify(views.wallet(account, open_grants(session, account.id)))


@blueprint.get("/wallets/<uuid:wallet_id>/burn-rate")
@requires("wallets:read")
def show_burn_rate(wallet_id: uuid.UUID) -> Response:
    """What the wallet's active resources cost a month, and hours until its money runs out."""
    with services().sessions() as session:
        visible_wallet(session, wallet_id)
        return jsonify(burn_rate(session, wallet_id).as_dict())


@blueprint.get("/wallets/<uuid:wallet_id>/transfers")
@requires("wallets:read")
def list_transfers(wallet_id: uuid.UUID) -> Response:
    """Newest first, `limit` at a time; `next_cursor` fetches the page after."""
    limit = _limit(request.args.get("limit"))
    before = _cursor(request.args.get("cursor"))
    with services().sessions() as session:
        visible_wallet(session, wallet_id)
        statement = (
            select(Transfer)
            .where(
                or_(Transfer.debit_account_id == wallet_id, Transfer.credit_account_id == wallet_id)
            )
            .order_by(Transfer.id.desc())
            .limit(limit + 1)
        )
        if before is not None:
            statement = statement.where(Transfer.id < before)
        rows = session.scalars(statement).all()
    page = rows[:limit]
    return jsonify(
        items=[views.transfer(row, wallet_id) for row in page],
        next_cursor=_encode_cursor(page[-1].id) if len(rows) > limit else None,
    )


def _limit(raw: str | None) -> int:
    if raw is None:
        return PAGE_LIMIT_DEFAULT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= PAGE_LIMIT_MAX:
        raise Invalid(f"limit must be an integer from 1 to {PAGE_LIMIT_MAX}")
    return int(raw)


def _encode_cursor(transfer_id: int) -> str:
    return str(transfer_id)


def _cursor(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > CURSOR_DIGITS_MAX:
        raise Invalid("cursor is not one this API gave out; pass back next_cursor as it came")
    return int(raw)
