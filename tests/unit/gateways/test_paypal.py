"""PayPal: RSA signatures checked with a certificate fetched only from PayPal's hosts."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webhook_receiver.errors import MalformedPayload, SignatureInvalid, TimestampOutOfTolerance
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.base import SignedSample
from webhook_receiver.gateways.paypal import SAMPLE_CERT_URL, PaypalAdapter
from webhook_receiver.gateways.paypal_cert import CertificateStore

from .support import NOW, clock, load_vector, paypal_signer, request, vectors_dir

WEBHOOK_ID = "WH-4JH86294D6297924G"


class RecordingFetcher:
    """Serves certificates by URL and records every fetch."""

    def __init__(self, served: dict[str, bytes]) -> None:
        self.served = served
        self.fetched: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        return self.served[url]


def vector_request(**header_overrides: str) -> Any:
    vector = load_vector("paypal_vector.json")
    headers = {
        "PAYPAL-TRANSMISSION-ID": vector["transmission_id"],
        "PAYPAL-TRANSMISSION-TIME": vector["transmission_time"],
        "PAYPAL-TRANSMISSION-SIG": vector["transmission_sig"],
        "PAYPAL-CERT-URL": vector["cert_url"],
        "PAYPAL-AUTH-ALGO": vector["auth_algo"],
    } | header_overrides
    return request(vector["event_body"].encode(), headers)


def vector_adapter(now: datetime, webhook_id: str | None = None) -> PaypalAdapter:
    vector = load_vector("paypal_vector.json")
    pem = (vectors_dir() / "paypal_sandbox_cert_2015.pem").read_bytes()
    return PaypalAdapter(
        (webhook_id or vector["webhook_id"],),
        clock=clock(now.timestamp()),
        certificates=CertificateStore(RecordingFetcher({vector["cert_url"]: pem})),
    )


TRANSMITTED = datetime(2015, 5, 18, 15, 45, 13, tzinfo=UTC)


def test_a_real_paypal_transmission_verifies_at_its_transmission_time() -> None:
    [event] = vector_adapter(TRANSMITTED + timedelta(seconds=20)).parse(vector_request())

    assert event.gateway == "paypal"
    assert event.event_id == "WH-0G2756385H040842W-5Y612302CV158622M"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED  # PAYMENT.SALE.COMPLETED, v1 API
    assert event.payment_id == "4EU7004268015634R"
    assert (event.amount_minor, event.currency) == (2000, "USD")
    assert event.reference is None
    assert event.payment_method is None
    assert event.occurred_at == TRANSMITTED


def test_a_real_transmission_replayed_today_is_stale() -> None:
    with pytest.raises(TimestampOutOfTolerance):
        vector_adapter(datetime.now(UTC)).parse(vector_request())


def test_a_real_transmission_for_another_webhook_id_is_refused() -> None:
    with pytest.raises(SignatureInvalid):
        vector_adapter(TRANSMITTED, webhook_id="WH-SOMEONE-ELSE").parse(vector_request())


def test_a_real_transmission_with_another_body_is_refused() -> None:
    tampered = dataclasses.replace(
        vector_request(), body=vector_request().body.replace(b"20.00", b"90.00")
    )

    with pytest.raises(SignatureInvalid):
        vector_adapter(TRANSMITTED).parse(tampered)


def sample(**overrides: Any) -> SignedSample:
    arguments: dict[str, Any] = {
        "amount_minor": 1999,
        "currency": "USD",
        "reference": "topup-3",
        "now": NOW,
        "private_key_pem": paypal_signer().private_key_pem,
    }
    return PaypalAdapter.sample(WEBHOOK_ID, **(arguments | overrides))


def resign(body: dict[str, Any]) -> SignedSample:
    """A sample carrying `body`, signed as PayPal would with the test certificate's key."""
    raw = json.dumps(body).encode()
    headers = paypal_signer().headers(raw, WEBHOOK_ID)
    return SignedSample(body=raw, headers=headers, content_type="application/json")


def adapter(fetcher: RecordingFetcher | None = None, now: float = NOW) -> PaypalAdapter:
    fetcher = fetcher or RecordingFetcher({SAMPLE_CERT_URL: paypal_signer().certificate_pem})
    return PaypalAdapter((WEBHOOK_ID,), clock=clock(now), certificates=CertificateStore(fetcher))


def test_a_completed_capture_is_normalised() -> None:
    signed = sample(event_id="WH-1")

    [event] = adapter().parse(signed.to_request())

    body = json.loads(signed.body)
    assert event.event_id == "WH-1"
    assert event.kind is EventKind.PAYMENT_SUCCEEDED
    assert event.payment_id == body["resource"]["id"]
    assert (event.amount_minor, event.currency, event.reference) == (1999, "USD", "topup-3")
    assert event.occurred_at == datetime.fromtimestamp(NOW, UTC)
    assert event.payload == body


