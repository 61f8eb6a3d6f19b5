"""PayPal in postback mode, against a local HTTP server that plays PayPal's API."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from webhook_receiver.errors import SignatureInvalid, TimestampOutOfTolerance
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.base import SignedSample
from webhook_receiver.gateways.paypal import PaypalAdapter
from webhook_receiver.gateways.paypal_postback import PostbackVerifier
from webhook_receiver.settings import ReceiverSettings

from .support import NOW, clock, paypal_signer

CLIENT_ID, CLIENT_SECRET = "client-id", "client-secret"
WEBHOOK_ID = "WH-POSTBACK"


class FakePaypal(BaseHTTPRequestHandler):
    """PayPal's token and verify-webhook-signature endpoints, strict about what they receive.

    It answers SUCCESS only for our webhook id and the signature of the sample it was told to
    expect, and only when the event arrives byte for byte as PayPal sent it.
    """

    server: PaypalServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(self.path)
        if self.path == "/v1/oauth2/token":
            basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if self.headers["Authorization"] != f"Basic {basic}":
                return self.answer(401, {"error": "invalid_client"})
            self.server.tokens_issued += 1
            token = f"token-{self.server.tokens_issued}"
            return self.answer(200, {"access_token": token, "expires_in": 32400})
        if self.path == "/v1/notifications/verify-webhook-signature":
            if self.headers["Authorization"] not in self.server.valid_tokens():
                return self.answer(401, {"name": "AUTHENTICATION_FAILURE"})
            if self.server.broken:
                return self.answer(500, {"name": "INTERNAL_SERVICE_ERROR"})
            return self.answer(200, {"verification_status": self.verdict(body)})
        return self.answer(404, {})

    def verdict(self, body: bytes) -> str:
        expected = self.server.expected
        fields = json.loads(body)
        genuine = (
            expected is not None
            and fields["webhook_id"] == WEBHOOK_ID
            and fields["transmission_sig"] == expected.headers["PAYPAL-TRANSMISSION-SIG"]
            and body.endswith(b'"webhook_event": ' + expected.body + b"}")
        )
        return "SUCCESS" if genuine else "FAILURE"

    def answer(self, status: int, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class PaypalServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakePaypal)
        self.requests: list[str] = []
        self.tokens_issued = 0
        self.revoked = 0
        self.broken = False
        self.expected: SignedSample | None = None

    def valid_tokens(self) -> set[str]:
        return {f"Bearer token-{n}" for n in range(self.revoked + 1, self.tokens_issued + 1)}

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def paypal() -> Iterator[PaypalServer]:
    server = PaypalServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def adapter(api_base: str, secret: str = CLIENT_SECRET) -> PaypalAdapter:
    postback = PostbackVerifier(api_base, CLIENT_ID, secret, timeout_s=2)
    return PaypalAdapter(("WH-OLD", WEBHOOK_ID), clock=clock(NOW), postback=postback)


def sample(now: float = NOW) -> SignedSample:
    return PaypalAdapter.sample(
        WEBHOOK_ID,
        amount_minor=2500,
        currency="EUR",
        reference="topup-5",
        now=now,
        private_key_pem=paypal_signer().private_key_pem,
    )


def test_paypal_confirming_a_transmission_accepts_it(paypal: PaypalServer) -> None:
    paypal.expected = sample()

    [event] = adapter(paypal.base).parse(paypal.expected.to_request())

    assert (event.kind, event.amount_minor, event.currency, event.reference) == (
        EventKind.PAYMENT_SUCCEEDED,
        2500,
        "EUR",
        "topup-5",
    )


def test_paypal_denying_a_transmission_refuses_it(paypal: PaypalServer) -> None:
    paypal.expected = sample()

    with pytest.raises(SignatureInvalid):
        adapter(paypal.base).parse(sample().to_request())  # another transmission


def test_the_access_token_is_reused_until_paypal_revokes_it(paypal: PaypalServer) -> None:
    paypal.expected = sample()
    receiver = adapter(paypal.base)

    receiver.parse(paypal.expected.to_request())
    receiver.parse(paypal.expected.to_request())
    assert paypal.tokens_issued == 1
    paypal.revoked = 1
    receiver.parse(paypal.expected.to_request())

    assert paypal.tokens_issued == 2


def test_a_stale_transmission_is_refused_without_asking_paypal(paypal: PaypalServer) -> None:
    paypal.expected = sample(now=NOW - 3600)

    with pytest.raises(TimestampOutOfTolerance):
        adapter(paypal.base).parse(paypal.expected.to_request())
    assert paypal.requests == []


@pytest.mark.parametrize("failure", ["bad credentials", "server error", "unreachable"])
def test_paypal_unable_to_answer_refuses_the_transmission(
    paypal: PaypalServer, failure: str
) -> None:
    paypal.expected = sample()
    api_base, secret = paypal.base, CLIENT_SECRET
    if failure == "bad credentials":
        secret = "wrong"
    elif failure == "server error":
        paypal.broken = True
    else:
        api_base = "http://127.0.0.1:9"  # discard port: nothing listens

    with pytest.raises(SignatureInvalid):
        adapter(api_base, secret).parse(paypal.expected.to_request())


def test_postback_mode_is_built_from_settings(paypal: PaypalServer) -> None:
    settings = ReceiverSettings.from_env(
        {
            "PAYPAL_WEBHOOK_ID": WEBHOOK_ID,
            "PAYPAL_VERIFY_MODE": "postback",
            "PAYPAL_CLIENT_ID": CLIENT_ID,
            "PAYPAL_CLIENT_SECRET": CLIENT_SECRET,
            "PAYPAL_API_BASE": paypal.base,
        }
    )
    paypal.expected = sample(now=time.time())  # the adapter reads the real clock

    [event] = PaypalAdapter.from_settings(settings).parse(paypal.expected.to_request())

    assert event.kind is EventKind.PAYMENT_SUCCEEDED
