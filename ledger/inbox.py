"""The inbox: verified gateway events made durable, once per gateway event id.

Events are stored in batches: the receiver's writer hands over the events of every request
waiting on it, and one statement stores them all. Duplicates are told apart by the gateway's
event id under the table's unique key, never by a check in Python.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy.orm import Session

from ledger.models import InboxStatus

# One statement for any number of events: the columns travel as arrays, so the statement's
# text never changes and psycopg prepares it once per connection.
_INSERT = """
    INSERT INTO inbox_events (gateway, event_id, kind, payment_id, amount_minor, currency,
                              reference, payment_method, occurred_at, payload, payload_sha256,
                              body, headers, status, refund_id)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[],
                         %s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::jsonb[],
                         %s::bytea[], %s::bytea[], %s::jsonb[], %s::text[], %s::text[])
    ON CONFLICT (gateway, event_id) DO NOTHING
    RETURNING id, gateway, event_id
"""
_KNOWN = """
    SELECT e.id, e.gateway, e.event_id, e.payload_sha256
    FROM inbox_events e
    JOIN unnest(%s::text[], %s::text[]) AS k(gateway, event_id)
      ON e.gateway = k.gateway AND e.event_id = k.event_id
"""
_CONFLICTS = """
    INSERT INTO inbox_conflicts (inbox_event_id, payload, payload_sha256, body, headers)
    SELECT * FROM unnest(%s::bigint[], %s::jsonb[], %s::bytea[], %s::bytea[], %s::jsonb[])
"""


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
    refund_id: str | None = None  # the gateway's id of the refund a refund event reports


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


def record_many(
    connection: psycopg.Connection[Any], events: Sequence[IncomingEvent]
) -> list[Recorded]:
    """Store verified events unless their gateway event id is known; one answer per event.

    A known id with the same payload is a duplicate; with a different payload it is kept in
    inbox_conflicts for review and never applied. The same id twice in `events` (a gateway
    sending one event on two connections at once) is stored once. Runs in the caller's
    transaction on `connection`: one INSERT when every event is new, two more statements
    when some are not.
    """
    digests = [payload_digest(event.payload) for event in events]
    first: dict[tuple[str, str], int] = {}  # event key -> index of its first occurrence
    for index, event in enumerate(events):
        first.setdefault((event.gateway, event.event_id), index)
    fresh = sorted(first.values())
    rows = [events[index] for index in fresh]
    payloads = [Jsonb(storable(event.payload)) for event in rows]
    inserted = {
        (gateway, event_id): int(id_)
        for id_, gateway, event_id in connection.execute(
            _INSERT,
            (
                [e.gateway for e in rows],
                [e.event_id for e in rows],
                [e.kind for e in rows],
                [e.payment_id for e in rows],
                [e.amount_minor for e in rows],
                [e.currency for e in rows],
                [e.reference for e in rows],
                [e.payment_method for e in rows],
                [e.occurred_at for e in rows],
                payloads,
                [digests[index] for index in fresh],
                [e.body for e in rows],
                [Jsonb(e.headers) for e in rows],
                [
                    InboxStatus.RECEIVED.value if e.actionable else InboxStatus.IGNORED.value
                    for e in rows
                ],
                [e.refund_id for e in rows],
            ),
        )
    }
    known: dict[tuple[str, str], tuple[int, bytes]] = {}
    missing = [key for key in first if key not in inserted]
    if missing:
        known = {
            (gateway, event_id): (int(id_), bytes(digest))
            for id_, gateway, event_id, digest in connection.execute(
                _KNOWN, ([key[0] for key in missing], [key[1] for key in missing])
            )
        }
    recorded: list[Recorded] = []
    conflicts: list[tuple[int, IncomingEvent, bytes]] = []
    for index, event in enumerate(events):
        key = (event.gateway, event.event_id)
        if key in inserted:
            inbox_id = inserted[key]
            if first[key] == index:
                outcome = Outcome.NEW if event.actionable else Outcome.IGNORED
                recorded.append(Recorded(inbox_id, outcome))
                continue
            stored_digest = digests[first[key]]
        else:
            inbox_id, stored_digest = known[key]
        if digests[index] == stored_digest:
            recorded.append(Recorded(inbox_id, Outcome.DUPLICATE))
        else:
            conflicts.append((inbox_id, event, digests[index]))
            recorded.append(Recorded(inbox_id, Outcome.CONFLICT))
    if conflicts:
        connection.execute(
            _CONFLICTS,
            (
                [inbox_id for inbox_id, _, _ in conflicts],
                [Jsonb(storable(event.payload)) for _, event, _ in conflicts],
                [digest for _, _, digest in conflicts],
                [event.body for _, event, _ in conflicts],
                [Jsonb(event.headers) for _, event, _ in conflicts],
            ),
        )
    return recorded


def record(session: Session, event: IncomingEvent) -> Recorded:
    """Store one verified event in the session's transaction (see `record_many`)."""
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, psycopg.Connection)
    return record_many(connection, [event])[0]
