"""Builders shared by the gateway tests: requests, clocks, vectors, a PayPal signer, and a case
table that lets the contract every gateway shares be tested once for all of them."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from webhook_receiver.event import RawRequest
from webhook_receiver.gateways.adyen import AdyenAdapter
from webhook_receiver.gateways.base import GatewayAdapter, SignedSample
from webhook_receiver.gateways.payfast import PayfastAdapter
from webhook_receiver.gateways.paypal import SAMPLE_CERT_URL, PaypalAdapter
from webhook_receiver.gateways.paypal_cert import CertificateStore
from webhook_receiver.gateways.paystack import PaystackAdapter
from webhook_receiver.gateways.razorpay import RazorpayAdapter
from webhook_receiver.gateways.stripe import StripeAdapter
from webhook_receiver.gateways.yoco import YocoAdapter

NOW = 1_750_000_000.0
PAYFAST_ADDRESS = "197.97.145.150"  # inside PayFast's published 197.97.145.144/28


def clock(now: float = NOW) -> Callable[[], float]:
    """A clock frozen at `now`."""
    return lambda: now


def request(
    body: bytes,
    headers: Mapping[str, str | tuple[str, ...]] | None = None,
    remote_addr: str | None = None,
) -> RawRequest:
    """A RawRequest as the receiver builds it: header names lower-cased, values as tuples."""
    normalised = {
        name.lower(): value if isinstance(value, tuple) else (value,)
        for name, value in (headers or {}).items()
    }
    return RawRequest(body=body, headers=normalised, remote_addr=remote_addr)


VECTORS_DIR = Path(__file__).resolve().parents[2] / "data" / "vectors"


def without(headers: Mapping[str, str], name: str) -> dict[str, str]:
    """`headers` less the one called `name` (any case)."""
    return {k: v for k, v in headers.items() if k.lower() != name.lower()}


def vectors_dir() -> Path:
    """The gateways' public signature vectors, kept in tests/data/vectors (see its README)."""
    return VECTORS_DIR


def load_vector(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((vectors_dir() / name).read_text())
    return result


@dataclass(frozen=True)
class PaypalSigner:
    """A key and a self-signed certificate playing PayPal's message verification certificate."""

    private_key_pem: bytes
    certificate_pem: bytes

    @cached_property
    def private_key(self) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def store(self, url: str = SAMPLE_CERT_URL) -> CertificateStore:
        """A certificate store whose fetcher serves this certificate at `url` only."""
        served = {url: self.certificate_pem}
        return CertificateStore(lambda wanted: served[wanted])

    def headers(self, body: bytes, webhook_id: str, now: float = NOW) -> dict[str, str]:
        """The headers PayPal would send with `body`, signed by this key at `now`."""
        sent_at = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        transmission_id = str(uuid.uuid4())
        signed = f"{transmission_id}|{sent_at}|{webhook_id}|{zlib.crc32(body)}"
        signature = self.private_key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {
            "PAYPAL-TRANSMISSION-ID": transmission_id,
            "PAYPAL-TRANSMISSION-TIME": sent_at,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
            "PAYPAL-CERT-URL": SAMPLE_CERT_URL,
            "PAYPAL-AUTH-ALGO": "SHA256withRSA",
        }


@cache
def paypal_signer(common_name: str = "messageverificationcerts.paypal.com") -> PaypalSigner:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    moment = dt.datetime.fromtimestamp(NOW, dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - dt.timedelta(days=30))
        .not_valid_after(moment + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return PaypalSigner(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
    )


@dataclass(frozen=True)
class GatewayCase:
    """How to configure, sign for and call one gateway in the tests every gateway shares."""

    name: str
    secret: str
    other_secret: str
    currency: str
    signs_time: bool
    adapter: Callable[[tuple[str, ...], float], GatewayAdapter]
    sign: Callable[..., SignedSample]
    #: The header carrying the signature, None where it travels in the body.
    signature_header: str | None
    remote_addr: str | None = None

    def sample(self, secret: str | None = None, **overrides: Any) -> SignedSample:
        arguments: dict[str, Any] = {
            "amount_minor": 1050,
            "currency": self.currency,
            "reference": "topup-1",
            "now": NOW,
        }
        return self.sign(secret or self.secret, **(arguments | overrides))

    def parse(self, sample: SignedSample, *secrets: str, now: float = NOW) -> list[Any]:
        adapter = self.adapter(secrets or (self.secret,), now)
        return adapter.parse(sample.to_request(self.remote_addr))


def _paypal_sign(secret: str, **arguments: Any) -> SignedSample:
    return PaypalAdapter.sample(
        secret, private_key_pem=paypal_signer().private_key_pem, **arguments
    )


CASES = [
    GatewayCase(
        name="razorpay",
        secret="rzp-secret",
        other_secret="rzp-other",
        currency="INR",
        signs_time=False,
        adapter=lambda secrets, now: RazorpayAdapter(secrets),
        sign=RazorpayAdapter.sample,
        signature_header="X-Razorpay-Signature",
    ),
    GatewayCase(
        name="stripe",
        secret="whsec_current",
        other_secret="whsec_previous",
        currency="USD",
        signs_time=True,
        adapter=lambda secrets, now: StripeAdapter(secrets, clock=clock(now)),
        sign=StripeAdapter.sample,
        signature_header="Stripe-Signature",
    ),
    GatewayCase(
        name="paypal",
        secret="WH-4JH86294D6297924G",
        other_secret="WH-OTHER",
        currency="USD",
        signs_time=True,
        adapter=lambda secrets, now: PaypalAdapter(
            secrets, clock=clock(now), certificates=paypal_signer().store()
        ),
        sign=_paypal_sign,
        signature_header="PAYPAL-TRANSMISSION-SIG",
    ),
    GatewayCase(
        name="yoco",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        other_secret="whsec_c2Vjb25kIHNlY3JldA==",
        currency="ZAR",
        signs_time=True,
        adapter=lambda secrets, now: YocoAdapter(secrets, clock=clock(now)),
        sign=YocoAdapter.sample,
        signature_header="webhook-signature",
    ),
    GatewayCase(
        name="payfast",
        secret="a pass~phrase",
        other_secret="old-passphrase",
        currency="ZAR",
        signs_time=False,
        adapter=lambda secrets, now: PayfastAdapter(secrets),
        sign=PayfastAdapter.sample,
        signature_header=None,
        remote_addr=PAYFAST_ADDRESS,
    ),
    GatewayCase(
        name="paystack",
        secret="sk_test_current",
        other_secret="sk_test_previous",
        currency="NGN",
        signs_time=False,
        adapter=lambda secrets, now: PaystackAdapter(secrets),
        sign=PaystackAdapter.sample,
        signature_header="x-paystack-signature",
    ),
    GatewayCase(
        name="adyen",
        secret="44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        other_secret="00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF",
        currency="EUR",
        signs_time=False,
        adapter=lambda secrets, now: AdyenAdapter(secrets),
        sign=AdyenAdapter.sample,
        signature_header=None,
    ),
]
CASE_IDS = [case.name for case in CASES]
TIMED_CASES = [case for case in CASES if case.signs_time]
HEADER_CASES = [case for case in CASES if case.signature_header]


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_adapter_bugs() -> Iterator[None]:
    """Fail if an adapter needed the base class's safety net, which only logs adapter bugs."""
    collector = _Collector()
    base_logger = logging.getLogger("webhook_receiver.gateways.base")
    base_logger.addHandler(collector)
    try:
        yield
    finally:
        base_logger.removeHandler(collector)
    assert not collector.records, [record.getMessage() for record in collector.records]
