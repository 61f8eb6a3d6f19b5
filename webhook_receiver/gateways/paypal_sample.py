"""Signed PayPal sample events, for tests, benchmarks and `walletctl webhook send`.

PayPal signs with a private key only PayPal holds, so samples are signed with a key the caller
provides; a receiver accepts them only if its certificate fetcher serves the matching
certificate (tests inject one), or in postback mode against a server playing PayPal.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
import zlib
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ledger.money import Money
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.base import SignedSample
from webhook_receiver.gateways.paypal import AUTH_ALGO

_SAMPLE_EVENTS = {
    EventKind.PAYMENT_SUCCEEDED: ("PAYMENT.CAPTURE.COMPLETED", "capture", "COMPLETED"),
    EventKind.PAYMENT_FAILED: ("PAYMENT.CAPTURE.DENIED", "capture", "DECLINED"),
    EventKind.REFUND_SUCCEEDED: ("PAYMENT.CAPTURE.REFUNDED", "refund", "COMPLETED"),
    EventKind.OTHER: ("CHECKOUT.ORDER.APPROVED", "checkout-order", "APPROVED"),
}


def signed_sample(
    webhook_id: str,
    *,
    private_key_pem: bytes | None,
    cert_url: str,
    amount_minor: int,
    currency: str,
    reference: str,
    event_id: str | None,
    kind: EventKind,
    now: float | None,
    payment_id: str | None = None,
) -> SignedSample:
    """See PaypalAdapter.sample."""
    if private_key_pem is None:
        raise ValueError("a PayPal sample is signed with private_key_pem; none was given")
    if currency == "ZAR":
        raise ValueError("PayPal does not support ZAR")
    if kind not in _SAMPLE_EVENTS:
        raise ValueError(f"PayPal sends no {kind} event")
    key = _signing_key(private_key_pem)
    sent_at = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    sent_text = sent_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    event_type, resource_type, status = _SAMPLE_EVENTS[kind]
    capture_id = payment_id or uuid.uuid4().hex[:17].upper()
    resource: dict[str, Any] = {
        "id": capture_id if resource_type == "capture" else uuid.uuid4().hex[:17].upper(),
        "status": status,
        "amount": {
            "currency_code": currency,
            "value": Money(amount_minor, currency).format_major(),
        },
        "custom_id": reference,
        "create_time": sent_text,
    }
    if resource_type == "refund":
        up = f"https://api.paypal.com/v2/payments/captures/{capture_id}"
        resource["links"] = [{"href": up, "rel": "up", "method": "GET"}]
    event = {
        "id": event_id or f"WH-{uuid.uuid4().hex[:24].upper()}",
        "event_version": "1.0",
        "create_time": sent_text,
        "resource_type": resource_type,
        "event_type": event_type,
        "summary": f"{event_type} for {resource['amount']['value']} {currency}",
        "resource": resource,
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    transmission_id = str(uuid.uuid4())
    signed = f"{transmission_id}|{sent_text}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}"
    signature = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    headers = {
        "PAYPAL-TRANSMISSION-ID": transmission_id,
        "PAYPAL-TRANSMISSION-TIME": sent_text,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": AUTH_ALGO,
    }
    return SignedSample(
        body=body, headers=headers, content_type="application/json", payment_id=capture_id
    )


@functools.lru_cache(maxsize=4)
def _signing_key(private_key_pem: bytes) -> rsa.RSAPrivateKey:
    # Loading checks the key, which is slow: benchmarks sign many samples with one key.
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("PayPal signs with RSA keys")
    return key
