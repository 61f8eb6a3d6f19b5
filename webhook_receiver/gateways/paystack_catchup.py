"""Catch-up from Paystack's transactions (`GET /transaction`, `from` an ISO 8601 time).

Pages by `page` and `perPage` (offset pagination) until `meta.pageCount`. A transaction
object is what a `charge.success` webhook carries as its `data`, and Paystack's webhook
event id is the event name with the transaction id, so a caught-up transaction has the same
inbox id as its webhook: a duplicate if the webhook came.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from webhook_receiver.errors import CatchupFailed, MalformedPayload
from webhook_receiver.gateways import paystack
from webhook_receiver.gateways.catchup_http import PAGES_MAX, Found, get_json
from webhook_receiver.gateways.catchup_settings import CatchupSettings

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
_EVENTS = {"success": "charge.success", "failed": "charge.failed"}


def fetch(settings: CatchupSettings, since: datetime) -> list[Found]:
    """Every successful or failed transaction since `since`."""
    if not settings.paystack_secret_key:
        raise CatchupFailed("PAYSTACK_SECRET_KEY is not set: give catch-up the secret key")
    headers = {"Authorization": f"Bearer {settings.paystack_secret_key}"}
    start = since.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    found: list[Found] = []
    for page in range(1, PAGES_MAX + 1):
        params = [("from", start), ("perPage", str(PAGE_SIZE)), ("page", str(page))]
        answer = get_json(
            f"{settings.paystack_api_base}/transaction",
            params,
            headers,
            timeout_s=settings.timeout_s,
        )
        data = answer.get("data")
        if answer.get("status") is not True or not isinstance(data, list):
            raise CatchupFailed(f"Paystack refused the list: {answer.get('message')!r}")
        for transaction in data:
            event = (
                _EVENTS.get(str(transaction.get("status")))
                if isinstance(transaction, dict)
                else None
            )
            if event is None:
                continue
            body = {"event": event, "data": transaction}
            try:
                found.extend((normalised, body) for normalised in paystack.normalise(body))
            except MalformedPayload as exc:
                logger.warning(
                    "Skipped a Paystack transaction the receiver could not read: %s.", exc
                )
        meta = answer.get("meta")
        page_count = meta.get("pageCount") if isinstance(meta, dict) else None
        if not data or not isinstance(page_count, int) or page >= page_count:
            return found
    raise CatchupFailed(f"Paystack's transactions ran past {PAGES_MAX} pages: narrow --since")
