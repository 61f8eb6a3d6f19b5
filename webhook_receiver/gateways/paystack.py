"""Paystack: `x-paystack-signature` is the hex HMAC-SHA512 of the raw body; no signed timestamp.

The key is the account's secret key. The dedupe key is `event:data.id`, since Paystack reuses a
transaction's id across its events. `payment_id` is the transaction's reference, which refund
events carry as `transaction_reference`. `data.metadata` arrives as an object or as a JSON
string. Amounts are minor units (kobo, cents).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample

_KINDS = {
    "charge.success": EventKind.PAYMENT_SUCCEEDED,
    "charge.failed": EventKind.PAYMENT_FAILED,
    "refund.processed": EventKind.REFUND_SUCCEEDED,
    "refund.failed": EventKind.REFUND_FAILED,
}
_SAMPLE_EVENTS = {kind: event for event, kind in _KINDS.items()} | {
    EventKind.OTHER: "transfer.success"
}
_REFUNDS = (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED)


class PaystackAdapter(GatewayAdapter):
    """Paystack webhooks; the secret is the account's secret key (`sk_live_...`)."""

    name = "paystack"
    env_var = "PAYSTACK_WEBHOOK_SECRET"
    secrets_setting = "paystack_webhook_secrets"

    def __init__(self, secrets: tuple[str, ...]) -> None:
        if not secrets:
            raise ValueError("at least one Paystack secret key is required")
        self._keys = tuple(secret.encode("utf-8") for secret in secrets)

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        signature = common.hex_signature(request.header("x-paystack-signature"), "sha512")
        if not common.hmac_matches(self._keys, request.body, [signature], "sha512"):
            raise SignatureInvalid("Paystack signature matches no configured secret")

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
        created = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        stamp = created.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        transaction_id = random.randint(10**8, 10**10)  # noqa: S311 - an id, not a secret
        data: dict[str, Any] = {
            "id": event_id or transaction_id,
            "domain": "test",
            "status": "success" if kind is EventKind.PAYMENT_SUCCEEDED else "failed",
            "reference": payment_id or uuid.uuid4().hex[:10],
            "amount": amount_minor,
            "currency": currency,
            "channel": "card",
            "metadata": json.dumps({"topup_id": reference}),
            "paid_at": stamp,
            "created_at": stamp,
            "authorization": {"channel": "card", "card_type": "visa", "last4": "4081"},
        }
        if kind in _REFUNDS:
            data["transaction_reference"] = data.pop("reference")
            data["refund_reference"] = uuid.uuid4().hex[:10]
            data["status"] = "processed" if kind is EventKind.REFUND_SUCCEEDED else "failed"
        body = json.dumps({"event": _SAMPLE_EVENTS[kind], "data": data}).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
        headers = {"x-paystack-signature": signature}
        named = data.get("reference") or data.get("transaction_reference")
        return SignedSample(
            body=body, headers=headers, content_type="application/json", payment_id=named
        )


def normalise(body: dict[str, Any]) -> list[GatewayEvent]:
    """The events a verified Paystack event body carries (the transactions API's objects fit
    as its `data`); raises MalformedPayload."""
    event = common.text(body.get("event"), "event")
    data = body.get("data")
    kind = _KINDS.get(event, EventKind.OTHER)
    data_id = common.dig(data, "id")
    if data_id is None and kind in _REFUNDS:
        # Some refund events name the refund only by its reference.
        data_id = common.dig(data, "refund_reference")
    event_id = f"{event}:{common.identifier(data_id, 'data.id')}"
    occurred_at = _occurred_at(data)
    if kind is EventKind.OTHER:
        return [common.ignored(PaystackAdapter.name, event_id, occurred_at, body)]
    if not isinstance(data, dict):
        raise MalformedPayload("event carries no data object")

    # A transaction's reference is what its refunds point back to.
    payment_id = data.get("transaction_reference" if kind in _REFUNDS else "reference")
    channel = data.get("channel") or common.dig(data, "authorization", "channel")
    return [
        GatewayEvent(
            gateway=PaystackAdapter.name,
            event_id=event_id,
            kind=kind,
            payment_id=common.identifier(payment_id, "payment id"),
            amount_minor=common.amount_minor(data.get("amount")),
            currency=common.currency_code(data.get("currency")),
            reference=common.optional_identifier(_metadata(data).get("topup_id")),
            payment_method=common.payment_method(channel),
            occurred_at=occurred_at,
            payload=body,
            refund_id=str(data_id) if kind in _REFUNDS else None,
        )
    ]


def _occurred_at(data: Any) -> datetime | None:
    for name in ("paid_at", "paidAt", "created_at", "createdAt"):
        moment = common.iso_time(common.dig(data, name))
        if moment is not None:
            return moment
    return None


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    """Paystack metadata as a dict: it may be an object, a JSON string, or an empty string."""
    metadata = data.get("metadata")
    if isinstance(metadata, str) and metadata.startswith("{"):
        try:
            metadata = json.loads(metadata)
        except (ValueError, RecursionError):
            return {}
    return metadata if isinstance(metadata, dict) else {}
