"""Catch-up from Stripe's events list (`GET /v1/events`, newest first, 30 days back).

The events are the very ones Stripe's webhooks carry, with the same ids, so one the inbox
holds already is a duplicate there. Pages follow `has_more` with `starting_after` the last
event's id; `created[gte]` bounds the start.
"""

from __future__ import annotations

import logging
from datetime import datetime

from webhook_receiver.errors import CatchupFailed, MalformedPayload
from webhook_receiver.gateways import stripe
from webhook_receiver.gateways.catchup_http import PAGES_MAX, Found, get_json
from webhook_receiver.gateways.catchup_settings import CatchupSettings

logger = logging.getLogger(__name__)

PAGE_SIZE = 100
EVENT_TYPES = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "refund.created",
    "refund.updated",
)


def fetch(settings: CatchupSettings, since: datetime) -> list[Found]:
    """Every money event since `since`, with the event object it came from."""
    if not settings.stripe_api_key:
        raise CatchupFailed("STRIPE_API_KEY is not set: give catch-up a secret (sk_) key")
    headers = {"Authorization": f"Bearer {settings.stripe_api_key}"}
    found: list[Found] = []
    after: str | None = None
    for _ in range(PAGES_MAX):
        params = [("created[gte]", str(int(since.timestamp()))), ("limit", str(PAGE_SIZE))]
        params += [("types[]", name) for name in EVENT_TYPES]
        if after is not None:
            params.append(("starting_after", after))
        page = get_json(
            f"{settings.stripe_api_base}/v1/events", params, headers, timeout_s=settings.timeout_s
        )
        data = page.get("data")
        if not isinstance(data, list):
            raise CatchupFailed("Stripe's events list carried no data list")
        for event in data:
            if not isinstance(event, dict):
                continue
            try:
                found.extend((normalised, event) for normalised in stripe.normalise(event))
            except MalformedPayload as exc:
                logger.warning("Skipped a Stripe event the receiver could not read: %s.", exc)
        if not page.get("has_more") or not data:
            return found
        last = data[-1]
        after = last.get("id") if isinstance(last, dict) else None
        if not isinstance(after, str):
            raise CatchupFailed("Stripe's events list has more, but its last event has no id")
    raise CatchupFailed(f"Stripe's events list ran past {PAGES_MAX} pages: narrow --since")
