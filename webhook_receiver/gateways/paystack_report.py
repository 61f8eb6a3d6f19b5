"""Paystack's settlement detail: the JSON of `GET /settlement/:id/transactions`, the
transactions a settlement paid out, each as Paystack's transaction object (amounts and
`fees` in the currency's subunits).

A transaction's `reference` is what Paystack's webhooks (and refunds) name the payment by;
our top-up id travels in `metadata.topup_id` (an object, or JSON text).
"""

from __future__ import annotations

import json
from typing import Any

from ledger.report_line import LineKind, ReportLine
from webhook_receiver.errors import ReportUnreadable
from webhook_receiver.gateways import report_reader as rr

_TIMES = ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%f%z")


def read(data: bytes) -> list[ReportLine]:
    """The settlement's transactions; raises ReportUnreadable."""
    try:
        document = json.loads(rr.text_of(data))
    except (ValueError, RecursionError):
        raise ReportUnreadable("the report is not JSON") from None
    items = document.get("data") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ReportUnreadable("the report has no data list (GET /settlement/:id/transactions)")
    return [_line(number, item) for number, item in enumerate(items, start=1)]


def _line(number: int, item: Any) -> ReportLine:
    if not isinstance(item, dict) or not {"id", "reference", "amount", "currency"} <= item.keys():
        raise ReportUnreadable(f"transaction {number} lacks id, reference, amount or currency")
    code = rr.currency(str(item["currency"]), number)
    status = item.get("status")
    when = item.get("paid_at") or item.get("paidAt") or item.get("created_at")
    return ReportLine(
        line_id=str(item["id"]),
        kind=LineKind.CAPTURE if status in (None, "success") else LineKind.OTHER,
        payment_id=rr.optional(item["reference"]),
        reference=_topup_id(item.get("metadata")),
        amount_minor=abs(rr.integer(item["amount"], number, "amount")),
        currency=code,
        fee_minor=rr.integer(item.get("fees"), number, "fees"),
        occurred_at=rr.timestamp(when, _TIMES) if isinstance(when, str) else None,
        raw=item,
    )


def _topup_id(metadata: object) -> str | None:
    if isinstance(metadata, str) and metadata.strip().startswith("{"):
        try:
            metadata = json.loads(metadata)
        except (ValueError, RecursionError):
            return None
    if isinstance(metadata, dict):
        return rr.optional(metadata.get("topup_id"))
    return None
