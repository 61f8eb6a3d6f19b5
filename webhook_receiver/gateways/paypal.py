"""PayPal: RSA-SHA256 over `transmission_id|transmission_time|webhook_id|crc32(body)`.

The webhook id (PAYPAL_WEBHOOK_ID) is what ties a transmission to our endpoint; the key comes
from the certificate named in `paypal-cert-url` (see paypal_cert for what is checked). With
PAYPAL_VERIFY_MODE=postback, PayPal's API checks the signature instead (paypal_postback). In
both modes the transmission time must be within the tolerance of now, checked first so that a
stale request costs no certificate fetch or API call.

Amounts are major-unit decimals. PAYMENT.CAPTURE.COMPLETED (and PAYMENT.SALE.COMPLETED, its
name in the v1 Payments API) is a payment; CHECKOUT.ORDER.* events are ignored because the
order's capture reports the same money.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from webhook_receiver.errors import MalformedPayload, SignatureInvalid
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.gateways import common
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.gateways.paypal_cert import CertificateStore
from webhook_receiver.gateways.paypal_postback import PostbackVerifier
from webhook_receiver.settings import ReceiverSettings

AUTH_ALGO = "SHA256withRSA"
SAMPLE_CERT_URL = "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-walletpipe-sample"
_HEADERS = {
    "transmission_id": "paypal-transmission-id",
    "transmission_time": "paypal-transmission-time",
    "transmission_sig": "paypal-transmission-sig",
    "cert_url": "paypal-cert-url",
    "auth_algo": "paypal-auth-algo",
}
_KINDS = {
    "PAYMENT.CAPTURE.COMPLETED": EventKind.PAYMENT_SUCCEEDED,
    "PAYMENT.SALE.COMPLETED": EventKind.PAYMENT_SUCCEEDED,
    "PAYMENT.CAPTURE.DENIED": EventKind.PAYMENT_FAILED,
    "PAYMENT.CAPTURE.DECLINED": EventKind.PAYMENT_FAILED,
    "PAYMENT.CAPTURE.REFUNDED": EventKind.REFUND_SUCCEEDED,
}


class PaypalAdapter(GatewayAdapter):
    """PayPal webhooks; the secret is the webhook id PayPal shows for our endpoint."""

    name = "paypal"
    env_var = "PAYPAL_WEBHOOK_ID"
    secrets_setting = "paypal_webhook_ids"

    def __init__(
        self,
        webhook_ids: tuple[str, ...],
        *,
        tolerance_s: int = 300,
        clock: Callable[[], float] = time.time,
        certificates: CertificateStore | None = None,
        postback: PostbackVerifier | None = None,
    ) -> None:
        if not webhook_ids:
            raise ValueError("at least one PayPal webhook id is required")
        self._webhook_ids = webhook_ids
        self._tolerance_s = tolerance_s
        self._clock = clock
        self._certificates = certificates or CertificateStore()
        self._postback = postback

    @classmethod
    def from_settings(cls, settings: ReceiverSettings) -> Self:
        secrets = cls.configured_secrets(settings)
        postback = None
        if settings.paypal_verify_mode == "postback":
            # ReceiverSettings refuses postback mode without both credentials.
            assert settings.paypal_client_id
            assert settings.paypal_client_secret
            postback = PostbackVerifier(
                settings.paypal_api_base, settings.paypal_client_id, settings.paypal_client_secret
            )
        return cls(
            secrets,
            tolerance_s=settings.webhook_tolerance_s,
            postback=postback,
        )

    @property
    def verify_mode(self) -> str:
        """ "postback" when PayPal's API checks signatures, else "offline"."""
        return "offline" if self._postback is None else "postback"

    def _parse(self, request: RawRequest) -> list[GatewayEvent]:
        fields = {name: request.header(header) for name, header in _HEADERS.items()}
        transmission = {k: v for k, v in fields.items() if v and len(v) <= 2048}
        if len(transmission) != len(fields) or transmission["auth_algo"] != AUTH_ALGO:
            raise SignatureInvalid("PayPal transmission headers missing or malformed")
        sent_at = common.iso_time(transmission["transmission_time"])
        if sent_at is None:
            raise SignatureInvalid("paypal-transmission-time is not an ISO 8601 time")
        common.check_tolerance(sent_at.timestamp(), self._clock(), self._tolerance_s)
        if not self._verified(transmission, sent_at, request.body):
            raise SignatureInvalid("PayPal signature matches no configured webhook id")

        body = common.load_json_object(request.body)
        event_id = common.identifier(body.get("id"), "event id")
        kind = _KINDS.get(common.text(body.get("event_type"), "event_type"), EventKind.OTHER)
        occurred_at = common.iso_time(body.get("create_time"))
        resource = body.get("resource")
        if kind is EventKind.OTHER:
            return [common.ignored(self.name, event_id, occurred_at, body)]
        if not isinstance(resource, dict):
            raise MalformedPayload("event carries no resource")
        currency = common.currency_code(
            common.dig(resource, "amount", "currency_code")
            or common.dig(resource, "amount", "currency")
        )
        value = common.dig(resource, "amount", "value") or common.dig(resource, "amount", "total")
        payment_id = resource.get("id")
        if kind is EventKind.REFUND_SUCCEEDED:
            payment_id = _captured_id(resource) or payment_id
        reference = (
            resource.get("custom_id")
            or common.dig(resource, "purchase_units", 0, "custom_id")
            or resource.get("custom")
        )
        return [
            GatewayEvent(
                gateway=self.name,
                event_id=event_id,
                kind=kind,
                payment_id=common.identifier(payment_id, "resource id"),
                amount_minor=common.amount_from_major(value, currency),
                currency=currency,
                reference=common.optional_identifier(reference),
                payment_method=_payment_method(resource),
                occurred_at=occurred_at,
                payload=body,
                refund_id=(
                    common.optional_identifier(resource.get("id"))
                    if kind is EventKind.REFUND_SUCCEEDED
                    else None
                ),
            )
        ]

    def _verified(self, transmission: dict[str, str], sent_at: datetime, body: bytes) -> bool:
        if self._postback is not None:
            common.load_json_object(body)  # PayPal's API is sent the body spliced in as JSON
            return any(
                self._postback.verify(transmission | {"webhook_id": webhook_id}, body)
                for webhook_id in self._webhook_ids
            )
        signature = common.b64_signature(transmission["transmission_sig"])
        key = self._certificates.public_key(transmission["cert_url"], sent_at)
        crc = zlib.crc32(body) & 0xFFFFFFFF
        prefix = f"{transmission['transmission_id']}|{transmission['transmission_time']}|"
        for webhook_id in self._webhook_ids:
            try:
                key.verify(
                    signature,
                    f"{prefix}{webhook_id}|{crc}".encode(),
                    padding.PKCS1v15(),
                    hashes.SHA256(),
                )
                return True
            except InvalidSignature:
                continue
        return False

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
        private_key_pem: bytes | None = None,
        cert_url: str = SAMPLE_CERT_URL,
    ) -> SignedSample:
        """`secret` is the webhook id; PayPal signs with the RSA key in `private_key_pem`.

        The receiver accepts the sample only if its certificate fetcher serves a certificate
        for that key at `cert_url`, so samples suit tests, not a receiver fetching from PayPal.
        Raises ValueError without a key, for ZAR (PayPal does not take it) and for
        REFUND_FAILED (PayPal sends no such event).
        """
        # Signing lives apart: it serves tests and demos, never the receiver's request path.
        from webhook_receiver.gateways.paypal_sample import signed_sample

        return signed_sample(
            secret,
            private_key_pem=private_key_pem,
            cert_url=cert_url,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
            event_id=event_id,
            kind=kind,
            now=now,
            payment_id=payment_id,
        )


def _captured_id(refund: dict[str, Any]) -> str | None:
    """The id of the capture a refund belongs to, from its `up` link."""
    links = refund.get("links")
    for link in links if isinstance(links, list) else ():
        href = common.dig(link, "href")
        if common.dig(link, "rel") == "up" and isinstance(href, str) and "/captures/" in href:
            return href.rstrip("/").rsplit("/", 1)[-1]
    return None


def _payment_method(resource: dict[str, Any]) -> str | None:
    """The payment source PayPal names (`google_pay`, `card`, `paypal`), where it names one."""
    source = resource.get("payment_source")
    if isinstance(source, dict) and len(source) == 1:
        return common.payment_method(next(iter(source)))
    return None
