"""Catch-up from Razorpay's payments and refunds (`GET /v1/payments`, `GET /v1/refunds`).

Both list a collection (`items`) created between `from` and `to` (Unix seconds), `count` at a
time (at most 100) after skipping `skip`; a short page is the last. Razorpay's webhooks carry
their event id in a header the lists do not have, so a caught-up event's id derives from the
payment's or refund's own id (`catchup:payment.captured:pay_...`): a webhook of the same
payment is another inbox row, and the settlement's guards (the top-up's key and its unique
payment id; the refund's id) make the two move money once.
"""

from __future__ import annotations

import base64
import logging
import time
from datetime import datetime
from typing import Any

from webhook_receiver.errors import CatchupFailed, MalformedPayload
from webhook_receiver.gateways import razorpay
from webhook_receiver.gateways.catchup_http import PAGES_MAX, Found, get_json
from webhook_receiver.gateways.catchup_settings import CatchupSettings

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
_PAYMENT_EVENTS = {"captured": "payment.captured", "failed": "payment.failed"}
_REFUND_EVENTS = {"processed": "refund.processed", "failed": "refund.failed"}


def fetch(settings: CatchupSettings, since: datetime) -> list[Found]:
    """Every captured or failed payment and every settled refund since `since`."""
    if not (settings.razorpay_key_id and settings.razorpay_key_secret):
        raise CatchupFailed("RAZORPAY_KEY_ID and RAZORPAY_KEY_SECRET must both be set")
    credentials = f"{settings.razorpay_key_id}:{settings.razorpay_key_secret}".encode()
    headers = {"Authorization": f"Basic {base64.b64encode(credentials).decode()}"}
    window = (str(int(since.timestamp())), str(int(time.time())))
    found: list[Found] = []
    for entity in _listed(settings, "payments", window, headers):
        event = _PAYMENT_EVENTS.get(str(entity.get("status")))
        if event is not None:
            found.extend(_normalised(event, {"payment": {"entity": entity}}, entity))
    for entity in _listed(settings, "refunds", window, headers):
        event = _REFUND_EVENTS.get(str(entity.get("status")))
        if event is not None:
            found.extend(_normalised(event, {"refund": {"entity": entity}}, entity))
    return found


def _listed(
    settings: CatchupSettings, what: str, window: tuple[str, str], headers: dict[str, str]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in range(PAGES_MAX):
        params = [
            ("from", window[0]),
            ("to", window[1]),
            ("count", str(PAGE_SIZE)),
            ("skip", str(page * PAGE_SIZE)),
        ]
        answer = get_json(
            f"{settings.razorpay_api_base}/v1/{what}", params, headers, timeout_s=settings.timeout_s
        )
        batch = answer.get("items")
        if not isinstance(batch, list):
            raise CatchupFailed(f"Razorpay's {what} list carried no items")
        items.extend(item for item in batch if isinstance(item, dict))
        if len(batch) < PAGE_SIZE:
            return items
    raise CatchupFailed(f"Razorpay's {what} list ran past {PAGES_MAX} pages: narrow --since")


def _normalised(event: str, payload: dict[str, Any], entity: dict[str, Any]) -> list[Found]:
    body = {
        "entity": "event",
        "event": event,
        "payload": payload,
        "created_at": entity.get("created_at"),
    }
    try:
        return [
            (normalised, body)
            for normalised in razorpay.normalise(f"catchup:{event}:{entity.get('id')}", body)
        ]
    except MalformedPayload as exc:
        logger.warning("Skipped a Razorpay %s the receiver could not read: %s.", event, exc)
        return []
