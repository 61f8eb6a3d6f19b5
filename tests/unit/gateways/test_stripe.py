"""Stripe: `t=,v1=` signatures of `t.body`, a timestamp bounded on both sides."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stripe

from webhook_receiver.errors import MalformedPayload, SignatureInvalid, TimestampOutOfTolerance
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.stripe import StripeAdapter

from .support import NOW, clock, load_vector, request

SECRET = "whsec_test_secret_for_walletpipe"


def adapter(now: float = NOW) -> StripeAdapter:
    return StripeAdapter((SECRET,), clock=clock(now))


def event(event_type: str, obj: dict[str, Any], **data: Any) -> str:
    body = {
        "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
        "object": "event",
        "created": int(NOW),
        "type": event_type,
        "data": {"object": obj, **data},
    }
    return json.dumps(body, indent=2)


def sdk_signed(payload: str, now: float = NOW) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(payload, SECRET, int(now))
    return {"Stripe-Signature": header}


def intent(**fields: Any) -> dict[str, Any]:
    return {
        "id": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": 2000,
        "currency": "usd",
        "metadata": {"topup_id": "topup-7"},
        "status": "succeeded",
    } | fields


def refund(**fields: Any) -> dict[str, Any]:
    return {
        "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ",
        "object": "refund",
        "amount": 500,
        "currency": "usd",
        "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "charge": "ch_1NirD82eZvKYlo2CIvbtLWuY",
        "metadata": {},
        "status": "succeeded",
    } | fields


def test_the_sdk_vector_verifies_at_its_own_time_and_not_now() -> None:
    vector = load_vector("stripe_vector.json")
    body = vector["payload"].encode()
    headers = {"Stripe-Signature": vector["stripe_signature_header"]}

    # The SDK fixture is a bare event without a type: the signature passes, the content not.
    with pytest.raises(MalformedPayload):
        StripeAdapter((vector["secret"],), clock=clock(vector["timestamp"])).parse(
            request(body, headers)
        )
    with pytest.raises(SignatureInvalid) as wrong_secret:
        StripeAdapter((SECRET,), clock=clock(vector["timestamp"])).parse(request(body, headers))
    assert not isinstance(wrong_secret.value, TimestampOutOfTolerance)
    with pytest.raises(TimestampOutOfTolerance):
        StripeAdapter((vector["secret"],), clock=clock(NOW)).parse(request(body, headers))


def test_an_sdk_signed_succeeded_payment_intent_is_normalised() -> None:
    payload = event("payment_intent.succeeded", intent())

    [result] = adapter().parse(request(payload.encode(), sdk_signed(payload)))

    assert result.gateway == "stripe"
    assert result.event_id == "evt_1NG8Du2eZvKYlo2CUI79vXWy"
    assert result.kind is EventKind.PAYMENT_SUCCEEDED
    assert result.payment_id == "pi_3MtwBwLkdIwHu7ix28a3tqPa"
    assert (result.amount_minor, result.currency) == (2000, "USD")
    assert result.reference == "topup-7"
    assert result.payment_method is None
    assert result.occurred_at is not None
    assert result.occurred_at.timestamp() == NOW


def test_stripes_sdk_accepts_what_a_sample_signs() -> None:
    now = time.time()
    sample = StripeAdapter.sample(
        SECRET, amount_minor=100, currency="EUR", reference="t", event_id="evt_x", now=now
    )

    constructed = stripe.Webhook.construct_event(
        sample.body, sample.headers["Stripe-Signature"], SECRET
    )

    assert constructed.id == "evt_x"


def test_a_future_timestamp_stripes_sdk_would_accept_is_refused() -> None:
    now = time.time()  # the SDK reads the real clock
    payload = event("payment_intent.succeeded", intent())
    headers = sdk_signed(payload, now=now + 3600)
    # Stripe's SDK checks only for old timestamps; an hour ahead passes it.
    stripe.WebhookSignature.verify_header(payload, headers["Stripe-Signature"], SECRET, 300)

    with pytest.raises(TimestampOutOfTolerance):
        adapter(now).parse(request(payload.encode(), headers))


def test_any_of_several_v1_signatures_may_match_and_other_schemes_are_ignored() -> None:
    payload = event("payment_intent.succeeded", intent())
    good = sdk_signed(payload)["Stripe-Signature"].split(",v1=")[1]
    header = f"t={int(NOW)},v1={'0' * 64},v0={'1' * 64},v1={good}"

    [result] = adapter().parse(request(payload.encode(), {"Stripe-Signature": header}))

    assert result.kind is EventKind.PAYMENT_SUCCEEDED


@pytest.mark.parametrize(
    "header",
    [
        f"v1={'0' * 64}",  # no timestamp
        f"t={int(NOW)}",  # no v1
        f"t={int(NOW)},t={int(NOW)},v1={'0' * 64}",  # two timestamps
        f"t=soon,v1={'0' * 64}",
        f"t={int(NOW)},v1=zz",
        f"t={int(NOW)};v1={'0' * 64}",
    ],
)
def test_a_malformed_stripe_signature_header_is_refused(header: str) -> None:
    payload = event("payment_intent.succeeded", intent())

    with pytest.raises(SignatureInvalid):
        adapter().parse(request(payload.encode(), {"Stripe-Signature": header}))


@pytest.mark.parametrize(
    ("charge_shape", "method"),
    [
        (
            {
                "latest_charge": {
                    "payment_method_details": {
                        "type": "card",
                        "card": {"wallet": {"type": "google_pay"}},
                    }
                }
            },
            "google_pay",
        ),
        (
            {
                "charges": {
                    "data": [{"payment_method_details": {"type": "card", "card": {"wallet": None}}}]
                }
            },
            "card",
        ),
        ({"latest_charge": "ch_unexpanded"}, None),
        ({"charges": {"data": []}}, None),
    ],
)
def test_google_pay_shows_as_the_card_wallet_of_the_charge(
    charge_shape: dict[str, Any], method: str | None
) -> None:
    payload = event("payment_intent.succeeded", intent(**charge_shape))

    [result] = adapter().parse(request(payload.encode(), sdk_signed(payload)))

    assert result.payment_method == method


def test_a_failed_payment_intent_is_a_failed_payment_of_its_amount() -> None:
    failed = intent(
        amount_received=0,
        status="requires_payment_method",
        last_payment_error={"payment_method": {"type": "card", "card": {"wallet": None}}},
    )
    payload = event("payment_intent.payment_failed", failed)

    [result] = adapter().parse(request(payload.encode(), sdk_signed(payload)))

    assert (result.kind, result.amount_minor, result.payment_method) == (
        EventKind.PAYMENT_FAILED,
        2000,
        "card",
    )


def test_a_zero_decimal_currency_keeps_its_amount() -> None:
    payload = event(
        "payment_intent.succeeded", intent(amount=500, amount_received=500, currency="jpy")
    )

    [result] = adapter().parse(request(payload.encode(), sdk_signed(payload)))

    assert (result.amount_minor, result.currency) == (500, "JPY")


@pytest.mark.parametrize(
    ("event_type", "obj", "data", "kind"),
    [
        ("refund.created", refund(), {}, EventKind.REFUND_SUCCEEDED),
        ("refund.created", refund(status="pending"), {}, EventKind.OTHER),
        (
            "refund.updated",
            refund(),
            {"previous_attributes": {"status": "pending"}},
            EventKind.REFUND_SUCCEEDED,
        ),
        ("refund.updated", refund(), {"previous_attributes": {"metadata": {}}}, EventKind.OTHER),
        (
            "refund.updated",
            refund(status="failed"),
            {"previous_attributes": {"status": "succeeded"}},
            EventKind.REFUND_FAILED,
        ),
        # It repeats refund.updated for the same change; reading both would count twice.
        (
            "charge.refund.updated",
            refund(status="failed"),
            {"previous_attributes": {"status": "pending"}},
            EventKind.OTHER,
        ),
        # Cumulative amount_refunded; refund.created reports the same refund once.
        (
            "charge.refunded",
            {"id": "ch_1", "object": "charge", "amount_refunded": 500},
            {},
            EventKind.OTHER,
        ),
    ],
)
def test_each_refund_outcome_is_reported_by_exactly_one_event(
    event_type: str, obj: dict[str, Any], data: dict[str, Any], kind: EventKind
) -> None:
    payload = event(event_type, obj, **data)

    [result] = adapter().parse(request(payload.encode(), sdk_signed(payload)))

    assert result.kind is kind
    if kind is not EventKind.OTHER:
        assert (result.payment_id, result.amount_minor, result.currency) == (
            "pi_3MtwBwLkdIwHu7ix28a3tqPa",
            500,
            "USD",
        )
