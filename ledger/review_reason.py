"""Review reasons grouped into a bounded set of codes, for filters and the /metrics gauge.

A parked event's reason is free text written where it was set aside (settlement, the ledger's
refusal, a reconciliation); its code is read from that text by one table of SQL LIKE patterns,
used both in SQL (to count and filter without reading every row into Python) and in Python.
A reason no pattern knows is `other`, so the set of codes never grows with the data.
"""

from __future__ import annotations

import enum
import re


class ReviewCode(enum.StrEnum):
    UNKNOWN_REFERENCE = "unknown_reference"
    GATEWAY_MISMATCH = "gateway_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    TOPUP_ALREADY_SETTLED = "topup_already_settled"
    PAYMENT_ALREADY_CLAIMED = "payment_already_claimed"
    NO_PAYMENT_ID = "no_payment_id"
    NO_AMOUNT = "no_amount"
    REFUND_EXCEEDS_CREDIT = "refund_exceeds_credit"
    REFUND_FAILED_AFTER_REVERSAL = "refund_failed_after_reversal"
    REFUSED_BY_LEDGER = "refused_by_ledger"
    REPORT_DISCREPANCY = "report_discrepancy"
    PAYLOAD_CONFLICT = "payload_conflict"
    OTHER = "other"


# First match wins. Each pattern is the start of the reason text the code above writes.
PATTERNS: tuple[tuple[str, ReviewCode], ...] = (
    ("no top-up matches reference %", ReviewCode.UNKNOWN_REFERENCE),
    ("top-up % was to be paid via %", ReviewCode.GATEWAY_MISMATCH),
    ("top-up % is in %, the event in %", ReviewCode.CURRENCY_MISMATCH),
    ("captured % but top-up % was for %", ReviewCode.AMOUNT_MISMATCH),
    ("top-up % was settled by payment % already", ReviewCode.TOPUP_ALREADY_SETTLED),
    ("payment % settled top-up %", ReviewCode.PAYMENT_ALREADY_CLAIMED),
    ("the event names no gateway payment%", ReviewCode.NO_PAYMENT_ID),
    ("the refund carries no amount%", ReviewCode.NO_AMOUNT),
    ("refunds of top-up % would exceed %", ReviewCode.REFUND_EXCEEDS_CREDIT),
    ("a refund of top-up % failed after its reversal%", ReviewCode.REFUND_FAILED_AFTER_REVERSAL),
    ("refused by the ledger:%", ReviewCode.REFUSED_BY_LEDGER),
    ("report: %", ReviewCode.REPORT_DISCREPANCY),
)


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("%")), re.DOTALL)


_REGEXES = tuple((_regex(pattern), code) for pattern, code in PATTERNS)


def code_of(reason: str | None) -> ReviewCode:
    """The code of a parked event's reason."""
    for regex, code in _REGEXES:
        if reason is not None and regex.fullmatch(reason):
            return code
    return ReviewCode.OTHER


def code_sql(column: str) -> str:
    """A SQL expression giving the code of the reason in `column` (as `code_of` does)."""
    arms = " ".join(
        f"WHEN {column} LIKE '{pattern.replace(chr(39), chr(39) * 2)}' THEN '{code.value}'"
        for pattern, code in PATTERNS
    )
    return f"(CASE {arms} ELSE '{ReviewCode.OTHER.value}' END)"
