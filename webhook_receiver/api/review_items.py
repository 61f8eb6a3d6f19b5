"""Review items, for admins: events set aside for a person, and their one resolution."""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from ledger import review
from ledger.models import ReviewAction
from ledger.review_reason import ReviewCode
from webhook_receiver.api import blueprint
from webhook_receiver.api.mutation import mutation
from webhook_receiver.api.validation import ID, body_schema, json_body
from webhook_receiver.auth import ADMIN, current_principal, requires
from webhook_receiver.errors import Invalid
from webhook_receiver.services import services

_ITEM_ID = "<item_id>"  # event-N or conflict-N; ItemId.parse bounds it before any query
_GATEWAY = re.compile("[a-z]{2,32}")
RESOLVE = body_schema(
    {
        "action": {"enum": [action.value for action in ReviewAction]},
        "note": {"type": "string", "minLength": 1, "maxLength": review.NOTE_CHARS_MAX},
    },
    {"topup_id": ID, "wallet_id": ID},
)


@blueprint.get("/review-items", endpoint="review_item_list")
@requires(ADMIN)
def list_() -> Response:
    gateway = request.args.get("gateway")
    reason = request.args.get("reason")
    limit = request.args.get("limit", "100")
    if gateway is not None and not _GATEWAY.fullmatch(gateway):
        raise Invalid("gateway must be a gateway's name: 2 to 32 lower-case letters")
    if reason is not None and reason not in set(ReviewCode):
        raise Invalid(f"reason must be one of {', '.join(code.value for code in ReviewCode)}")
    if not limit.isdigit() or not 1 <= int(limit) <= review.LIST_LIMIT_MAX:
        raise Invalid(f"limit must be an integer from 1 to {review.LIST_LIMIT_MAX}")
    with services().sessions() as session:
        items = review.list_items(
            session,
            gateway=gateway,
            code=None if reason is None else ReviewCode(reason),
            limit=int(limit),
        )
        return jsonify({"items": [item.as_dict() for item in items]})


@blueprint.get(f"/review-items/{_ITEM_ID}", endpoint="review_item_show")
@requires(ADMIN)
def show(item_id: str) -> Response:
    with services().sessions() as session:
        return jsonify(review.show(session, item_id))


@blueprint.post(f"/review-items/{_ITEM_ID}/resolve", endpoint="review_item_resolve")
@requires(ADMIN)
@mutation("review.resolve")
def resolve(session: Session, item_id: str) -> tuple[dict[str, Any], int]:
    """One resolution per item, whoever asks and however often (a repeat answers 409)."""
    body = json_body(RESOLVE)
    action = ReviewAction(body["action"])
    topup_id = body.get("topup_id")
    wallet_id = body.get("wallet_id")
    needed = {ReviewAction.APPLY_TO_TOPUP: "topup_id", ReviewAction.CREDIT_WALLET: "wallet_id"}
    for other, field in needed.items():
        if (action is other) != (body.get(field) is not None):
            raise Invalid(f"{field} goes with action {other.value}, and only with it")
    resolution = review.resolve(
        session,
        item_id,
        action=action,
        note=body["note"],
        actor=f"api:{current_principal().subject}",
        topup_id=None if topup_id is None else uuid.UUID(topup_id),
        wallet_id=None if wallet_id is None else uuid.UUID(wallet_id),
    )
    return {"id": item_id, **review.resolution_view(resolution)}, 200
