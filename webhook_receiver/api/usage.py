"""Usage records from services: stored once under the id the service chose, billed once by the
workers after the call commits.

The body is one record, or `{"records": [...]}` with up to RECORDS_MAX of them. A batch is
stored with one multi-row statement and answered record by record (recorded, duplicate,
conflict, invalid), so one bad record fails only itself; each is judged by the same rules as
a single one, its wallet's visibility to the token included.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Response, current_app, request
from sqlalchemy.orm import Session

from ledger import usage
from ledger.usage import Outcome, UsageInput, record_many, record_usage, wallets_of
from webhook_receiver.api import blueprint, views
from webhook_receiver.api.access import sees, visible_wallet
from webhook_receiver.api.mutation import after_commit, mutation
from webhook_receiver.api.validation import AMOUNT, ID, TEXT_ID, body_schema, check, json_body
from webhook_receiver.auth import requires
from webhook_receiver.errors import ApiError, Invalid, NotFound
from workers.jobs import BILL_USAGE_RECORDS

RECORDS_MAX = usage.RECORDS_MAX
OCCURRED_AFTER = datetime(2000, 1, 1, tzinfo=UTC)
OCCURRED_BEFORE = datetime(2100, 1, 1, tzinfo=UTC)
# A full batch of the largest records: a body limit of its own, above the receiver's default.
BATCH_BYTES_MAX = 2 * 1024 * 1024
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
# Each record is checked on its own, so the batch schema only asks for a list.
CREATE_BATCH = body_schema(
    {
        "records": {
            "type": "array",
            "minItems": 1,
            "maxItems": RECORDS_MAX,
            "description": "Each item is a usage record, as the single form's body.",
        }
    }
)


def _batch_body_limit(view: Callable[..., Response]) -> Callable[..., Response]:
    @functools.wraps(view)
    def run(**url_args: Any) -> Response:
        request.max_content_length = max(
            current_app.config.get("MAX_CONTENT_LENGTH") or 0, BATCH_BYTES_MAX
        )
        return view(**url_args)

    return run


@blueprint.post("/usage", endpoint="usage_create")
@_batch_body_limit
@requires("billing:write")
@mutation("usage.record")
def create(session: Session) -> tuple[dict[str, Any], int]:
    """202: recorded; the workers bill it once. A repeat of the usage_id returns the record.

    A batch answers 202 with one result per record, in order.
    """
    body = json_body({"type": "object"})
    if "records" in body:
        return _create_batch(session, body)
    check(body, CREATE, "body")
    occurred_at = _occurred_at(body["occurred_at"], "body")
    wallet = visible_wallet(session, uuid.UUID(body["wallet_id"]))
    entry, _new = record_usage(
        session,
        usage_id=body["usage_id"],
        wallet_id=wallet.id,
        resource_id=body["resource_id"],
        description=body["description"],
        amount_minor=body["amount_minor"],
        occurred_at=occurred_at,
    )
    if entry.status == "pending":  # new, or a repeat of one not billed yet
        after_commit(BILL_USAGE_RECORDS)
    return views.usage_record(entry), 202


def _occurred_at(raw: str, where: str) -> datetime:
    try:
        occurred_at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{where}.occurred_at: not an RFC 3339 date-time") from None
    if occurred_at.tzinfo is None:
        raise Invalid(f"{where}.occurred_at: needs a UTC offset")
    if not OCCURRED_AFTER <= occurred_at <= OCCURRED_BEFORE:
        raise Invalid(f"{where}.occurred_at: must lie between 2000 and 2100")
    return occurred_at


def _problem(error: ApiError) -> dict[str, Any]:
    return {
        "type": "about:blank",
        "title": error.title,
        "status": error.status,
        "detail": str(error),
    }


def _create_batch(session: Session, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
    check(body, CREATE_BATCH, "body")
    raw_records: list[dict[str, Any]] = body["records"]
    results: list[dict[str, Any] | None] = [None] * len(raw_records)
    parsed: list[tuple[int, UsageInput]] = []
    for index, raw in enumerate(raw_records):
        where = f"body.records[{index}]"
        try:
            check(raw, CREATE, where)
            parsed.append(
                (
                    index,
                    UsageInput(
                        usage_id=raw["usage_id"],
                        wallet_id=uuid.UUID(raw["wallet_id"]),
                        resource_id=raw["resource_id"],
                        description=raw["description"],
                        amount_minor=raw["amount_minor"],
                        occurred_at=_occurred_at(raw["occurred_at"], where),
                    ),
                )
            )
        except Invalid as error:
            results[index] = _result(raw, "invalid", problem=_problem(error))
    wallets = wallets_of(session, [record.wallet_id for _, record in parsed])
    seen: dict[str, bool] = {}  # owner id -> whether this token may act for it
    visible: list[tuple[int, UsageInput]] = []
    for index, record in parsed:
        wallet = wallets.get(record.wallet_id)
        if wallet is not None and wallet.owner_id not in seen:
            seen[wallet.owner_id] = sees(session, wallet.owner_id)
        if wallet is None or not seen[wallet.owner_id]:
            unseen = NotFound(f"no wallet with id {record.wallet_id}")
            results[index] = _result(raw_records[index], "invalid", problem=_problem(unseen))
            continue
        visible.append((index, record))
    currencies = {wallet_id: wallet.currency for wallet_id, wallet in wallets.items()}
    stored = record_many(session, [record for _, record in visible], currencies)
    for (index, record), outcome in zip(visible, stored, strict=True):
        if outcome.outcome is Outcome.CONFLICT:
            problem = {
                "type": "about:blank",
                "title": "Idempotency key reused",
                "status": 409,
                "detail": f'usage id "{record.usage_id}" was already used for another record',
            }
            results[index] = _result(raw_records[index], "conflict", problem=problem)
        else:
            results[index] = _result(
                raw_records[index], str(outcome.outcome), record=views.usage_record(outcome.entry)
            )
    if any(s.entry.status == "pending" for s in stored if s.outcome is not Outcome.CONFLICT):
        after_commit(BILL_USAGE_RECORDS)
    answered = [result for result in results if result is not None]
    assert len(answered) == len(raw_records)
    counts = {status: 0 for status in ("recorded", "duplicate", "conflict", "invalid")}
    for result in answered:
        counts[result["status"]] += 1
    return {"records": answered, "counts": counts}, 202


def _result(raw: Any, status: str, **detail: Any) -> dict[str, Any]:
    usage_id = raw.get("usage_id") if isinstance(raw, dict) else None
    return {
        "usage_id": usage_id if isinstance(usage_id, str) else None,
        "status": status,
        **detail,
    }
