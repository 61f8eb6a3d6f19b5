"""Outbound webhooks to subscriber URLs, signed as the Standard Webhooks spec says.

Each request carries `webhook-id` (the same on every retry of one event, for the subscriber to
deduplicate), `webhook-timestamp` and `webhook-signature`: `v1,<base64 HMAC-SHA256>` of
`id.timestamp.body` under each configured `whsec_` secret, so a secret can be rotated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable

from ledger.outbox import Notice
from workers.channels.base import Channel, post_json

_NAME_URL_CHARS_MAX = 240


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret (`whsec_` and base64; the prefix optional).

    Raises ValueError when it is not base64 or empty. Used for Yoco's inbound webhooks too.
    """
    body = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        raise ValueError("a Standard Webhooks secret must be base64 after whsec_") from None
    if not key:
        raise ValueError("a Standard Webhooks secret may not be empty")
    return key


def signature(keys: tuple[bytes, ...], msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The `webhook-signature` header value: one `v1,` entry per key, space-separated."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp_s, body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


class WebhookChannel(Channel):
    """One subscriber URL; deliveries are recorded per URL, so one failing never repeats another."""

    def __init__(
        self,
        url: str,
        secrets: tuple[str, ...],
        *,
        timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secrets:
            raise ValueError("an outbound webhook needs at least one secret")
        self.url = url
        self.name = f"webhook:{url[:_NAME_URL_CHARS_MAX]}"
        self._keys = tuple(secret_key(secret) for secret in secrets)
        self._timeout_s = timeout_s
        self._clock = clock

    def send(self, notice: Notice) -> None:
        msg_id = f"evt_{notice.id}"
        timestamp_s = int(self._clock())
        body = json.dumps(
            {
                "type": notice.event_type,
                "timestamp": notice.created_at.isoformat(),
                "data": notice.data,
            },
            separators=(",", ":"),
        ).encode()
        post_json(
            self.url,
            body,
            headers={
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp_s),
                "webhook-signature": signature(self._keys, msg_id, timestamp_s, body),
            },
            timeout_s=self._timeout_s,
        )
