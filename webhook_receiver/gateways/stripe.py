"""Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 of `t.` + raw body.

The `whsec_...` secret is the HMAC key verbatim. Unlike Stripe's SDK, a timestamp too far in
the future is rejected as well as a stale one. Refunds: Stripe reports one refund through
several events (`charge.refunded` with a cumulative amount, `refund.created`, `refund.updated`,
`refund.failed`), so exactly one of them is mapped per outcome: a refund succeeds when it is
created succeeded or updated into `succeeded`, and fails when updated into `failed`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Self

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.settings import ReceiverSettings

_HEADER_LENGTH_MAX = 4096
_PAYMENT_KINDS = {
    "payment_intent.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.PAYMENT_FAILED,
}
# charge.refund.updated repeats refund.updated for the same change: reading both would reverse
# one refund twice.
_REFUND_EVENTS = frozenset({"refund.created", "refund.updated"})
_REFUND_KINDS = {"succeeded": EventKind.REFUND_SUCCEEDED, "failed": EventKind.REFUND_FAILED}


class StripeAdapter(GatewayAdapter):
    """Stripe webhooks; the secret is the endpoint's signing secret (`whsec_...`)."""

    name = "stripe"
    env_var = "STRIPE_WEBHOOK_SECRET"
    secrets_setting = "stripe_webhook_secrets"

    def __init__(
        self,
        secrets: tuple[str, ...],
        *,
        tolerance_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ValueError("at least one Stripe signing secret is required")
        self._keys = tuple(secret.encode("utf-8") for secret in secrets)
        self._tolerance_s = tolerance_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> Self:
        secrets = cls.configured_secrets(settings)
        return cls(secrets, tolerance_s=settings.webhook_tolerance_s)

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        timestamp, signatures = _signature_header(request.header("stripe-signature"))
        signed = timestamp.encode("ascii") + b"." + request.body
        if not common.hmac_matches(self._keys, signed, signatures, "sha256"):
            raise SignatureInvalid("Stripe signature matches no configured secret")
        common.check_tolerance(int(timestamp), self._clock(), self._tolerance_s)

        return normalise(common.load_json_object(request.body))

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
        created = int(time.time() if now is None else now)
        intent_id = payment_id or f"pi_{uuid.uuid4().hex[:24]}"
        data: dict[str, Any]
        if kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED):
            status = "succeeded" if kind is EventKind.REFUND_SUCCEEDED else "failed"
            event_type = "refund.created" if status == "succeeded" else "refund.updated"
            refund = {
                "id": f"re_{uuid.uuid4().hex[:24]}",
                "object": "refund",
                "amount": amount_minor,
                "currency": currency.lower(),
                "payment_intent": intent_id,
                "metadata": {"topup_id": reference},
                "status": status,
                "created": created,
            }
            data = {"object": refund}
            if status == "failed":
                data["previous_attributes"] = {"status": "pending"}
        else:
            event_type = {
                EventKind.PAYMENT_SUCCEEDED: "payment_intent.succeeded",
                EventKind.PAYMENT_FAILED: "payment_intent.payment_failed",
                EventKind.OTHER: "payment_intent.created",
            }[kind]
            succeeded = kind is EventKind.PAYMENT_SUCCEEDED
            data = {
                "object": {
                    "id": intent_id,
                    "object": "payment_intent",
                    "amount": amount_minor,
                    "amount_received": amount_minor if succeeded else 0,
                    "currency": currency.lower(),
                    "metadata": {"topup_id": reference},
                    "payment_method_types": ["card"],
                    "status": "succeeded" if succeeded else "requires_payment_method",
                    "created": created,
                }
            }
        event = {
            "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "type": event_type,
        }
        body = json.dumps(event, indent=2).encode()
        signed = f"{created}.".encode() + body
        signature = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        headers = {"Stripe-Signature": f"t={created},v1={signature}"}
        return SignedSample(
            body=body, headers=headers, content_type="application/json", payment_id=intent_id
        )


def normalise(body: dict[str, Any]) -> list[GatewayEvent]:
    """The events a verified Stripe event object (a webhook's body, or an item of the events
    list API) carries; raises MalformedPayload."""
    event_id = common.identifier(body.get("id"), "event id")
    event_type = common.text(body.get("type"), "event type")
    occurred_at = common.epoch_time(body.get("created"))
    obj = common.dig(body, "data", "object")
    kind = _kind(event_type, obj, common.dig(body, "data", "previous_attributes"))
    if kind is EventKind.OTHER:
        return [common.ignored(StripeAdapter.name, event_id, occurred_at, body)]
    if not isinstance(obj, dict):
        raise MalformedPayload("event carries no data.object")

    if event_type in _REFUND_EVENTS:
        payment_id = obj.get("payment_intent") or obj.get("charge")
        amount = obj.get("amount")
    else:
        payment_id = obj.get("id")
        amount = obj.get("amount_received") or obj.get("amount")
    return [
        GatewayEvent(
            gateway=StripeAdapter.name,
            event_id=event_id,
            kind=kind,
            payment_id=common.identifier(payment_id, "payment id"),
            amount_minor=common.amount_minor(amount),
            currency=common.currency_code(obj.get("currency")),
            reference=common.optional_identifier(common.dig(obj, "metadata", "topup_id")),
            payment_method=_payment_method(obj),
            occurred_at=occurred_at,
            payload=body,
            refund_id=(
                common.optional_identifier(obj.get("id")) if event_type in _REFUND_EVENTS else None
            ),
        )
    ]


def _signature_header(value: str | None) -> tuple[str, list[bytes]]:
    """The timestamp text and the v1 signatures; SignatureInvalid when absent or malformed."""
    if value is None:
        raise SignatureInvalid("Stripe-Signature header missing")
    if len(value) > _HEADER_LENGTH_MAX:
        raise SignatureInvalid("Stripe-Signature header too long")
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for item in value.split(","):
        key, has_value, text = item.strip().partition("=")
        if not has_value:
            raise SignatureInvalid("Stripe-Signature header malformed")
        if key == "t":
            common.unix_seconds(text)
            timestamps.append(text)
        elif key == "v1":
            signatures.append(common.hex_signature(text, "sha256"))
    if len(timestamps) != 1 or not signatures:
        raise SignatureInvalid("Stripe-Signature needs one t and at least one v1")
    return timestamps[0], signatures


def _kind(event_type: str, obj: Any, previous: Any) -> EventKind:
    if event_type in _PAYMENT_KINDS:
        return _PAYMENT_KINDS[event_type]
    if event_type not in _REFUND_EVENTS:
        return EventKind.OTHER
    status = common.dig(obj, "status")
    if event_type == "refund.created":
        return EventKind.REFUND_SUCCEEDED if status == "succeeded" else EventKind.OTHER
    # An update counts only when it moved the status, so a later metadata edit is no new refund.
    if not isinstance(previous, dict) or "status" not in previous:
        return EventKind.OTHER
    return (
        _REFUND_KINDS.get(status, EventKind.OTHER) if isinstance(status, str) else EventKind.OTHER
    )


def _payment_method(obj: dict[str, Any]) -> str | None:
    """Google Pay shows as a card wallet on the charge or on the failed payment method."""
    charge = obj.get("latest_charge")
    if not isinstance(charge, dict):
        charge = common.dig(obj, "charges", "data", 0)
    for details in (
        common.dig(charge, "payment_method_details"),
        common.dig(obj, "last_payment_error", "payment_method"),
    ):
        if isinstance(details, dict):
            wallet = common.payment_method(common.dig(details, "card", "wallet", "type"))
            return wallet or common.payment_method(details.get("type"))
    return None
