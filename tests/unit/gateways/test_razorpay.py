"""Razorpay: hex HMAC-SHA256 of the raw body, the event id in an unsigned header."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
import razorpay

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.razorpay import RazorpayAdapter

from .support import load_vector, request, vectors_dir

SECRET = "rzp-webhook-secret"


def signed(body: bytes, secret: str = SECRET, event_id: str | None = "evt_Kx1") -> dict[str, str]:
    headers = {"X-Razorpay-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
    if event_id is not None:
        headers["X-Razorpay-Event-Id"] = event_id
    return headers


def captured(**payment: Any) -> bytes:
    entity = {
        "id": "pay_29QQoUBi66xm2f",
        "entity": "payment",
        "amount": 50000,
        "currency": "INR",
        "status": "captured",
        "method": "card",
        "wallet": None,
        "vpa": None,
        "notes": {"topup_id": "topup-42"},
        "created_at": 1567674599,
    } | payment
    event = {
        "entity": "event",
        "event": "payment.captured",
        "contains": ["payment"],
        "payload": {"payment": {"entity": entity}},
        "created_at": 1567674606,
    }
    return json.dumps(event).encode()


def test_the_sdk_vector_verifies_including_the_trailing_newline_of_its_body() -> None:
    vector = load_vector("razorpay_vector.json")
    body = (vectors_dir() / vector["body_file"]).read_bytes()
    assert body.endswith(b"\n")
    headers = {"X-Razorpay-Signature": vector["expected_signature"], "X-Razorpay-Event-Id": "e1"}
    adapter = RazorpayAdapter((vector["secret"],))

    [event] = adapter.parse(request(body, headers))

    # payment.authorized precedes capture: verified, recorded, but not money in.
    assert (event.kind, event.event_id) == (EventKind.OTHER, "e1")
    with pytest.raises(SignatureInvalid):
        adapter.parse(request(body.rstrip(b"\n"), headers))


def test_the_razorpay_sdk_accepts_what_a_sample_signs() -> None:
    sample = RazorpayAdapter.sample(SECRET, amount_minor=100, currency="INR", reference="t-1")
    utility = razorpay.Client(auth=("rzp_test_key", "unused")).utility

    # The SDK raises TypeError on bytes, so it gets text.
    assert utility.verify_webhook_signature(
        sample.body.decode(), sample.headers["X-Razorpay-Signature"], SECRET
    )


def test_a_captured_payment_is_normalised() -> None:
    body = captured()

    [event] = RazorpayAdapter((SECRET,)).parse(request(body, signed(body)))

    assert event.gateway == "razorpay"
    assert event.event_id == "evt_Kx1"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_id == "pay_29QQoUBi66xm2f"
    assert (event.amount_minor, event.currency) == (50000, "INR")
    assert event.reference == "topup-42"
    assert event.payment_method == "card"
    assert event.occurred_at is not None
    assert event.occurred_at.timestamp() == 1567674606
    assert event.payload == json.loads(body)


@pytest.mark.parametrize(
    ("payment", "method"),
    [
        ({"method": "upi", "vpa": "gaurav.kumar@okhdfcbank"}, "google_pay"),
        ({"method": "upi", "vpa": "gaurav.kumar@ybl"}, "upi"),
        ({"method": "wallet", "wallet": "googlepay"}, "google_pay"),
        ({"method": "card", "provider": "google_pay"}, "google_pay"),
        ({"method": "netbanking"}, "netbanking"),
    ],
)
def test_google_pay_is_recognised_in_a_payment(payment: dict[str, Any], method: str) -> None:
    body = captured(**payment)

    [event] = RazorpayAdapter((SECRET,)).parse(request(body, signed(body)))

    assert event.payment_method == method


def test_a_processed_refund_names_the_refunded_payment_and_our_reference() -> None:
    refund = {
        "id": "rfnd_FP8QHiV938haTz",
        "entity": "refund",
        "amount": 300,
        "currency": "INR",
        "payment_id": "pay_29QQoUBi66xm2f",
        "notes": [],  # Razorpay sends empty notes as a list
        "status": "processed",
    }
    payment = json.loads(captured())["payload"]["payment"]
    body = json.dumps(
        {"event": "refund.processed", "payload": {"refund": {"entity": refund}, "payment": payment}}
    ).encode()

    [event] = RazorpayAdapter((SECRET,)).parse(request(body, signed(body)))

    assert event.kind is EventKind.REFUND_SUCCEEDED
    assert (event.payment_id, event.amount_minor, event.reference) == (
        "pay_29QQoUBi66xm2f",
        300,
        "topup-42",
    )


def test_empty_notes_leave_the_reference_unknown() -> None:
    body = captured(notes=[])

    [event] = RazorpayAdapter((SECRET,)).parse(request(body, signed(body)))

    assert event.reference is None


def test_a_verified_event_without_its_event_id_header_is_malformed() -> None:
    body = captured()

    with pytest.raises(MalformedPayload):
        RazorpayAdapter((SECRET,)).parse(request(body, signed(body, event_id=None)))


def test_an_unsigned_event_without_its_event_id_header_is_refused_as_unsigned() -> None:
    body = captured()

    with pytest.raises(SignatureInvalid):
        RazorpayAdapter((SECRET,)).parse(request(body, signed(body, "wrong", event_id=None)))


@pytest.mark.parametrize(
    "payment",
    [{"amount": 500.0}, {"amount": "500"}, {"amount": 0}, {"amount": 10**16}, {"currency": "XYZ"}],
)
def test_a_signed_payment_with_an_unusable_amount_is_malformed(payment: dict[str, Any]) -> None:
    body = captured(**payment)

    with pytest.raises(MalformedPayload):
        RazorpayAdapter((SECRET,)).parse(request(body, signed(body)))
