"""What the gateways send in the chaos run: captures, refunds of captured payments, forgeries.

Captures are the adapters' own signed samples. A refund must name the payment it reverses,
which a sample picks at random, so the refund sample's payment id is replaced by the captured
one and the body signed again the way its gateway signs (the schemes of each gateway's
documentation, as the adapters verify them). Forgeries are built against top-ups that get no
genuine event: signed with a secret the receiver does not hold, a genuine signature over a
body altered afterwards, or a genuine signature too old to be accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks import Webhook

from tests.unit.gateways.support import CASES
from webhook_receiver.event import EventKind, GatewayEvent
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.gateways.adyen import signing_string
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.settings import ReceiverSettings

# The gateways the run uses, each with a currency it sends. PayPal is left out: its events are
# signed by PayPal's key and verified against a certificate fetched from PayPal's own hosts.
CURRENCIES = {
    "stripe": "USD",
    "razorpay": "INR",
    "paystack": "NGN",
    "yoco": "ZAR",
    "adyen": "EUR",
    "payfast": "ZAR",
}
# PayFast sends no ITN for refunds.
REFUNDING = ("stripe", "razorpay", "paystack", "yoco", "adyen")
# Gateways that sign a timestamp, so an old signature is refused.
TIMED = ("stripe", "yoco")
# Where the receiver sees the chaos clients come from (PayFast checks the source address).
CLIENT_ADDRESS = "127.0.0.1"
STALE_S = 3600

_OTHER_SECRETS = {case.name: case.other_secret for case in CASES}


@dataclass(frozen=True)
class Signed:
    """One signed gateway request and the event the receiver should read from it."""

    gateway: str
    sample: SignedSample
    event_id: str
    payment_id: str | None


class Signer:
    """Signs events as the configured gateways do, with the secrets the receiver holds."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        settings = ReceiverSettings.from_env(environ)
        self._secrets = {g: ADAPTERS[g].configured_secrets(settings)[-1] for g in CURRENCIES}
        self._adapters: dict[str, GatewayAdapter] = {
            g: ADAPTERS[g].from_settings(settings) for g in CURRENCIES
        }

    def read(self, gateway: str, sample: SignedSample) -> GatewayEvent:
        """The one event the receiver reads from `sample`; ValueError if it would not verify."""
        events = self._adapters[gateway].parse(sample.to_request(CLIENT_ADDRESS))
        if len(events) != 1:
            raise ValueError(f"{gateway} sample carries {len(events)} events")
        return events[0]

    def _signed(self, gateway: str, sample: SignedSample) -> Signed:
        event = self.read(gateway, sample)
        return Signed(gateway, sample, event.event_id, event.payment_id)

    def capture(self, gateway: str, *, amount_minor: int, reference: str, event_id: str) -> Signed:
        sample = ADAPTERS[gateway].sample(
            self._secrets[gateway],
            amount_minor=amount_minor,
            currency=CURRENCIES[gateway],
            reference=reference,
            event_id=event_id,
        )
        return self._signed(gateway, sample)

    def attempt(self, signed: Signed) -> SignedSample:
        """The request as sent now: a gateway that signs the time signs each attempt afresh
        (same event, same body), so a late retry is not refused as stale."""
        if signed.gateway == "stripe":
            return _stripe(
                self._secrets["stripe"], signed.sample.body, signed.sample.headers, int(time.time())
            )
        if signed.gateway == "yoco":
            return _yoco(
                self._secrets["yoco"], signed.sample.body, signed.sample.headers, int(time.time())
            )
        return signed.sample

    def refund(
        self,
        gateway: str,
        *,
        payment_id: str,
        amount_minor: int,
        reference: str,
        event_id: str,
    ) -> Signed:
        """A succeeded refund of `amount_minor` of the captured payment `payment_id`."""
        secret = self._secrets[gateway]
        sample = ADAPTERS[gateway].sample(
            secret,
            amount_minor=amount_minor,
            currency=CURRENCIES[gateway],
            reference=reference,
            event_id=event_id,
            kind=EventKind.REFUND_SUCCEEDED,
        )
        drawn = self.read(gateway, sample).payment_id
        assert drawn, f"{gateway} refund sample names no payment"
        body = sample.body.replace(drawn.encode(), payment_id.encode())
        signed = self._signed(gateway, _RESIGN[gateway](secret, body, sample.headers))
        if signed.payment_id != payment_id:
            raise ValueError(f"{gateway} refund names {signed.payment_id}, not {payment_id}")
        return signed

    def forged(
        self, gateway: str, how: str, *, amount_minor: int, reference: str, other_reference: str
    ) -> SignedSample:
        """A request for `reference` the receiver must refuse with 401.

        `how`: "wrong-secret", "tampered" (a genuine signature over a body whose top-up was
        changed to `other_reference` afterwards) or "stale" (signed too long ago; TIMED only).
        """
        arguments = {
            "amount_minor": amount_minor,
            "currency": CURRENCIES[gateway],
            "reference": reference,
        }
        adapter = ADAPTERS[gateway]
        if how == "wrong-secret":
            return adapter.sample(_OTHER_SECRETS[gateway], **arguments)
        if how == "stale":
            return adapter.sample(self._secrets[gateway], now=time.time() - STALE_S, **arguments)
        genuine = adapter.sample(self._secrets[gateway], **arguments)
        tampered = genuine.body.replace(reference.encode(), other_reference.encode())
        assert tampered != genuine.body
        return SignedSample(tampered, genuine.headers, genuine.content_type)


def _stripe(
    secret: str, body: bytes, headers: Mapping[str, str], at: int | None = None
) -> SignedSample:
    timestamp = at or headers["Stripe-Signature"].split(",")[0].removeprefix("t=")
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return SignedSample(
        body, {"Stripe-Signature": f"t={timestamp},v1={digest.hexdigest()}"}, "application/json"
    )


def _razorpay(secret: str, body: bytes, headers: Mapping[str, str]) -> SignedSample:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SignedSample(body, {**headers, "X-Razorpay-Signature": digest}, "application/json")


def _paystack(secret: str, body: bytes, headers: Mapping[str, str]) -> SignedSample:
    digest = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    return SignedSample(body, {"x-paystack-signature": digest}, "application/json")


def _yoco(
    secret: str, body: bytes, headers: Mapping[str, str], at: int | None = None
) -> SignedSample:
    seconds = at or int(headers["webhook-timestamp"])
    timestamp = datetime.fromtimestamp(seconds, UTC)
    signature = Webhook(secret).sign(headers["webhook-id"], timestamp, body.decode())
    return SignedSample(
        body,
        {**headers, "webhook-timestamp": str(seconds), "webhook-signature": signature},
        "application/json",
    )


def _adyen(secret: str, body: bytes, headers: Mapping[str, str]) -> SignedSample:
    notification = json.loads(body)
    item = notification["notificationItems"][0]["NotificationRequestItem"]
    item.pop("additionalData", None)
    digest = hmac.new(bytes.fromhex(secret), signing_string(item).encode(), hashlib.sha256)
    item["additionalData"] = {"hmacSignature": base64.b64encode(digest.digest()).decode()}
    return SignedSample(json.dumps(notification).encode(), {}, "application/json")


_RESIGN: dict[str, Callable[[str, bytes, Mapping[str, str]], SignedSample]] = {
    "stripe": _stripe,
    "razorpay": _razorpay,
    "paystack": _paystack,
    "yoco": _yoco,
    "adyen": _adyen,
}
