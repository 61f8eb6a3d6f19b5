"""The report reader of each gateway that documents a settlement or balance report."""

from __future__ import annotations

from collections.abc import Callable

from ledger.report_line import ReportLine
from webhook_receiver.gateways import (
    adyen_report,
    paypal_report,
    paystack_report,
    razorpay_report,
    stripe_report,
)

Reader = Callable[[bytes], list[ReportLine]]

READERS: dict[str, Reader] = {
    "adyen": adyen_report.read,
    "paypal": paypal_report.read,
    "paystack": paystack_report.read,
    "razorpay": razorpay_report.read,
    "stripe": stripe_report.read,
}
