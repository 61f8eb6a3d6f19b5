"""PayPal's signing certificates: fetched only from PayPal's API hosts, checked, and cached.

Trust comes from where the certificate is fetched: an https URL on one of PayPal's API hosts,
whose TLS certificate urllib verifies against the system's CAs, without following redirects.
The certificate itself must name `messageverificationcerts.*.paypal.com` as its subject CN,
hold an RSA key, and be valid at the transmission time (not "now", so that a recorded
transmission can be checked; freshness is the adapter's tolerance check). Its issuer chain is
not re-validated here: the TLS fetch already authenticates PayPal as its source.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509.oid import NameOID

from webhook_receiver.errors import SignatureInvalid

logger = logging.getLogger(__name__)

ALLOWED_HOSTS = frozenset(
    {"api.paypal.com", "api.sandbox.paypal.com", "api-m.paypal.com", "api-m.sandbox.paypal.com"}
)
_CERT_PATH = re.compile(r"/v1/notifications/certs/[A-Za-z0-9_-]{1,128}")
_SUBJECT_CN = re.compile(r"messageverificationcerts(\.sandbox)?\.paypal\.com")
CERT_SIZE_MAX = 64 * 1024
FETCH_TIMEOUT_S = 5.0
CACHE_SIZE = 32

#: Returns the PEM served at a certificate URL; may raise anything on failure.
Fetcher = Callable[[str], bytes]


def check_cert_url(url: str) -> None:
    """Raise SignatureInvalid unless `url` is an https certificate URL on a PayPal API host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise SignatureInvalid("certificate URL unreadable") from None
    if (
        len(url) > 512
        or parts.scheme != "https"
        or parts.hostname not in ALLOWED_HOSTS
        or port not in (None, 443)
        or parts.username is not None
        or parts.query
        or parts.fragment
        or not _CERT_PATH.fullmatch(parts.path)
    ):
        raise SignatureInvalid("certificate URL is not on PayPal's certificate path")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError for the 3xx


def fetch_certificate(url: str) -> bytes:
    """GET `url` over verified TLS: no redirects, a 5 s timeout and a 64 KiB cap."""
    opener = urllib.request.build_opener(_NoRedirects)
    with opener.open(url, timeout=FETCH_TIMEOUT_S) as response:
        data: bytes = response.read(CERT_SIZE_MAX + 1)
    if len(data) > CERT_SIZE_MAX:
        raise ValueError("certificate response too large")
    return data


class CertificateStore:
    """PayPal certificates by URL: fetched once, checked, kept in a bounded LRU cache.

    Thread-safe. `fetcher` is injectable so tests can serve certificates they generate.
    """

    def __init__(self, fetcher: Fetcher = fetch_certificate, *, cache_size: int = CACHE_SIZE):
        self._fetcher = fetcher
        self._cache_size = cache_size
        self._cache: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def public_key(self, url: str, at: datetime) -> RSAPublicKey:
        """The RSA key of the certificate at `url`, valid at `at`.

        Raises SignatureInvalid when the URL is not allowed, the certificate cannot be fetched
        or read, names another subject, or was not valid at `at`.
        """
        check_cert_url(url)
        with self._lock:
            certificate = self._cache.get(url)
            if certificate is not None:
                self._cache.move_to_end(url)
        if certificate is None:
            certificate = self._load(url)
            with self._lock:
                self._cache[url] = certificate
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
            raise SignatureInvalid("PayPal certificate was not valid at the transmission time")
        key = certificate.public_key()
        assert isinstance(key, RSAPublicKey)  # checked by _load
        return key

    def _load(self, url: str) -> x509.Certificate:
        try:
            pem = self._fetcher(url)
        except Exception as exc:
            # Any failure of a pluggable network call: PayPal retries a non-2xx later.
            logger.warning(
                "PayPal certificate %s could not be fetched (%s).", url, type(exc).__name__
            )
            raise SignatureInvalid("PayPal certificate unavailable") from None
        try:
            # PayPal serves the leaf first, then its chain.
            certificate = x509.load_pem_x509_certificates(pem)[0]
            names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            key = certificate.public_key()
        except (ValueError, IndexError, TypeError, UnsupportedAlgorithm):
            raise SignatureInvalid("PayPal certificate unreadable") from None
        if not any(_SUBJECT_CN.fullmatch(str(name.value)) for name in names):
            raise SignatureInvalid("certificate is not a PayPal message verification certificate")
        if not isinstance(key, RSAPublicKey):
            raise SignatureInvalid("PayPal certificate does not hold an RSA key")
        return certificate
