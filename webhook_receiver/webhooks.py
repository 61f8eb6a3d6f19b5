"""POST /webhooks/<gateway>: verify, make durable, answer.

The gateway hears 2xx only once the event is committed to the inbox, by the process's writer
together with the events of other requests (webhook_receiver.inbox_writer). The writer rings
the workers' doorbell after the commit; a ring that fails is harmless: the relay rings again.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, g, jsonify, request

from ledger import inbox
from webhook_receiver import metrics
from webhook_receiver.errors import GatewayUnknown
from webhook_receiver.event import EventKind, GatewayEvent, RawRequest
from webhook_receiver.inbox_writer import StorageUnavailable
from webhook_receiver.problem import problem
from webhook_receiver.services import services

logger = logging.getLogger(__name__)
blueprint = Blueprint("webhooks", __name__)

# Headers worth keeping beside the raw body for audits; never cookies or credentials.
_KEPT_HEADER_PREFIXES = ("x-razorpay-", "stripe-", "paypal-", "webhook-", "x-paystack-")
_KEPT_HEADERS = {"content-type", "user-agent", "x-forwarded-for", "x-request-id"}
_HEADER_VALUE_MAX = 2048


def _raw_request() -> RawRequest:
    headers: dict[str, tuple[str, ...]] = {}
    for name, value in request.headers.items():
        headers.setdefault(name.lower(), ())
        headers[name.lower()] += (value,)
    return RawRequest(
        body=request.get_data(cache=False),
        headers=headers,
        remote_addr=request.remote_addr,
        content_type=request.content_type,
    )


def _kept_headers(raw: RawRequest) -> dict[str, str]:
    return {
        name: ", ".join(values)[:_HEADER_VALUE_MAX]
        for name, values in raw.headers.items()
        if name in _KEPT_HEADERS or name.startswith(_KEPT_HEADER_PREFIXES)
    }


def _incoming(event: GatewayEvent, raw: RawRequest, headers: dict[str, str]) -> inbox.IncomingEvent:
    return inbox.IncomingEvent(
        gateway=event.gateway,
        event_id=event.event_id,
        kind=event.kind.value,
        actionable=event.kind is not EventKind.OTHER,
        payment_id=event.payment_id,
        amount_minor=event.amount_minor,
        currency=event.currency,
        reference=event.reference,
        payment_method=event.payment_method,
        occurred_at=event.occurred_at,
        payload=event.payload,
        body=raw.body,
        headers=headers,
        refund_id=event.refund_id,
    )


def _answer(gateway: str, outcomes: list[inbox.Outcome]) -> Response:
    if gateway == "adyen":
        # Adyen's own test notifications require exactly this body.
        return Response("[accepted]", status=200, mimetype="text/plain")
    if inbox.Outcome.NEW in outcomes:
        status = "accepted"
    elif all(outcome is inbox.Outcome.IGNORED for outcome in outcomes):
        status = "ignored"
    else:
        status = "duplicate"
    return jsonify(status=status)


@blueprint.post("/webhooks/<gateway>")
def receive(gateway: str) -> Response:
    found = services()
    adapter = found.adapters.get(gateway)
    if adapter is None:
        raise GatewayUnknown(f"no configured gateway named {gateway[:40]!r}")
    raw = _raw_request()
    events = adapter.parse(raw)  # WebhookError becomes a 400 or 401 problem
    headers = _kept_headers(raw)
    try:
        recorded = found.inbox.store([_incoming(event, raw, headers) for event in events])
    except StorageUnavailable:
        logger.warning(
            "Could not store %s webhook; answering 503 so the gateway retries.",
            gateway,
            extra={"gateway": gateway, "request_id": g.request_id},
        )
        return problem(503, "Storage unavailable", "the event was not stored; retry later")
    for event, result in zip(events, recorded, strict=True):
        metrics.count_webhook(gateway, result.outcome.value)
        log = logger.warning if result.outcome is inbox.Outcome.CONFLICT else logger.info
        log(
            "Webhook %s %s: %s.",
            gateway,
            event.event_id,
            result.outcome,
            extra={
                "gateway": gateway,
                "event_id": event.event_id,
                "inbox_id": result.inbox_id,
                "request_id": g.request_id,
            },
        )
    return _answer(gateway, [result.outcome for result in recorded])
