"""PayPal's Transaction Detail Report (TRR, `TRR-yyyymmdd.sequence.version.CSV`).

Every row starts with its row type: `CH` is the column header, `SB` a transaction; the
others (report, file and section headers and footers) carry no transaction. Amounts are
unsigned integers of minor units, signed by the `... Debit or Credit` columns (`CR`/`DR`).
A capture's `Transaction ID` is the capture id PayPal's webhooks name; a refund's `PayPal
Reference ID` is the capture it refunds. `Custom Field` carries our reference (`custom_id`).
Only completed transactions (status `S`) count.
"""

from __future__ import annotations

import csv
import io

from ledger.report_line import LineKind, ReportLine
from webhook_receiver.errors import ReportUnreadable
from webhook_receiver.gateways import report_reader as rr

_REQUIRED = {
    "Transaction ID",
    "PayPal Reference ID",
    "Transaction Event Code",
    "Transaction Initiation Date",
    "Transaction Debit or Credit",
    "Gross Transaction Amount",
    "Gross Transaction Currency",
    "Fee Debit or Credit",
    "Fee Amount",
    "Transactional Status",
}
_TIMES = ("%Y/%m/%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S %z")
# T-codes: T00xx payments received, T11xx reversals (T1107 a refund), T12xx adjustments
# (T1201 a chargeback, T1202 its reversal), T01xx fees.
_REFUND_CODES = frozenset({"T1107"})
_DISPUTE_CODES = frozenset({"T1106", "T1201"})
_DISPUTE_REVERSAL_CODES = frozenset({"T1202"})


def read(data: bytes) -> list[ReportLine]:
    """The report's transactions; raises ReportUnreadable."""
    header: list[str] | None = None
    lines = []
    for number, fields in enumerate(csv.reader(io.StringIO(rr.text_of(data))), start=1):
        if not fields:
            continue
        row_type = fields[0].strip()
        if row_type == "CH":
            # Collapse runs of spaces: the specification's own sample spells one header
            # "Transaction  Debit or Credit".
            header = [" ".join(name.split()) for name in fields[1:]]
            missing = sorted(_REQUIRED - set(header))
            if missing:
                raise ReportUnreadable(f"line {number}: the header lacks {', '.join(missing)}")
        elif row_type == "SB":
            if header is None:
                raise ReportUnreadable(f"line {number}: a transaction before the CH header")
            row = dict(zip(header, (field.strip() for field in fields[1:]), strict=False))
            line = _line(number, row)
            if line is not None:
                lines.append(line)
    if header is None:
        raise ReportUnreadable("no CH header row: is this a Transaction Detail Report?")
    return lines


def _line(number: int, row: dict[str, str]) -> ReportLine | None:
    if row.get("Transactional Status") != "S":
        return None
    code = rr.currency(row["Gross Transaction Currency"], number)
    event = row["Transaction Event Code"]
    credit = row["Transaction Debit or Credit"] == "CR"
    if event in _REFUND_CODES:
        kind = LineKind.REFUND
    elif event in _DISPUTE_CODES:
        kind = LineKind.DISPUTE
    elif event in _DISPUTE_REVERSAL_CODES:
        kind = LineKind.DISPUTE_REVERSAL
    elif event.startswith("T00") and credit:
        kind = LineKind.CAPTURE
    elif event.startswith("T01"):
        kind = LineKind.FEE
    else:
        kind = LineKind.OTHER
    fee = rr.integer(row["Fee Amount"], number, "Fee Amount")
    if row["Fee Debit or Credit"] == "CR":
        fee = -fee
    transaction = rr.optional(row["Transaction ID"])
    if transaction is None:
        raise ReportUnreadable(f"line {number}: Transaction ID is empty")
    reference_id = rr.optional(row["PayPal Reference ID"])
    return ReportLine(
        line_id=transaction,
        kind=kind,
        payment_id=transaction if kind is LineKind.CAPTURE else reference_id,
        reference=rr.optional(row.get("Custom Field")),
        amount_minor=rr.integer(row["Gross Transaction Amount"], number, "Gross Amount"),
        currency=code,
        fee_minor=fee,
        occurred_at=rr.timestamp(row["Transaction Initiation Date"], _TIMES),
        raw=row,
        refund_id=transaction if kind is LineKind.REFUND else None,
        fee_currency=rr.optional(row.get("Fee Currency")),
    )
