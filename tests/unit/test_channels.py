"""What the channels send, checked without a network: the WhatsApp template request and the
Standard Webhooks signature, against the spec's reference library."""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook

from ledger.outbox import Notice
from workers.channels.webhook import secret_key, signature
from workers.channels.whatsapp import WhatsAppChannel

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def notice(event_type, data, whatsapp_to="+27821234567"):
    return Notice(
        id=7,
        event_type=event_type,
        key="k",
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        data=data,
        owner_id="acme",
        whatsapp_to=whatsapp_to,
    )


def channel():
    return WhatsAppChannel(
        api_url="https://graph.example/v21.0/",
        token="t",
        phone_number_id="42",
        templates={"topup": "t_topup", "payment": "t_paid", "refund": "t_refund"},
        language="en_ZA",
        timeout_s=1,
    )


def test_a_payment_confirmation_names_amount_reference_and_balance():
    paid = notice(
        "order.paid",
        {"currency": "ZAR", "amount_minor": 30000, "reference": "inv-9", "balance_minor": -150},
    )
    message = channel().message(paid)
    assert message["to"] == "27821234567"
    assert message["template"]["name"] == "t_paid"
    assert message["template"]["language"] == {"code": "en_ZA"}
    texts = [p["text"] for p in message["template"]["components"][0]["parameters"]]
    assert texts == ["ZAR 300.00", "inv-9", "-ZAR 1.50"]


def test_only_events_with_a_template_and_owners_with_a_number_are_sent():
    whatsapp = channel()
    refund = {"currency": "JPY", "amount_minor": 500, "balance_minor": 0}
    assert whatsapp.accepts(notice("order.refunded", refund))
    assert whatsapp.message(notice("order.refunded", refund))["template"]["name"] == "t_refund"
    assert not whatsapp.accepts(notice("wallet.negative", refund))
    assert not whatsapp.accepts(notice("order.refunded", refund, whatsapp_to=None))


def test_the_signature_is_what_the_reference_library_verifies():
    body = b'{"type":"wallet.credited","timestamp":"2026-12-01T00:00:00+00:00","data":{}}'
    timestamp = int(datetime.now(UTC).timestamp())
    other = "whsec_" + "c2Vjb25kLWtleQ=="
    header = signature((secret_key(other), secret_key(SECRET)), "evt_7", timestamp, body)
    assert header.count("v1,") == 2  # one per secret while a secret is rotated
    headers = {
        "webhook-id": "evt_7",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": header,
    }
    assert Webhook(SECRET).verify(body, headers)["type"] == "wallet.credited"
