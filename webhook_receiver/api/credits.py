"""Granted credit, statements and the balance at a time, per wallet."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import grant, statement
from ledger.models import Account, AccountKind
from webhook_receiver.api import blueprint
from webhook_receiver.api.access import visible_wallet
from webhook_receiver.api.mutation import ledger_key, mutation
from webhook_receiver.api.validation import AMOUNT, body_schema, json_body
from webhook_receiver.auth import current_principal, requires
from webhook_receiver.errors import Forbidden, Invalid, Unprocessable
from webhook_receiver.services import services

TIME_CHARS_MAX = 64
CREATE_GRANT = body_schema(
    {
        "amount_minor": AMOUNT,
        "reason": {"type": "string", "minLength": 1, "maxLength": grant.REASON_CHARS_MAX},
    },
    {
        "expires_at": {"type": "string", "format": "date-time", "maxLength": TIME_CHARS_MAX},
        "priority": {
            "type": "integer",
            "minimum": grant.PRIORITY_MIN,
            "maximum": grant.PRIORITY_MAX,
            "description": "Spends draw on the lowest number first (0 to 100, default 50).",
        },
    },
)
FORMATS = ("json", "csv")


@blueprint.post("/wallets/<uuid:wallet_id>/grants")
@requires("wallets:write")
@mutation("wallet.grant")
def create_grant(session: Session, wallet_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """Grant credit: an operator (admin) from promotions, a reseller from its own wallet.

    A token bound to an owner grants to wallets in its tree, never to its own, and the
    credit leaves that owner's wallet of the same currency.
    """
    body = json_body(CREATE_GRANT)
    reason = body["reason"].strip()
    if not reason:
        raise Invalid("body.reason must say why the credit is granted")
    expires_at = None
    if "expires_at" in body:
        expires_at = parse_time(body["expires_at"], "body.expires_at")
        if expires_at <= datetime.now(UTC):
            raise Invalid("body.expires_at must be in the future")
    principal = current_principal()
    target = visible_wallet(session, wallet_id)
    source_id = None
    if principal.owner_id is None:
        if not principal.has("admin"):
            raise Forbidden("granting credit needs admin, or a reseller's own token")
    else:
        if target.owner_id == principal.owner_id:
            raise Forbidden("a reseller grants credit to its customers, not to itself")
        source_id = session.scalar(
            select(Account.id).where(
                Account.kind == AccountKind.WALLET,
                Account.owner_id == principal.owner_id,
                Account.currency == target.currency,
            )
        )
        if source_id is None:
            raise Unprocessable(
                f"owner {principal.owner_id} has no {target.currency} wallet to grant from"
            )
    granted = grant.grant_credit(
        session,
        wallet_id=target.id,
        amount_minor=body["amount_minor"],
        reason=reason,
        actor=f"api:{principal.subject}",
        expires_at=expires_at,
        priority=body.get("priority", grant.PRIORITY_DEFAULT),
        from_wallet_id=source_id,
        idempotency_key=ledger_key("api-grant") if request.headers.get("Idempotency-Key") else None,
    )
    return {**grant.grant_view(granted.grant), "wallet_id": str(target.id)}, 201


@blueprint.get("/wallets/<uuid:wallet_id>/statement")
@requires("wallets:read")
def show_statement(wallet_id: uuid.UUID) -> Response:
    """Opening balance, each entry of [from, to) with the balance after it, closing balance."""
    start = parse_time(_required("from"), "from")
    end = parse_time(_required("to"), "to")
    form = request.args.get("format", "json")
    if form not in FORMATS:
        raise Invalid(f"format must be one of {', '.join(FORMATS)}")
    try:
        with services().sessions() as session:
            visible_wallet(session, wallet_id)
            found = statement.statement(session, wallet_id, start, end)
    except statement.StatementTooLong as exc:
        raise Unprocessable(str(exc)) from None
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if form == "csv":
        name = f"statement-{wallet_id}-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        return Response(
            statement.as_csv(found),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return jsonify(statement.as_json(found))


@blueprint.get("/wallets/<uuid:wallet_id>/balance")
@requires("wallets:read")
def show_balance(wallet_id: uuid.UUID) -> Response:
    """The balance, available and held amounts at `at` (default: now)."""
    raw = request.args.get("at")
    at = datetime.now(UTC) if raw is None else parse_time(raw, "at")
    with services().sessions() as session:
        visible_wallet(session, wallet_id)
        found = statement.balance_at(session, wallet_id, at)
    return jsonify({"wallet_id": str(wallet_id), **statement.balance_view(found)})


def parse_time(raw: str, name: str) -> datetime:
    """An RFC 3339 time with its UTC offset; raises Invalid saying what is wrong."""
    try:
        if len(raw) > TIME_CHARS_MAX:
            raise ValueError
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise Invalid(f"{name} must be a time like 2026-11-01T00:00:00Z") from None
    if value.tzinfo is None:
        raise Invalid(f"{name} must carry a UTC offset, like 2026-11-01T00:00:00Z")
    try:
        in_range = 1970 <= value.astimezone(UTC).year <= 9998
    except (OverflowError, ValueError):
        in_range = False
    if not in_range:
        raise Invalid(f"{name} must be between the years 1970 and 9998")
    return value


def _required(name: str) -> str:
    raw = request.args.get(name)
    if raw is None:
        raise Invalid(f"{name} is required, a time like 2026-11-01T00:00:00Z")
    return raw
