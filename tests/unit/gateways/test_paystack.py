"""Paystack: hex HMAC-SHA512 of the raw body; the dedupe key joins the event and data.id."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.paystack import PaystackAdapter

from .support import request

SECRET = "sk_test_5f1d4a7b2c"


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"x-paystack-signature": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()}


def charge(event: str = "charge.success", **data: Any) -> bytes:
    fields = {
        "id": 302961,
        "domain": "live",
        "status": "success",
        "reference": "qTPrJoy9Bx",
        "amount": 10000,
        "currency": "NGN",
        "channel": "card",
        "metadata": {"topup_id": "topup-11"},
        "paid_at": "2016-09-30T21:10:19.000Z",
        "created_at": "2016-09-30T21:09:56.000Z",
        "authorization": {"channel": "card", "card_type": "visa"},
    } | data
    return json.dumps({"event": event, "data": fields}).encode()


def parse(body: bytes) -> Any:
    [event] = PaystackAdapter((SECRET,)).parse(request(body, signed(body)))
    return event


def test_a_successful_charge_is_normalised() -> None:
    event = parse(charge())

    assert event.gateway == "paystack"
    assert event.event_id == "charge.success:302961"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_id == "qTPrJoy9Bx"
    assert (event.amount_minor, event.currency, event.reference) == (10000, "NGN", "topup-11")
    assert event.payment_method == "card"
    assert event.occurred_at is not None
    assert event.occurred_at.isoformat() == "2016-09-30T21:10:19+00:00"


@pytest.mark.parametrize(
    ("metadata", "reference"),
    [
        ({"topup_id": "topup-11"}, "topup-11"),
        (json.dumps({"topup_id": "topup-12"}), "topup-12"),
        ("", None),
        ("{not json", None),
        (0, None),
    ],
)
def test_metadata_may_arrive_as_an_object_or_as_json_text(metadata: Any, reference: Any) -> None:
    assert parse(charge(metadata=metadata)).reference == reference


def test_the_same_transaction_in_two_events_has_two_dedupe_keys() -> None:
    success = parse(charge("charge.success"))
    failure = parse(charge("charge.failed", status="failed"))

    assert failure.kind is EventKind.PAYMENT_FAILED
    assert success.event_id != failure.event_id


def test_a_refund_points_back_to_the_transaction_reference() -> None:
    refund = {
        "status": "processed",
        "transaction_reference": "qTPrJoy9Bx",
        "refund_reference": "rf_3h0z",
        "amount": 4000,
        "currency": "NGN",
    }
    body = json.dumps({"event": "refund.processed", "data": refund}).encode()

    event = parse(body)

    assert event.kind is EventKind.REFUND_SUCCEEDED
    assert event.event_id == "refund.processed:rf_3h0z"
    assert (event.payment_id, event.amount_minor, event.reference) == ("qTPrJoy9Bx", 4000, None)


def test_a_charge_made_with_google_pay_is_recognised() -> None:
    assert parse(charge(channel="google_pay")).payment_method == "google_pay"


def test_a_sha256_signature_is_the_wrong_length() -> None:
    body = charge()
    headers = {"x-paystack-signature": hmac.new(SECRET.encode(), body, "sha256").hexdigest()}

    with pytest.raises(SignatureInvalid):
        PaystackAdapter((SECRET,)).parse(request(body, headers))


@pytest.mark.parametrize(
    "data",
    [{"id": None}, {"amount": "10000"}, {"amount": -5}, {"currency": "naira"}, {"reference": ""}],
)
def test_a_signed_charge_missing_what_the_ledger_needs_is_malformed(data: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        parse(charge(**data))
