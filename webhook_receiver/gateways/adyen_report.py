"""Adyen's Settlement details report (`settlement_detail_report_batch_N.csv`).

Amounts are in major units: gross in `Gross Currency` (credit for money in, debit for money
out), costs in `Net Currency`. `Psp Reference` is the original authorisation's (the payment
Adyen's AUTHORISATION webhook names); for a refund, `Modification Reference` is the refund's
own PSP reference. `Merchant Reference` is our top-up id.
"""

from __future__ import annotations

from ledger.report_line import LineKind, ReportLine
from webhook_receiver.gateways import report_reader as rr

_REQUIRED = {
    "Psp Reference",
    "Merchant Reference",
    "Creation Date",
    "Type",
    "Modification Reference",
    "Gross Currency",
    "Gross Debit (GC)",
    "Gross Credit (GC)",
    "Net Currency",
}
_KINDS = {
    "Settled": LineKind.CAPTURE,
    "Refunded": LineKind.REFUND,
    "Chargeback": LineKind.DISPUTE,
    "SecondChargeback": LineKind.DISPUTE,
    "ChargebackReversed": LineKind.DISPUTE_REVERSAL,
    "Fee": LineKind.FEE,
    "MiscCosts": LineKind.FEE,
    "PaymentCost": LineKind.FEE,
}
_COSTS = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
_TIMES = ("%Y-%m-%d %H:%M:%S",)


def read(data: bytes) -> list[ReportLine]:
    """The report's lines; raises ReportUnreadable."""
    lines = []
    for number, row in rr.csv_rows(data, _REQUIRED):
        kind = _KINDS.get(row["Type"], LineKind.OTHER)
        net_currency = rr.optional(row["Net Currency"])
        if kind is LineKind.FEE:
            code = rr.currency(row["Net Currency"], number)
            amount = abs(
                rr.major_to_minor(row.get("Net Debit (NC)", ""), code, number)
                - rr.major_to_minor(row.get("Net Credit (NC)", ""), code, number)
            )
            fee, fee_currency = 0, None
        else:
            code = rr.currency(row["Gross Currency"] or row["Net Currency"], number)
            amount = abs(
                rr.major_to_minor(row["Gross Credit (GC)"], code, number)
                - rr.major_to_minor(row["Gross Debit (GC)"], code, number)
            )
            fee_code = rr.currency(net_currency, number) if net_currency else code
            fee = sum(rr.major_to_minor(row.get(name, ""), fee_code, number) for name in _COSTS)
            fee_currency = fee_code if fee_code != code else None
        psp = rr.optional(row["Psp Reference"])
        modification = rr.optional(row["Modification Reference"])
        lines.append(
            ReportLine(
                line_id=modification or psp or f"line-{number}",
                kind=kind,
                payment_id=psp,
                reference=rr.optional(row["Merchant Reference"]),
                amount_minor=amount,
                currency=code,
                fee_minor=fee,
                occurred_at=rr.timestamp(row["Creation Date"], _TIMES),
                raw=row,
                refund_id=modification if kind is LineKind.REFUND else None,
                fee_currency=fee_currency,
            )
        )
    return lines
