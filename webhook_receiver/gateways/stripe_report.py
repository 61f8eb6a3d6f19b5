"""Stripe's itemized balance change report (`balance_change_from_activity.itemized.*`), CSV.

Amounts are in major units, negative for money out (refunds, disputes); `fee` is what Stripe
charged. A charge names its PaymentIntent (what Stripe's webhooks call the payment here); a
refund's `source_id` is the refund (`re_...`). `payment_metadata[topup_id]` carries our
reference when the merchant adds that column to the report.
"""

from __future__ import annotations

from ledger.report_line import LineKind, ReportLine
from webhook_receiver.gateways import report_reader as rr

_REQUIRED = {
    "balance_transaction_id",
    "created_utc",
    "currency",
    "gross",
    "fee",
    "net",
    "reporting_category",
    "source_id",
}
_KINDS = {
    "charge": LineKind.CAPTURE,
    "refund": LineKind.REFUND,
    "dispute": LineKind.DISPUTE,
    "dispute_reversal": LineKind.DISPUTE_REVERSAL,
    "fee": LineKind.FEE,
}
_TIMES = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S%z")


def read(data: bytes) -> list[ReportLine]:
    """The report's lines; raises ReportUnreadable."""
    lines = []
    for number, row in rr.csv_rows(data, _REQUIRED):
        code = rr.currency(row["currency"], number)
        kind = _KINDS.get(row["reporting_category"], LineKind.OTHER)
        gross = rr.major_to_minor(row["gross"], code, number)
        fee = rr.major_to_minor(row["fee"], code, number)
        payment = rr.optional(row.get("payment_intent_id")) or rr.optional(row.get("charge_id"))
        if kind is LineKind.CAPTURE:
            payment = payment or rr.optional(row["source_id"])
        amount = abs(gross)
        if kind is LineKind.FEE:
            amount, fee = abs(rr.major_to_minor(row["net"], code, number)), 0
        lines.append(
            ReportLine(
                line_id=row["balance_transaction_id"],
                kind=kind,
                payment_id=payment,
                reference=rr.optional(row.get("payment_metadata[topup_id]")),
                amount_minor=amount,
                currency=code,
                fee_minor=fee,
                occurred_at=rr.timestamp(row["created_utc"], _TIMES),
                raw=row,
                refund_id=rr.optional(row["source_id"]) if kind is LineKind.REFUND else None,
            )
        )
    return lines
