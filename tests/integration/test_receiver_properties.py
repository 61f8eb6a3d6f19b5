"""Whatever arrives at a webhook path: never a 5xx, never an inbox row without a valid signature."""

from __future__ import annotations

import ipaddress
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from ledger.models import InboxEvent
from webhook_receiver import create_app
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings

SIGNATURE_HEADERS = [
    "X-Razorpay-Signature",
    "X-Razorpay-Event-Id",
    "Stripe-Signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-paystack-signature",
    "paypal-transmission-id",
    "paypal-transmission-time",
    "paypal-transmission-sig",
    "paypal-cert-url",
    "paypal-auth-algo",
    "Content-Type",
    "X-Forwarded-For",
]
BUSINESS_KEYS = [
    "id",
    "type",
    "event",
    "data",
    "object",
    "payload",
    "metadata",
    "topup_id",
    "amount",
    "amount_received",
    "currency",
    "notificationItems",
    "NotificationRequestItem",
    "additionalData",
    "hmacSignature",
    "pspReference",
    "eventCode",
    "resource",
    "event_type",
    "pf_payment_id",
    "payment_status",
    "signature",
    "value",
]
header_values = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
) | st.sampled_from(["t=1,v1=00", "v1,AAAA", "sha256=", "0" * 64, "a" * 128, "-1", "1e309"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(BUSINESS_KEYS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
bodies = (
    st.binary(max_size=1024)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(st.tuples(st.sampled_from(BUSINESS_KEYS), st.text(max_size=12)), max_size=8).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "replace")
    )
)


@pytest.fixture(scope="module")
def every_gateway_client(database_url, broker_url):
    settings_ = ReceiverSettings(
        database_url=database_url,
        broker_url=broker_url,
        razorpay_webhook_secrets=("rzp_property",),
        stripe_webhook_secrets=("whsec_property",),
        yoco_webhook_secrets=("whsec_cHJvcGVydHktdGVzdA==",),
        paystack_webhook_secrets=("sk_property",),
        adyen_hmac_keys=("44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",),
        payfast_passphrases=("payfast-property",),
        paypal_webhook_ids=("WH-PROPERTY",),
        payfast_allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        max_content_length=4096,
    )
    return create_app(settings_).test_client()


def inbox_count(sessions):
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    gateway=st.sampled_from(sorted(ADAPTERS)),
    body=bodies,
    headers=st.dictionaries(st.sampled_from(SIGNATURE_HEADERS), header_values, max_size=6),
)
def test_no_input_yields_a_5xx_or_an_unsigned_inbox_row(
    every_gateway_client, sessions, gateway, body, headers
):
    before = inbox_count(sessions)
    response = every_gateway_client.post(f"/webhooks/{gateway}", data=body, headers=headers)
    assert response.status_code in {400, 401, 413}, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert inbox_count(sessions) == before
