"""Adyen: a base64 HMAC-SHA256 per notification item, every item verified."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from Adyen.util import generate_notification_sig, is_valid_hmac_notification

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.adyen import AdyenAdapter, signing_string

from .support import load_vector, request

KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


def item(**fields: Any) -> dict[str, Any]:
    return {
        "amount": {"currency": "EUR", "value": 1130},
        "eventCode": "AUTHORISATION",
        "eventDate": "2025-06-15T17:06:40+02:00",
        "merchantAccountCode": "WalletpipeECOM",
        "merchantReference": "topup-21",
        "paymentMethod": "visa",
        "pspReference": "7914073381342284",
        "success": "true",
    } | fields


def sdk_signed(notification: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    """The item with the hmacSignature Adyen's own library computes for it."""
    signature = generate_notification_sig(notification, key).decode()
    additional = notification.get("additionalData", {}) | {"hmacSignature": signature}
    return notification | {"additionalData": additional}


def body(*items: dict[str, Any]) -> bytes:
    wrapped = [{"NotificationRequestItem": i} for i in items]
    return json.dumps({"live": "false", "notificationItems": wrapped}).encode()


def parse(*items: dict[str, Any]) -> list[Any]:
    return AdyenAdapter((KEY,)).parse(request(body(*items)))


def test_the_sdk_vector_signs_the_documented_string_and_verifies() -> None:
    vector = load_vector("adyen_vector.json")
    signed_item = vector["item"] | {
        "additionalData": {"hmacSignature": vector["expected_hmacSignature"]}
    }

    [event] = AdyenAdapter((vector["hmac_key_hex"],)).parse(request(body(signed_item)))

    assert signing_string(vector["item"]) == vector["signed_string"]
    assert event.gateway == "adyen"
    assert event.event_id == "7914073381342284:AUTHORISATION"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_id == "7914073381342284"
    assert (event.amount_minor, event.currency) == (1130, "EUR")
    assert event.reference == "TestPayment-1407325143704"


def test_an_sdk_signed_authorisation_is_normalised() -> None:
    notification = sdk_signed(item())

    [event] = parse(notification)

    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert (event.amount_minor, event.currency, event.reference) == (1130, "EUR", "topup-21")
    assert event.payment_method == "visa"
    assert event.occurred_at is not None
    assert event.occurred_at.isoformat() == "2025-06-15T17:06:40+02:00"
    assert event.payload == notification


def test_adyens_library_accepts_what_a_sample_signs() -> None:
    sample = AdyenAdapter.sample(KEY, amount_minor=500, currency="EUR", reference="t-1")

    assert is_valid_hmac_notification(json.loads(sample.body), KEY)


def test_colons_and_backslashes_in_references_are_signed_as_adyens_library_does() -> None:
    notification = sdk_signed(item(merchantReference="order:7\\b", pspReference="psp:1"))

    [event] = parse(notification)

    assert event.reference == "order:7\\b"


def test_every_item_of_a_batch_becomes_an_event() -> None:
    refund = item(eventCode="REFUND", pspReference="8815", originalReference="7914073381342284")

    events = parse(sdk_signed(item()), sdk_signed(refund))

    assert [(e.kind, e.event_id, e.payment_id) for e in events] == [
        (EventKind.PAYMENT_SUCCEEDED, "7914073381342284:AUTHORISATION", "7914073381342284"),
        (EventKind.REFUND_SUCCEEDED, "8815:REFUND", "7914073381342284"),
    ]


@pytest.mark.parametrize("bad", ["unsigned", "wrong key", "no additionalData"])
def test_one_unverified_item_fails_the_whole_batch(bad: str) -> None:
    second = item(pspReference="8815")
    if bad == "unsigned":
        second["additionalData"] = {"hmacSignature": ""}
    elif bad == "wrong key":
        second = sdk_signed(second, key="00" * 32)

    with pytest.raises(SignatureInvalid):
        parse(sdk_signed(item()), second)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", {"currency": "EUR", "value": 113000}),
        ("amount", {"currency": "USD", "value": 1130}),
        ("merchantReference", "topup-22"),
        ("pspReference", "7914073381342285"),
        ("eventCode", "REFUND"),
        ("success", "false"),
    ],
)
def test_changing_a_signed_field_breaks_the_signature(field: str, value: Any) -> None:
    tampered = copy.deepcopy(sdk_signed(item()))
    tampered[field] = value

    with pytest.raises(SignatureInvalid):
        parse(tampered)


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"success": "false"}, EventKind.PAYMENT_FAILED),
        ({"eventCode": "REFUND"}, EventKind.REFUND_SUCCEEDED),
        ({"eventCode": "REFUND", "success": "false"}, EventKind.REFUND_FAILED),
        ({"eventCode": "REFUND_FAILED"}, EventKind.REFUND_FAILED),
        ({"eventCode": "CAPTURE"}, EventKind.OTHER),  # automatic capture: AUTHORISATION counts
        ({"amount": {"currency": "EUR", "value": 0}}, EventKind.OTHER),  # a card check
        ({"eventCode": "REPORT_AVAILABLE"}, EventKind.OTHER),
    ],
)
def test_the_event_code_and_success_decide_the_kind(
    fields: dict[str, Any], kind: EventKind
) -> None:
    [event] = parse(sdk_signed(item(**fields)))

    assert event.kind is kind


@pytest.mark.parametrize(
    "fields",
    [
        {"paymentMethod": "googlepay"},
        {"paymentMethod": "paywithgoogle"},
        {"additionalData": {"paymentMethodVariant": "googlepay_visa"}},
    ],
)
def test_google_pay_is_recognised(fields: dict[str, Any]) -> None:
    [event] = parse(sdk_signed(item(**fields)))

    assert event.payment_method == "google_pay"


def signed_as(**fields: Any) -> dict[str, Any]:
    """An item with odd signed fields and some signature: the fields are refused first."""
    return item(**fields) | {
        "additionalData": {"hmacSignature": "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0="}
    }


@pytest.mark.parametrize(
    "document",
    [
        {"live": "false", "notificationItems": []},
        {"live": "false"},
        {"notificationItems": [{"NotificationRequestItem": "text"}]},
        {"notificationItems": [{"NotificationRequestItem": signed_as(amount={"value": "1130"})}]},
        {"notificationItems": [{"NotificationRequestItem": signed_as(success=True)}]},
        {"notificationItems": [{"NotificationRequestItem": item()}] * 101},
    ],
)
def test_a_document_that_is_not_a_notification_batch_is_malformed(
    document: dict[str, Any],
) -> None:
    with pytest.raises(MalformedPayload):
        AdyenAdapter((KEY,)).parse(request(json.dumps(document).encode()))
