"""The inbox: verified gateway events made durable, once per gateway event id."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.models import InboxConflict, InboxEvent, InboxStatus

_EVENTS = cast(Table, InboxEvent.__table__)
_INSERT = (
    insert(_EVENTS)
    .on_conflict_do_nothing(index_elements=[_EVENTS.c.gateway, _EVENTS.c.event_id])
    .returning(_EVENTS.c.id)
)


class Outcome(enum.StrEnum):
    """What recording an event did."""

    NEW = "new"  # stored; apply it
    IGNORED = "ignored"  # stored; nothing to apply
    DUPLICATE = "duplicate"  # seen before with the same payload
    CONFLICT = "conflict"  # seen before with a different payload; kept for review


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """A verified, normalised gateway event as the inbox stores it."""

    gateway: str
    event_id: str
    kind: str
    actionable: bool
    payment_id: str | None
    amount_minor: int | None
    currency: str | None
    reference: str | None
    payment_method: str | None
    occurred_at: datetime | None
    payload: Any
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Recorded:
    inbox_id: int
    outcome: Outcome


def payload_digest(payload: Any) -> bytes:
    """SHA-256 of the payload's canonical JSON: equal payloads, equal digests."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).digest()


def storable(value: Any) -> Any:
    """`value` as PostgreSQL's jsonb can hold it: no NUL, no lone surrogate in any string.

    A gateway may carry either in a customer's free text; the raw body keeps the exact bytes.
    """
    if isinstance(value, str):
        return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def record(session: Session, event: IncomingEvent) -> Recorded:
    """Store a verified event unless its gateway event id is known already.

    A known id with the same payload is a duplicate; with a different payload it is kept in
    inbox_conflicts for review and never applied. Commits with the caller's transaction.
    """
    digest = payload_digest(event.payload)
    # Core execution on the session's connection: the ORM's statement machinery is most of a
    # webhook's cost on the client.
    inserted = (
        session.connection()
        .execute(
            _INSERT,
            {
                "gateway": event.gateway,
                "event_id": event.event_id,
                "kind": event.kind,
                "payment_id": event.payment_id,
                "amount_minor": event.amount_minor,
                "currency": event.currency,
                "reference": event.reference,
                "payment_method": event.payment_method,
                "occurred_at": event.occurred_at,
                "payload": storable(event.payload),
                "payload_sha256": digest,
                "body": event.body,
                "headers": event.headers,
                "status": InboxStatus.RECEIVED if event.actionable else InboxStatus.IGNORED,
            },
        )
        .scalar_one_or_none()
    )
    if inserted is not None:
        return Recorded(inserted, Outcome.NEW if event.actionable else Outcome.IGNORED)
    known_id, known_digest = session.execute(
        select(InboxEvent.id, InboxEvent.payload_sha256).where(
            InboxEvent.gateway == event.gateway, InboxEvent.event_id == event.event_id
        )
    ).one()
    if known_digest == digest:
        return Recorded(known_id, Outcome.DUPLICATE)
    session.add(
        InboxConflict(
            inbox_event_id=known_id,
            payload=storable(event.payload),
            payload_sha256=digest,
            body=event.body,
            headers=event.headers,
        )
    )
    return Recorded(known_id, Outcome.CONFLICT)
