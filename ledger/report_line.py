"""A line of a gateway's settlement or balance report, in the ledger's terms.

Each gateway's reader (beside its webhook adapter) turns the file a finance team downloads into
these lines; reconciliation matches them to the ledger without knowing any gateway's format.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class LineKind(enum.StrEnum):
    CAPTURE = "capture"  # money a customer paid
    REFUND = "refund"  # money given back to a customer
    DISPUTE = "dispute"  # a chargeback: money taken back by the customer's bank
    DISPUTE_REVERSAL = "dispute_reversal"
    FEE = "fee"  # a fee charged on its own line
    OTHER = "other"  # payouts, transfers, adjustments: no wallet's business


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One line; amounts are positive integers of minor units, signs are in `kind`.

    `payment_id` is the gateway's id of the payment as the webhooks name it (for a refund or
    a dispute, the payment it reverses); `refund_id` the gateway's id of a refund; `reference`
    our top-up id where the report carries it; `fee_minor` the fees the line cost.
    """

    line_id: str
    kind: LineKind
    payment_id: str | None
    reference: str | None
    amount_minor: int
    currency: str
    fee_minor: int
    occurred_at: datetime | None
    raw: dict[str, Any]
    refund_id: str | None = None
    fee_currency: str | None = None  # when the fee is charged in another currency

    @property
    def fee_in(self) -> str:
        return self.fee_currency or self.currency
