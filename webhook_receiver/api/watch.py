"""What watches a wallet's balance: monitors (announced crossings) and the auto top-up rule."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, jsonify
from sqlalchemy.orm import Session

from ledger import autotopup, monitor
from ledger.money import AMOUNT_MINOR_MAX
from webhook_receiver.api import blueprint
from webhook_receiver.api.access import visible_wallet
from webhook_receiver.api.mutation import mutation
from webhook_receiver.api.validation import AMOUNT, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.errors import Invalid
from webhook_receiver.services import services

CREATE_MONITOR = body_schema(
    {
        "direction": {"enum": [str(d) for d in monitor.Direction]},
        "threshold_minor": {
            "type": "integer",
            "minimum": -AMOUNT_MINOR_MAX,
            "maximum": AMOUNT_MINOR_MAX,
        },
    }
)
_STRIPE_ID = {
    "type": "string",
    "minLength": 5,
    "maxLength": 255,
    "pattern": "^[a-z]+_[A-Za-z0-9_]+$",
}
SET_AUTO_TOPUP = body_schema(
    {
        "threshold_minor": {"type": "integer", "minimum": 0, "maximum": AMOUNT_MINOR_MAX},
        "per_day_max": {"type": "integer", "minimum": 1, "maximum": autotopup.PER_DAY_MAX_LIMIT},
    },
    {
        "target_minor": AMOUNT,
        "amount_minor": AMOUNT,
        "gateway": {"type": "string", "pattern": "^[a-z]{2,32}$"},
        "stripe_customer_id": _STRIPE_ID,
        "stripe_payment_method_id": _STRIPE_ID,
    },
)


@blueprint.post("/wallets/<uuid:wallet_id>/monitors")
@requires("wallets:write")
@mutation("wallet.monitor.add")
def add_monitor(session: Session, wallet_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """Announce `wallet.balance_crossed` each time available crosses the threshold."""
    body = json_body(CREATE_MONITOR)
    visible_wallet(session, wallet_id)
    added = monitor.add_monitor(
        session, wallet_id, monitor.Direction(body["direction"]), body["threshold_minor"]
    )
    session.flush()
    return monitor.monitor_view(added), 201


@blueprint.get("/wallets/<uuid:wallet_id>/monitors")
@requires("wallets:read")
def list_monitors(wallet_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        visible_wallet(session, wallet_id)
        found = monitor.list_monitors(session, wallet_id)
        return jsonify(items=[monitor.monitor_view(row) for row in found])


@blueprint.delete("/wallets/<uuid:wallet_id>/monitors/<uuid:monitor_id>")
@requires("wallets:write")
@mutation("wallet.monitor.remove")
def remove_monitor(
    session: Session, wallet_id: uuid.UUID, monitor_id: uuid.UUID
) -> tuple[dict[str, Any], int]:
    visible_wallet(session, wallet_id)
    monitor.remove_monitor(session, wallet_id, monitor_id)
    return {"id": str(monitor_id), "removed": True}, 200


@blueprint.put("/wallets/<uuid:wallet_id>/auto-topup")
@requires("wallets:write")
@mutation("wallet.auto_topup.set")
def set_auto_topup(session: Session, wallet_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    """Create or replace the wallet's rule: below `threshold_minor`, top up to `target_minor`
    (or by `amount_minor`), at most `per_day_max` times a UTC day."""
    body = json_body(SET_AUTO_TOPUP)
    visible_wallet(session, wallet_id)
    try:
        rule = autotopup.set_rule(
            session,
            wallet_id,
            autotopup.Rule(
                threshold_minor=body["threshold_minor"],
                per_day_max=body["per_day_max"],
                target_minor=body.get("target_minor"),
                amount_minor=body.get("amount_minor"),
                gateway=body.get("gateway", "stripe"),
                stripe_customer_id=body.get("stripe_customer_id"),
                stripe_payment_method_id=body.get("stripe_payment_method_id"),
            ),
        )
    except ValueError as exc:
        raise Invalid(f"body: {exc}") from None
    return autotopup.rule_view(rule), 200


@blueprint.get("/wallets/<uuid:wallet_id>/auto-topup")
@requires("wallets:read")
def show_auto_topup(wallet_id: uuid.UUID) -> Response:
    with services().sessions() as session:
        visible_wallet(session, wallet_id)
        return jsonify(autotopup.rule_view(autotopup.get_rule(session, wallet_id)))


@blueprint.delete("/wallets/<uuid:wallet_id>/auto-topup")
@requires("wallets:write")
@mutation("wallet.auto_topup.remove")
def remove_auto_topup(session: Session, wallet_id: uuid.UUID) -> tuple[dict[str, Any], int]:
    visible_wallet(session, wallet_id)
    autotopup.remove_rule(session, wallet_id)
    return {"wallet_id": str(wallet_id), "removed": True}, 200
