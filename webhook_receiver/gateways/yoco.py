"""Yoco: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

The signed content is `id.timestamp.body`; the key is the secret without its `whsec_` prefix,
base64-decoded. `webhook-signature` holds space-separated `v1,<base64>` entries, any of which
may match; entries of other versions are skipped as the standard asks. Verified here rather
than with the `standardwebhooks` package, which raises bare ValueErrors on malformed headers.
Yoco amounts are cents (minor units).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.settings import ReceiverSettings
from workers.channels.webhook import secret_key, signature

_HEADER_LENGTH_MAX = 4096
_KINDS = {
    "payment.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment.failed": EventKind.PAYMENT_FAILED,
    "refund.succeeded": EventKind.REFUND_SUCCEEDED,
    "refund.failed": EventKind.REFUND_FAILED,
}
_SAMPLE_TYPES = {kind: event for event, kind in _KINDS.items()} | {
    EventKind.OTHER: "payment.pending"
}


class YocoAdapter(GatewayAdapter):
    """Yoco webhooks; the secret is the `whsec_...` value Yoco returns when the hook is made."""

    name = "yoco"
    env_var = "YOCO_WEBHOOK_SECRET"
    secrets_setting = "yoco_webhook_secrets"

    def __init__(
        self,
        secrets: tuple[str, ...],
        *,
        tolerance_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ValueError("at least one Yoco webhook secret is required")
        self._keys = tuple(secret_key(secret) for secret in secrets)
        self._tolerance_s = tolerance_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> Self:
        secrets = cls.configured_secrets(settings)
        return cls(secrets, tolerance_s=settings.webhook_tolerance_s)

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        msg_id = request.header("webhook-id")
        if not msg_id or len(msg_id) > common.ID_LENGTH_MAX or not msg_id.isprintable():
            raise SignatureInvalid("webhook-id header missing or malformed")
        timestamp = request.header("webhook-timestamp")
        signed_at = common.unix_seconds(timestamp)
        signatures = _signatures(request.header("webhook-signature"))
        signed = f"{msg_id}.{timestamp}.".encode() + request.body
        if not common.hmac_matches(self._keys, signed, signatures, "sha256"):
            raise SignatureInvalid("Yoco signature matches no configured secret")
        common.check_tolerance(signed_at, self._clock(), self._tolerance_s)

        body = common.load_json_object(request.body)
        kind = _KINDS.get(common.text(body.get("type"), "event type"), EventKind.OTHER)
        payload = body.get("payload")
        occurred_at = (
            common.iso_time(body.get("createdDate"))
            or common.iso_time(common.dig(payload, "createdDate"))
            or datetime.fromtimestamp(signed_at, UTC)
        )
        if kind is EventKind.OTHER:
            return [common.ignored(self.name, msg_id, occurred_at, body)]
        if not isinstance(payload, dict):
            raise MalformedPayload("event carries no payload")
        return [
            GatewayEvent(
                gateway=self.name,
                event_id=msg_id,
                kind=kind,
                payment_id=common.identifier(
                    payload.get("paymentId") or payload.get("id"), "payment id"
                ),
                amount_minor=common.amount_minor(payload.get("amount")),
                currency=common.currency_code(payload.get("currency")),
                reference=common.optional_identifier(common.dig(payload, "metadata", "topup_id")),
                payment_method=common.payment_method(
                    common.dig(payload, "paymentMethodDetails", "type")
                ),
                occurred_at=occurred_at,
                payload=body,
            )
        ]

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
        timestamp = int(time.time() if now is None else now)
        created = datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")
        payment_id = payment_id or f"p_{uuid.uuid4().hex[:24]}"
        payload: dict[str, Any] = {
            "id": payment_id,
            "type": "payment",
            "amount": amount_minor,
            "currency": currency,
            "createdDate": created,
            "metadata": {"checkoutId": f"ch_{uuid.uuid4().hex[:24]}", "topup_id": reference},
            "mode": "test",
            "paymentMethodDetails": {"type": "card"},
            "status": _SAMPLE_TYPES[kind].partition(".")[2],
        }
        if kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED):
            payload |= {"id": f"rf_{uuid.uuid4().hex[:24]}", "type": "refund"}
            payload["paymentId"] = payment_id
        event = {
            "createdDate": created,
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "payload": payload,
            "type": _SAMPLE_TYPES[kind],
        }
        body = json.dumps(event).encode()
        msg_id = event_id or f"msg_{uuid.uuid4().hex[:24]}"
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature((secret_key(secret),), msg_id, timestamp, body),
        }
        return SignedSample(
            body=body, headers=headers, content_type="application/json", payment_id=payment_id
        )


def _signatures(value: str | None) -> list[bytes]:
    """The v1 signatures of the header; SignatureInvalid when absent, malformed or none is v1."""
    if value is None or len(value) > _HEADER_LENGTH_MAX:
        raise SignatureInvalid("webhook-signature header missing or too long")
    signatures = []
    for entry in value.split():
        version, has_signature, signature = entry.partition(",")
        if not has_signature:
            raise SignatureInvalid("webhook-signature entry malformed")
        if version == "v1":
            signatures.append(common.b64_signature(signature))
    if not signatures:
        raise SignatureInvalid("webhook-signature holds no v1 signature")
    return signatures
