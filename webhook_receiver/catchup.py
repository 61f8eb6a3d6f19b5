"""Catch-up: what a gateway's read API says happened since a time, recorded in the inbox where
the inbox lacks it, for the workers to apply exactly once.

The events go through the same normalisation as the gateway's webhooks and into the same
inbox (`record_many`); what the inbox has already (the same event id) is a duplicate there,
and what it has under another id (a webhook and a caught-up payment) is applied once by the
settlement's own guards.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger import inbox
from ledger.models import InboxEvent
from webhook_receiver.event import EventKind
from webhook_receiver.gateways.catchup import FETCHERS
from webhook_receiver.gateways.catchup_http import Found
from webhook_receiver.gateways.catchup_settings import CatchupSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaughtUp:
    gateway: str
    seen: int  # money events the gateway's API listed
    recorded: int  # new in the inbox: the workers apply them
    known: int  # the inbox had them already

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway,
            "seen": self.seen,
            "recorded": self.recorded,
            "known": self.known,
        }


def fetch(gateway: str, settings: CatchupSettings, since: datetime) -> list[Found]:
    """Ask the gateway's API (no database work); raises CatchupFailed, KeyError for a gateway
    without a read API."""
    return FETCHERS[gateway](settings, since)


def record(session: Session, gateway: str, found: list[Found]) -> CaughtUp:
    """Record the fetched events in the session's transaction; ring the workers after it."""
    # Only money events: a list may hold others (a filter the API ignored), of no use here.
    events = [
        _incoming(event, source) for event, source in found if event.kind is not EventKind.OTHER
    ]
    # An API's copy of an event differs in fields that change after delivery (Stripe's
    # pending_webhooks, say): recorded again it would read as a conflicting payload. So what
    # the inbox holds by id is left out; the unique key still settles a webhook racing this.
    known = set(
        session.scalars(
            select(InboxEvent.event_id).where(
                InboxEvent.gateway == gateway,
                InboxEvent.event_id.in_([event.event_id for event in events]),
            )
        )
    )
    fresh = [event for event in events if event.event_id not in known]
    recorded = 0
    if fresh:
        connection = session.connection().connection.driver_connection
        assert isinstance(connection, psycopg.Connection)
        outcomes = inbox.record_many(connection, fresh)
        recorded = sum(o.outcome in (inbox.Outcome.NEW, inbox.Outcome.IGNORED) for o in outcomes)
    logger.info(
        "Catch-up of %s: %d events listed, %d new in the inbox.", gateway, len(events), recorded
    )
    return CaughtUp(gateway, len(events), recorded, len(events) - recorded)


def _incoming(event: Any, source: dict[str, Any]) -> inbox.IncomingEvent:
    body = json.dumps(source, sort_keys=True, separators=(",", ":")).encode()
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
        body=body,
        headers={"walletpipe-source": "catch-up"},
        refund_id=event.refund_id,
    )
