"""Adyen standard notifications: every item carries its own HMAC in `additionalData`.

Each `NotificationRequestItem` is signed (base64 HMAC-SHA256, hex-decoded key) over
`pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`,
absent fields as empty strings. Values are joined unescaped, as Adyen's own libraries do for
notifications (the `\\`/`:` escaping of Adyen's docs belongs to the older hosted-payment-page
key/value signature). Every item is verified before any is read: one bad item fails the whole
request. Adyen signs only those fields, so `paymentMethod`, `eventDate` and the rest of
`additionalData` are not authenticated; nothing money-moving is read from them.

AUTHORISATION is taken as the payment (the product runs with automatic capture, so Adyen's
CAPTURE notification, if enabled, would be a second report of the same money: it is ignored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from datetime import UTC, datetime
from typing import Any

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample

# Adyen batches at most a handful of items; anything far larger is not Adyen.
ITEMS_MAX = 100
_TEXT_FIELDS = ("pspReference", "originalReference", "merchantAccountCode", "merchantReference")
_REFUND_CODES = frozenset({"REFUND", "REFUND_FAILED"})


def signing_string(item: dict[str, Any]) -> str:
    """The text Adyen signs for one notification item; MalformedPayload when fields are odd."""
    value = common.dig(item, "amount", "value")
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedPayload("amount.value is not an integer")
    texts = ["" if item.get(name) is None else item[name] for name in _TEXT_FIELDS]
    texts += [str(value), common.dig(item, "amount", "currency")]
    texts += [item.get("eventCode"), item.get("success")]
    if not all(isinstance(text, str) for text in texts):
        raise MalformedPayload("a signed notification field is not text")
    return ":".join(texts)


class AdyenAdapter(GatewayAdapter):
    """Adyen standard webhooks; the secret is the webhook's HMAC key in hex, as Adyen shows it."""

    name = "adyen"
    env_var = "ADYEN_HMAC_KEY"
    secrets_setting = "adyen_hmac_keys"

    def __init__(self, hmac_keys: tuple[str, ...]) -> None:
        if not hmac_keys:
            raise ValueError("at least one Adyen HMAC key is required")
        self._keys = tuple(bytes.fromhex(key) for key in hmac_keys)

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        body = common.load_json_object(request.body)
        wrappers = body.get("notificationItems")
        if not isinstance(wrappers, list) or not 0 < len(wrappers) <= ITEMS_MAX:
            raise MalformedPayload("notificationItems missing, empty or too long")
        items = [common.dig(wrapper, "NotificationRequestItem") for wrapper in wrappers]
        for item in items:
            if not isinstance(item, dict):
                raise MalformedPayload("a notification item is not an object")
            self._verify(item)
        return [self._event(item) for item in items]

    def _verify(self, item: dict[str, Any]) -> None:
        signature = common.dig(item, "additionalData", "hmacSignature")
        if not isinstance(signature, str) or not signature:
            raise SignatureInvalid("notification item has no hmacSignature")
        message = signing_string(item).encode("utf-8")
        if not common.hmac_matches(
            self._keys, message, [common.b64_signature(signature)], "sha256"
        ):
            raise SignatureInvalid("Adyen signature matches no configured key")

    def _event(self, item: dict[str, Any]) -> GatewayEvent:
        psp_reference = common.identifier(item.get("pspReference"), "pspReference")
        event_code = item["eventCode"]
        event_id = f"{psp_reference}:{event_code}"
        occurred_at = common.iso_time(item.get("eventDate"))
        kind = _kind(event_code, item["success"] == "true", item["amount"]["value"])
        if kind is EventKind.OTHER:
            return common.ignored(self.name, event_id, occurred_at, item)
        payment_id = psp_reference
        if event_code in _REFUND_CODES:
            payment_id = item.get("originalReference") or psp_reference
        return GatewayEvent(
            gateway=self.name,
            event_id=event_id,
            kind=kind,
            payment_id=common.identifier(payment_id, "originalReference"),
            amount_minor=common.amount_minor(item["amount"]["value"]),
            currency=common.currency_code(item["amount"]["currency"]),
            reference=common.optional_identifier(item.get("merchantReference")),
            payment_method=_payment_method(item),
            occurred_at=occurred_at,
            payload=item,
            refund_id=psp_reference if event_code in _REFUND_CODES else None,
        )

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
        """`event_id` becomes the pspReference; the dedupe key appends the event code."""
        moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        event_code, success = {
            EventKind.PAYMENT_SUCCEEDED: ("AUTHORISATION", "true"),
            EventKind.PAYMENT_FAILED: ("AUTHORISATION", "false"),
            EventKind.REFUND_SUCCEEDED: ("REFUND", "true"),
            EventKind.REFUND_FAILED: ("REFUND", "false"),
            EventKind.OTHER: ("CAPTURE", "true"),
        }[kind]
        item: dict[str, Any] = {
            "amount": {"currency": currency, "value": amount_minor},
            "eventCode": event_code,
            "eventDate": moment.isoformat(timespec="seconds"),
            "merchantAccountCode": "WalletpipeECOM",
            "merchantReference": reference,
            "paymentMethod": "visa",
            "pspReference": event_id
            or (None if event_code in ("REFUND", "CAPTURE") else payment_id)
            or str(random.randint(10**15, 10**16 - 1)),  # noqa: S311
            "reason": "",
            "success": success,
        }
        if event_code in ("REFUND", "CAPTURE"):
            item["originalReference"] = payment_id or str(
                random.randint(10**15, 10**16 - 1)  # noqa: S311
            )
        digest = hmac.new(
            bytes.fromhex(secret), signing_string(item).encode(), hashlib.sha256
        ).digest()
        item["additionalData"] = {"hmacSignature": base64.b64encode(digest).decode()}
        body = json.dumps(
            {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
        ).encode()
        return SignedSample(
            body=body,
            headers={},
            content_type="application/json",
            payment_id=item.get("originalReference") or item["pspReference"],
        )


def _kind(event_code: str, success: bool, value: int) -> EventKind:
    if event_code == "AUTHORISATION" and value > 0:
        # A zero-amount authorisation only checks or stores a card: no money moved.
        return EventKind.PAYMENT_SUCCEEDED if success else EventKind.PAYMENT_FAILED
    if event_code == "REFUND":
        return EventKind.REFUND_SUCCEEDED if success else EventKind.REFUND_FAILED
    if event_code == "REFUND_FAILED":
        # Sent (with success "true") when a refund Adyen had accepted later failed.
        return EventKind.REFUND_FAILED
    return EventKind.OTHER


def _payment_method(item: dict[str, Any]) -> str | None:
    additional = item.get("additionalData")
    for name in ("paymentMethodVariant", "paymentMethod"):
        if common.payment_method(common.dig(additional, name)) == "google_pay":
            return "google_pay"
    return common.payment_method(item.get("paymentMethod"))
