"""Usage records from services: stored once under the id the service chose, billed once by the
workers after the call commits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from ledger.usage import record_usage
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import visible_wallet
from webhook_receiver.api.mutation import after_commit, mutation
from webhook_receiver.api.validation import AMOUNT, ID, TEXT_ID, body_schema, json_body
from webhook_receiver.auth import requires
from webhook_receiver.errors import Invalid
from workers.jobs import BILL_USAGE

OCCURRED_AFTER = datetime(2000, 1, 1, tzinfo=UTC)
OCCURRED_BEFORE = datetime(2100, 1, 1, tzinfo=UTC)
CREATE = body_schema(
    {
        "usage_id": TEXT_ID,
        "wallet_id": ID,
        "resource_id": TEXT_ID,
        "description": {"type": "string", "minLength": 1, "maxLength": 500},
        "amount_minor": AMOUNT,
        "occurred_at": {"type": "string", "format": "date-time"},
    }
)


@blueprint.post("/usage", endpoint="usage_create")
@requires("billing:write")
@mutation("usage.record")
def create(session: Session) -> tuple[dict[str, Any], int]:
    """202: recorded; the workers bill it once. A repeat of the usage_id returns the record."""
    body = json_body(CREATE)
    try:
        occurred_at = datetime.fromisoformat(body["occurred_at"].replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("body.occurred_at: not an RFC 3339 date-time") from None
    if occurred_at.tzinfo is None:
        raise Invalid("body.occurred_at: needs a UTC offset")
    if not OCCURRED_AFTER <= occurred_at <= OCCURRED_BEFORE:
        raise Invalid("body.occurred_at: must lie between 2000 and 2100")
    wallet = visible_wallet(session, uuid.UUID(body["wallet_id"]))
    row, _new = record_usage(
        session,
        usage_id=body["usage_id"],
        wallet_id=wallet.id,
        resource_id=body["resource_id"],
        description=body["description"],
        amount_minor=body["amount_minor"],
        occurred_at=occurred_at,
    )
    if row.status == "pending":  # new, or a repeat of one not billed yet
        after_commit(BILL_USAGE, str(row.wallet_id), row.id)
    return views.usage_record(row), 202
