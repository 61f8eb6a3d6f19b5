"""Each gateway's report reader, on files shaped as the gateway's documentation shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.report_line import LineKind
from webhook_receiver.errors import ReportUnreadable
from webhook_receiver.gateways import (
    adyen_report,
    paypal_report,
    paystack_report,
    razorpay_report,
    stripe_report,
)
from webhook_receiver.gateways.reports import READERS

REPORTS = Path(__file__).parent / "reports"


def sample(name: str) -> bytes:
    return (REPORTS / name).read_bytes()


def test_stripe_itemized_balance_change_report():
    lines = stripe_report.read(sample("stripe_itemized_balance_change.csv"))

    charge, refund, dispute, fee, payout = lines
    assert charge.kind is LineKind.CAPTURE
    assert charge.payment_id == "pi_3PAb1cLkdIwHu7ix0qwerty1"  # what the webhooks name
    assert charge.reference == "6f1c3a52-8b0e-4d43-9d7e-3c1f2a7b9e10"
    assert (charge.amount_minor, charge.currency, charge.fee_minor) == (5000, "ZAR", 175)
    assert charge.occurred_at == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    assert refund.kind is LineKind.REFUND
    assert (refund.refund_id, refund.payment_id) == (
        "re_3PAb1cLkdIwHu7ix1zxcvbnm",
        "pi_3PAb1cLkdIwHu7ix0qwerty1",
    )
    assert refund.amount_minor == 2000
    assert (dispute.kind, dispute.amount_minor, dispute.fee_minor) == (LineKind.DISPUTE, 7500, 1500)
    assert (fee.kind, fee.amount_minor) == (LineKind.FEE, 250)
    assert payout.kind is LineKind.OTHER


def test_stripe_report_without_a_documented_column_is_refused():
    broken = b"balance_transaction_id,currency,gross\ntxn_1,usd,1.00\n"
    with pytest.raises(ReportUnreadable, match="no column"):
        stripe_report.read(broken)


def test_stripe_amount_finer_than_the_currency_is_refused():
    text = (
        sample("stripe_itemized_balance_change.csv").decode().replace("50.00,1.75", "50.001,1.75")
    )
    with pytest.raises(ReportUnreadable, match="more decimals"):
        stripe_report.read(text.encode())


def test_razorpay_settlement_recon_json_from_the_api():
    payment, refund, transfer = razorpay_report.read(sample("razorpay_settlement_recon.json"))

    assert payment.kind is LineKind.CAPTURE
    assert (payment.payment_id, payment.amount_minor, payment.fee_minor) == (
        "pay_DEXrnipqTmWVGE",
        100000,
        2900,
    )
    assert payment.reference == "0b9a7c3e-2f41-4d1a-9e58-6c2d1f3a4b5c"
    assert payment.occurred_at == datetime.fromtimestamp(1567692556, UTC)
    assert refund.kind is LineKind.REFUND
    assert (refund.refund_id, refund.payment_id, refund.amount_minor) == (
        "rfnd_DGRcGzZSLyEdg1",
        "pay_DEXq1pACSqFxtS",
        242500,
    )
    assert refund.reference is None  # its notes are free text, not our reference
    assert transfer.kind is LineKind.OTHER


def test_razorpay_dashboard_csv_reads_like_the_api():
    payment, refund = razorpay_report.read(sample("razorpay_settlement_recon.csv"))

    assert (payment.kind, payment.payment_id, payment.amount_minor) == (
        LineKind.CAPTURE,
        "pay_DEXrnipqTmWVGE",
        100000,
    )
    assert payment.fee_minor == 2900
    assert payment.reference == "0b9a7c3e-2f41-4d1a-9e58-6c2d1f3a4b5c"
    assert payment.occurred_at == datetime(2019, 9, 5, 19, 39, 16, tzinfo=UTC)
    assert (refund.refund_id, refund.amount_minor) == ("rfnd_DGRcGzZSLyEdg1", 242500)


def test_razorpay_json_without_items_is_refused():
    with pytest.raises(ReportUnreadable, match="items"):
        razorpay_report.read(b'{"entity": "settlement", "id": "setl_1"}')


def test_paypal_transaction_detail_report():
    lines = paypal_report.read(sample("paypal_trr.csv"))

    capture, refund = lines  # the pending (status P) transaction is not settled money
    assert capture.kind is LineKind.CAPTURE
    assert (capture.payment_id, capture.amount_minor, capture.currency) == (
        "8MC585209K746392H",
        2500,
        "USD",
    )
    assert capture.fee_minor == 103
    assert capture.reference == "3d2b1f40-6c7e-4a9b-8f21-5e4d3c2b1a09"
    assert capture.occurred_at == datetime(2016, 6, 29, 17, 12, 44, tzinfo=UTC)
    assert refund.kind is LineKind.REFUND
    assert (refund.refund_id, refund.payment_id, refund.amount_minor) == (
        "1JU08902781691411",
        "8MC585209K746392H",
        1000,
    )
    assert refund.fee_minor == -41  # the fee PayPal gave back with the refund


def test_paypal_report_without_its_column_header_is_refused():
    with pytest.raises(ReportUnreadable, match="CH header"):
        paypal_report.read(b'"RH","2016/06/30 03:05:56 -0700","A","X","011",\n')


def test_paystack_settlement_transactions():
    first, second = paystack_report.read(sample("paystack_settlement_transactions.json"))

    assert first.kind is LineKind.CAPTURE
    assert (first.payment_id, first.amount_minor, first.currency, first.fee_minor) == (
        "T758347563479536",
        500000,
        "NGN",
        7500,
    )
    assert first.reference == "9e2c7b41-3a5d-4f6e-8c19-2b7a6d5e4f30"
    assert first.occurred_at == datetime(2024, 5, 1, 9, 12, 30, tzinfo=UTC)
    assert second.reference is None  # Paystack writes empty metadata as ""


def test_adyen_settlement_details_report():
    settled, refunded, chargeback, fee, payout = adyen_report.read(
        sample("adyen_settlement_detail_report_batch_4.csv")
    )

    assert settled.kind is LineKind.CAPTURE
    assert (settled.payment_id, settled.amount_minor, settled.currency) == (
        "8813702551707653",
        2500,
        "EUR",
    )
    assert settled.reference == "5a0e2c71-9d3b-4f8e-a6c4-1b2d3e4f5a6b"
    assert settled.fee_minor == 38  # commission, markup, scheme fees and interchange
    assert refunded.kind is LineKind.REFUND
    assert (refunded.refund_id, refunded.payment_id, refunded.amount_minor) == (
        "8613702611244102",
        "8813702551707653",
        1000,
    )
    assert (chargeback.kind, chargeback.amount_minor) == (LineKind.DISPUTE, 4000)
    assert (fee.kind, fee.amount_minor, fee.currency) == (LineKind.FEE, 120, "EUR")
    assert payout.kind is LineKind.OTHER


@pytest.mark.parametrize("gateway", sorted(READERS))
def test_every_reader_refuses_bytes_that_are_not_text(gateway):
    with pytest.raises(ReportUnreadable):
        READERS[gateway](b"\xff\xfe\x00garbage")