def test_a_refund_names_the_capture_it_refunds() -> None:
    signed = sample(kind=EventKind.REFUND_SUCCEEDED)
    up_link = json.loads(signed.body)["resource"]["links"][0]["href"]

    [event] = adapter().parse(signed.to_request())

    assert event.kind is EventKind.REFUND_SUCCEEDED
    assert up_link.endswith(f"/captures/{event.payment_id}")


@pytest.mark.parametrize(
    "cert_url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://evil.example/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/other/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/CERT-1?next=evil",
        "https://[api.paypal.com/v1/notifications/certs/CERT-1",
    ],
)
def test_a_certificate_is_never_fetched_from_outside_paypals_certificate_path(
    cert_url: str,
) -> None:
    fetcher = RecordingFetcher({cert_url: paypal_signer().certificate_pem})

    with pytest.raises(SignatureInvalid):
        adapter(fetcher).parse(sample(cert_url=cert_url).to_request())
    assert fetcher.fetched == []


def test_certificates_are_fetched_once_per_url() -> None:
    fetcher = RecordingFetcher({SAMPLE_CERT_URL: paypal_signer().certificate_pem})
    receiver = adapter(fetcher)

    receiver.parse(sample().to_request())
    receiver.parse(sample().to_request())

    assert fetcher.fetched == [SAMPLE_CERT_URL]


def test_the_certificate_cache_is_bounded() -> None:
    urls = [f"https://api.paypal.com/v1/notifications/certs/CERT-{i}" for i in range(3)]
    fetcher = RecordingFetcher({url: paypal_signer().certificate_pem for url in urls})
    store = CertificateStore(fetcher, cache_size=2)
    moment = datetime.fromtimestamp(NOW, UTC)

    for url in [*urls, urls[0]]:
        store.public_key(url, moment)

    assert fetcher.fetched == [*urls, urls[0]]


def test_a_certificate_for_another_subject_is_refused() -> None:
    impostor = paypal_signer("messageverificationcerts.paypal.com.evil.example")
    fetcher = RecordingFetcher({SAMPLE_CERT_URL: impostor.certificate_pem})

    with pytest.raises(SignatureInvalid):
        adapter(fetcher).parse(sample(private_key_pem=impostor.private_key_pem).to_request())


def test_a_signature_by_another_key_is_refused() -> None:
    other = paypal_signer("messageverificationcerts.sandbox.paypal.com")

    with pytest.raises(SignatureInvalid):
        adapter().parse(sample(private_key_pem=other.private_key_pem).to_request())


def test_a_transmission_outside_the_certificates_validity_is_refused() -> None:
    after_expiry = NOW + 31 * 86_400  # the test certificate lives 30 days either side of NOW

    with pytest.raises(SignatureInvalid):
        adapter(now=after_expiry).parse(sample(now=after_expiry).to_request())


@pytest.mark.parametrize("served", [OSError("unreachable"), b"not a certificate", b""])
def test_an_unavailable_or_unreadable_certificate_is_refused(served: Any) -> None:
    def fetcher(url: str) -> bytes:
        if isinstance(served, Exception):
            raise served
        return bytes(served)

    receiver = PaypalAdapter(
        (WEBHOOK_ID,), clock=clock(NOW), certificates=CertificateStore(fetcher)
    )

    with pytest.raises(SignatureInvalid):
        receiver.parse(sample().to_request())


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("PAYPAL-AUTH-ALGO", "SHA1withRSA"),
        ("PAYPAL-TRANSMISSION-TIME", "yesterday"),
        ("PAYPAL-TRANSMISSION-TIME", "2025-06-15T15:06:40"),  # no zone
        ("PAYPAL-TRANSMISSION-ID", ""),
    ],
)
def test_malformed_transmission_headers_are_refused(header: str, value: str) -> None:
    signed = sample()
    headers = dict(signed.headers) | {header: value}

    with pytest.raises(SignatureInvalid):
        adapter().parse(dataclasses.replace(signed, headers=headers).to_request())


@pytest.mark.parametrize(
    ("payment_source", "method"),
    [({"google_pay": {"card": {"brand": "VISA"}}}, "google_pay"), ({"paypal": {}}, "paypal")],
)
def test_the_payment_method_is_read_from_the_payment_source(
    payment_source: dict[str, Any], method: str
) -> None:
    body = json.loads(sample().body)
    body["resource"]["payment_source"] = payment_source

    [event] = adapter().parse(resign(body).to_request())

    assert event.payment_method == method


@pytest.mark.parametrize(
    "value", ["19.999", "-1.00", "+5.00", "NaN", "1e3", "1_000.00", "\u0663.00", "", "0.00"]
)
def test_a_signed_capture_with_an_unusable_amount_is_malformed(value: str) -> None:
    signed = sample()
    body = json.loads(signed.body)
    body["resource"]["amount"]["value"] = value
    resigned = resign(body)

    with pytest.raises(MalformedPayload):
        adapter().parse(resigned.to_request())
