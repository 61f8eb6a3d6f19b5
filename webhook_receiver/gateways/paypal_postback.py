"""PayPal's verify-webhook-signature API, asked to check a transmission (postback mode).

The event is spliced into the request as the exact bytes received: PayPal checks its CRC32 of
them, and a re-serialised event (other spacing, key order or escapes) would fail to verify.
An OAuth token from client credentials is cached until shortly before it expires.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from webhook_receiver.errors import SignatureInvalid

logger = logging.getLogger(__name__)

TIMEOUT_S = 5.0
RESPONSE_SIZE_MAX = 64 * 1024
# Renew a token this long before PayPal says it expires, so it never expires in flight.
_TOKEN_MARGIN_S = 60


class PostbackVerifier:
    """Asks PayPal's API whether a transmission is genuine. Thread-safe.

    `api_base` is e.g. https://api-m.paypal.com (or the sandbox); tests point it at a local
    server playing PayPal.
    """

    def __init__(
        self, api_base: str, client_id: str, client_secret: str, *, timeout_s: float = TIMEOUT_S
    ) -> None:
        if not api_base.startswith(("https://", "http://")):
            raise ValueError("api_base must be an http(s) URL")
        self._api_base = api_base.rstrip("/")
        credentials = f"{client_id}:{client_secret}".encode()
        self._basic = f"Basic {base64.b64encode(credentials).decode()}"
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at = 0.0

    def verify(self, fields: dict[str, str], event: bytes) -> bool:
        """Whether PayPal answers SUCCESS for this transmission.

        `fields` are the API's fields but `webhook_event` (auth_algo, cert_url, transmission_id,
        transmission_sig, transmission_time, webhook_id); `event` must be a JSON object's bytes.
        Raises SignatureInvalid when PayPal cannot be asked.
        """
        head = json.dumps(fields)
        payload = f'{head[:-1]}, "webhook_event": '.encode() + event + b"}"
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._access_token()}"}
            try:
                answer = self._post("/v1/notifications/verify-webhook-signature", payload, headers)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    self._forget_token()  # revoked or expired early: one fresh try
                    continue
                raise self._unavailable(exc) from None
            except (OSError, ValueError) as exc:
                raise self._unavailable(exc) from None
            return answer.get("verification_status") == "SUCCESS"
        raise SignatureInvalid("PayPal refused our credentials")

    def _access_token(self) -> str:
        with self._lock:
            if self._token is not None and time.monotonic() < self._token_expires_at:
                return self._token
        try:
            answer = self._post(
                "/v1/oauth2/token",
                b"grant_type=client_credentials",
                {"Authorization": self._basic, "Content-Type": "application/x-www-form-urlencoded"},
            )
        except (OSError, ValueError) as exc:
            raise self._unavailable(exc) from None
        token, expires_in = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, int):
            raise SignatureInvalid("PayPal's token answer is unreadable")
        with self._lock:
            self._token = token
            self._token_expires_at = time.monotonic() + expires_in - _TOKEN_MARGIN_S
        return token

    def _forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - api_base is an http(s) URL from settings
            self._api_base + path,
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
            raw = response.read(RESPONSE_SIZE_MAX + 1)
        if len(raw) > RESPONSE_SIZE_MAX:
            raise ValueError("PayPal's answer is too large")
        answer = json.loads(raw)
        if not isinstance(answer, dict):
            raise ValueError("PayPal's answer is not an object")
        return answer

    def _unavailable(self, exc: Exception) -> SignatureInvalid:
        logger.warning(
            "PayPal verification API at %s failed (%s).", self._api_base, type(exc).__name__
        )
        return SignatureInvalid("PayPal could not verify the transmission")
