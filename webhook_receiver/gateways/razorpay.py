"""Razorpay: hex HMAC-SHA256 of the raw body in X-Razorpay-Signature; no signed timestamp.

Razorpay signs no time, so a captured request can be replayed at will; replays are harmless
only because the event id (the unsigned `x-razorpay-event-id` header) is the dedupe key.
Amounts are already minor units (paise).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample

_KINDS = {
    "payment.captured": EventKind.PAYMENT_SUCCEEDED,
    "payment.failed": EventKind.PAYMENT_FAILED,
    "refund.processed": EventKind.REFUND_SUCCEEDED,
    "refund.failed": EventKind.REFUND_FAILED,
}
_SAMPLE_EVENTS = {kind: event for event, kind in _KINDS.items()} | {
    EventKind.OTHER: "payment.authorized"
}
# Razorpay does not name the UPI app, but these UPI handles belong to Google Pay alone.
_GOOGLE_PAY_UPI_HANDLES = ("@okaxis", "@okhdfcbank", "@okicici", "@oksbi")


class RazorpayAdapter(GatewayAdapter):
    """Razorpay webhooks; the secret is the webhook secret set in Razorpay's dashboard."""

    name = "razorpay"
    env_var = "RAZORPAY_WEBHOOK_SECRET"
    secrets_setting = "razorpay_webhook_secrets"

    def __init__(self, secrets: tuple[str, ...]) -> None:
        if not secrets:
            raise ValueError("at least one Razorpay webhook secret is required")
        self._keys = tuple(secret.encode("utf-8") for secret in secrets)

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        signature = common.hex_signature(request.header("x-razorpay-signature"), "sha256")
        if not common.hmac_matches(self._keys, request.body, [signature], "sha256"):
            raise SignatureInvalid("Razorpay signature matches no configured secret")
        event_id = common.identifier(
            request.header("x-razorpay-event-id"), "x-razorpay-event-id header"
        )
        return normalise(event_id, common.load_json_object(request.body))

    @classmethod
    def sample(
        cls,
        secret: str,
        *,
        amount_minor: int,
        currency: str,
        reference: str,
        event_id: str | None = None,
        kind: EventKind = EventKind.PAYMENT_SUCCEEDED,
        now: float | None = None,
        payment_id: str | None = None,
    ) -> SignedSample:
        created_at = int(time.time() if now is None else now)
        payment_id = payment_id or f"pay_{uuid.uuid4().hex[:14]}"
        payment: dict[str, Any] = {
            "id": payment_id,
            "entity": "payment",
            "amount": amount_minor,
            "currency": currency,
            "status": "failed" if kind is EventKind.PAYMENT_FAILED else "captured",
            "method": "card",
            "wallet": None,
            "notes": {"topup_id": reference},
            "created_at": created_at,
        }
        payload: dict[str, Any] = {"payment": {"entity": payment}}
        if kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED):
            payload["refund"] = {
                "entity": {
                    "id": f"rfnd_{uuid.uuid4().hex[:14]}",
                    "entity": "refund",
                    "amount": amount_minor,
                    "currency": currency,
                    "payment_id": payment_id,
                    "notes": {},
                    "status": "processed" if kind is EventKind.REFUND_SUCCEEDED else "failed",
                    "created_at": created_at,
                }
            }
        body = json.dumps(
            {
                "entity": "event",
                "event": _SAMPLE_EVENTS[kind],
                "contains": list(payload),
                "payload": payload,
                "created_at": created_at,
            }
        ).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "X-Razorpay-Signature": signature,
            "X-Razorpay-Event-Id": event_id or uuid.uuid4().hex[:14],
        }
        return SignedSample(
            body=body, headers=headers, content_type="application/json", payment_id=payment_id
        )


def normalise(event_id: str, body: dict[str, Any]) -> list[GatewayEvent]:
    """The events a verified Razorpay event body carries under `event_id` (Razorpay sends the
    id in a header); raises MalformedPayload."""
    kind = _KINDS.get(common.text(body.get("event"), "event"), EventKind.OTHER)
    occurred_at = common.epoch_time(body.get("created_at"))
    if kind is EventKind.OTHER:
        return [common.ignored(RazorpayAdapter.name, event_id, occurred_at, body)]

    payment = common.dig(body, "payload", "payment", "entity")
    is_refund = kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED)
    entity = common.dig(body, "payload", "refund", "entity") if is_refund else payment
    if not isinstance(entity, dict):
        raise MalformedPayload("event carries no payment or refund entity")
    payment_id = entity.get("payment_id") if is_refund else entity.get("id")
    reference = common.dig(payment, "notes", "topup_id") or common.dig(entity, "notes", "topup_id")
    return [
        GatewayEvent(
            gateway=RazorpayAdapter.name,
            event_id=event_id,
            kind=kind,
            payment_id=common.identifier(payment_id, "payment id"),
            amount_minor=common.amount_minor(entity.get("amount")),
            currency=common.currency_code(entity.get("currency")),
            reference=common.optional_identifier(reference),
            payment_method=_payment_method(payment),
            occurred_at=occurred_at,
            payload=body,
            refund_id=common.optional_identifier(entity.get("id")) if is_refund else None,
        )
    ]


def _payment_method(payment: Any) -> str | None:
    for name in (common.dig(payment, "wallet"), common.dig(payment, "provider")):
        if common.payment_method(name) == "google_pay":
            return "google_pay"
    vpa = common.dig(payment, "vpa") or common.dig(payment, "upi", "vpa")
    if isinstance(vpa, str) and vpa.lower().endswith(_GOOGLE_PAY_UPI_HANDLES):
        return "google_pay"
    return common.payment_method(common.dig(payment, "method"))
