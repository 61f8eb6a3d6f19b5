"""Yoco: Standard Webhooks signatures over `id.timestamp.body`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.yoco import YocoAdapter

from .support import NOW, clock, load_vector, request

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def adapter(now: float = NOW) -> YocoAdapter:
    return YocoAdapter((SECRET,), clock=clock(now))


def sdk_signed(body: str, msg_id: str = "msg_2bYhMXLWqyKfZ", now: float = NOW) -> dict[str, str]:
    signature = Webhook(SECRET).sign(msg_id, datetime.fromtimestamp(now, UTC), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }


def yoco_event(event_type: str = "payment.succeeded", **payload: Any) -> str:
    return json.dumps(
        {
            "createdDate": "2025-06-15T15:06:40.123456Z",
            "id": "evt_Qv4Ml8vBvYXE",
            "type": event_type,
            "payload": {
                "id": "p_7vJqLOOwAxsRkt",
                "type": "payment",
                "amount": 2999,
                "currency": "ZAR",
                "status": "succeeded",
                "mode": "live",
                "metadata": {"checkoutId": "ch_yN3d", "topup_id": "topup-8"},
                "paymentMethodDetails": {"type": "card", "card": {"maskedCard": "****1111"}},
            }
            | payload,
        }
    )


def test_the_standard_webhooks_vector_verifies_at_its_own_time() -> None:
    vector = load_vector("standardwebhooks_vector.json")
    headers = {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        # An entry of a version we do not know is skipped, as the standard asks.
        "webhook-signature": f"v2,Zm9v {vector['expected_signature']}",
    }
    body = vector["payload"].encode()

    # The library's fixture is no Yoco event: the signature passes, the content not.
    with pytest.raises(MalformedPayload):
        YocoAdapter((vector["secret"],), clock=clock(vector["timestamp"])).parse(
            request(body, headers)
        )
    with pytest.raises(SignatureInvalid):
        YocoAdapter(("whsec_b3RoZXI=",), clock=clock(vector["timestamp"])).parse(
            request(body, headers)
        )


def test_an_sdk_signed_payment_is_normalised() -> None:
    body = yoco_event()

    [event] = adapter().parse(request(body.encode(), sdk_signed(body)))

    assert event.gateway == "yoco"
    assert event.event_id == "msg_2bYhMXLWqyKfZ"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_id == "p_7vJqLOOwAxsRkt"
    assert (event.amount_minor, event.currency, event.reference) == (2999, "ZAR", "topup-8")
    assert event.payment_method == "card"
    assert event.occurred_at == datetime(2025, 6, 15, 15, 6, 40, 123456, tzinfo=UTC)


def test_the_standard_webhooks_library_accepts_what_a_sample_signs() -> None:
    sample = YocoAdapter.sample(SECRET, amount_minor=100, currency="ZAR", reference="t")

    assert Webhook(SECRET).verify(sample.body, dict(sample.headers))["type"] == "payment.succeeded"


def test_a_refund_names_the_refunded_payment() -> None:
    body = yoco_event("refund.succeeded", id="rf_1", type="refund", paymentId="p_original")

    [event] = adapter().parse(request(body.encode(), sdk_signed(body)))

    assert (event.kind, event.payment_id) == (EventKind.REFUND_SUCCEEDED, "p_original")


def test_any_v1_entry_of_the_signature_header_may_match() -> None:
    body = yoco_event()
    headers = sdk_signed(body)
    headers["webhook-signature"] = f"v1,AAAA {headers['webhook-signature']}"

    [event] = adapter().parse(request(body.encode(), headers))

    assert event.kind is EventKind.PAYMENT_SUCCEEDED


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-signature", "v1"),  # no comma
        ("webhook-signature", "v1,not base64!"),
        ("webhook-signature", "v2,Zm9v"),  # no v1 at all
        ("webhook-timestamp", "1.75e9"),
        ("webhook-timestamp", "-1750000000"),
        ("webhook-timestamp", ""),
        ("webhook-id", ""),
    ],
)
def test_malformed_standard_webhooks_headers_are_refused(header: str, value: str) -> None:
    body = yoco_event()
    headers = sdk_signed(body) | {header: value}

    with pytest.raises(SignatureInvalid):
        adapter().parse(request(body.encode(), headers))


def test_the_message_id_is_signed() -> None:
    body = yoco_event()
    headers = sdk_signed(body) | {"webhook-id": "msg_replayed_under_new_id"}

    with pytest.raises(SignatureInvalid):
        adapter().parse(request(body.encode(), headers))


def test_the_library_and_the_adapter_agree_on_a_live_signature() -> None:
    now = time.time()
    body = yoco_event()
    headers = sdk_signed(body, now=now)

    Webhook(SECRET).verify(body, headers)
    [event] = adapter(now).parse(request(body.encode(), headers))

    assert event.event_id == headers["webhook-id"]
