"""Razorpay's settlement recon: the JSON of `GET /v1/settlements/recon/combined` (amounts in
the currency's subunits, times in Unix seconds), or the dashboard's CSV download of the same
report (the same column names; amounts in rupees, times as Razorpay's dashboard writes them).

A payment's `entity_id` is the payment (`pay_...`); a refund's is the refund (`rfnd_...`) and
its `payment_id` the payment it returns. `fee` includes `tax`. Our reference travels in the
payment's notes (`notes.topup_id`), which the report carries as an object or as text.
"""

from __future__ import annotations

import json
from typing import Any

from ledger.report_line import LineKind, ReportLine
from webhook_receiver.errors import ReportUnreadable
from webhook_receiver.gateways import report_reader as rr

_KINDS = {
    "payment": LineKind.CAPTURE,
    "refund": LineKind.REFUND,
    "dispute": LineKind.DISPUTE,
}
_REQUIRED = {"entity_id", "type", "amount", "currency", "fee"}
_DASHBOARD_TIMES = ("%d/%m/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%d/%m/%Y %H:%M")


def read(data: bytes) -> list[ReportLine]:
    """The report's lines, from the API's JSON or the dashboard's CSV; raises ReportUnreadable."""
    text = rr.text_of(data).lstrip()
    if text.startswith("{"):
        return _from_json(text)
    return [_line(number, row, in_subunits=False) for number, row in rr.csv_rows(data, _REQUIRED)]


def _from_json(text: str) -> list[ReportLine]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ReportUnreadable("the report is not JSON") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ReportUnreadable("the report has no items list (GET /v1/settlements/recon/combined)")
    lines = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not item.keys() >= _REQUIRED:
            raise ReportUnreadable(f"item {number} lacks one of {', '.join(sorted(_REQUIRED))}")
        lines.append(_line(number, item, in_subunits=True))
    return lines


def _line(number: int, row: dict[str, Any], *, in_subunits: bool) -> ReportLine:
    code = rr.currency(str(row["currency"]), number)

    def money(name: str) -> int:
        value = row.get(name)
        if in_subunits:
            return rr.integer(value, number, name)
        return rr.major_to_minor(str(value or "0"), code, number)

    kind = _KINDS.get(str(row["type"]), LineKind.OTHER)
    entity = rr.optional(row["entity_id"])
    if entity is None:
        raise ReportUnreadable(f"line {number}: entity_id is empty")
    payment = entity if kind is LineKind.CAPTURE else rr.optional(row.get("payment_id"))
    created = row.get("created_at")
    occurred = rr.epoch(created) or (
        rr.timestamp(created, _DASHBOARD_TIMES) if isinstance(created, str) else None
    )
    return ReportLine(
        line_id=entity,
        kind=kind,
        payment_id=payment,
        reference=_topup_id(row.get("notes")),
        amount_minor=abs(money("amount")),
        currency=code,
        fee_minor=money("fee"),
        occurred_at=occurred,
        raw=row,
        refund_id=entity if kind is LineKind.REFUND else None,
    )


def _topup_id(notes: object) -> str | None:
    if isinstance(notes, str) and notes.strip().startswith("{"):
        try:
            notes = json.loads(notes)
        except (ValueError, RecursionError):
            return None
    if isinstance(notes, dict):
        return rr.optional(notes.get("topup_id"))
    return None
