"""The default certificate fetcher: a bounded GET that follows no redirect."""

from __future__ import annotations

import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from webhook_receiver.gateways.paypal_cert import CERT_SIZE_MAX, fetch_certificate

from .support import paypal_signer


class CertificateServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/v1/notifications/certs/CERT-1")
            self.end_headers()
            return
        payload = (
            b"x" * (CERT_SIZE_MAX + 1) if self.path == "/huge" else paypal_signer().certificate_pem
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), CertificateServer)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_the_default_fetcher_returns_the_served_certificate(server: str) -> None:
    pem = fetch_certificate(f"{server}/v1/notifications/certs/CERT-1")

    assert pem == paypal_signer().certificate_pem


def test_the_default_fetcher_follows_no_redirect(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError):
        fetch_certificate(f"{server}/redirect")


def test_the_default_fetcher_refuses_an_oversized_answer(server: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        fetch_certificate(f"{server}/huge")
