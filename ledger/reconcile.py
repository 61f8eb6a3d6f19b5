"""Reconciliation: a gateway's own report compared with the ledger, line by line, and the
missing money repaired through the inbox, exactly as a late webhook would be.

Each line is matched by the gateway's payment id, else by our reference (the top-up id the
payment carried). The result sorts the lines into `matched`, `missing_in_ledger` (a capture
or refund the ledger never applied: a lost webhook), `mismatched` (amount or currency differ
from what was credited), and `missing_at_gateway` (credits of the report's period that the
report does not contain), with fee totals per currency.

Repairing records each missing capture or refund as an inbox event whose id derives from the
gateway's ids (`report:capture:<payment id>`, `report:refund:<refund id>`), and applies it with
the settlement code the workers run. A webhook for the same payment has another event id, so
both may sit in the inbox; what makes them move money once is the settlement's own guards:
the top-up's idempotency key (`topup:<id>`) and the unique (gateway, payment id) of top-ups for
a capture, and the refund's key (the gateway's refund id) for a refund. Lines that cannot be
applied as they stand (a mismatch, a dispute, an unknown reference) go to the review queue.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ledger import inbox, settlement
from ledger.models import InboxEvent, InboxStatus, ReconcileRun, Topup, TopupStatus, Transfer
from ledger.report_line import LineKind, ReportLine
from ledger.settlement import refund_key

logger = logging.getLogger(__name__)

RESULT_KEYS = ("matched", "missing_in_ledger", "missing_at_gateway", "mismatched", "fees")
_REPAIRABLE = {LineKind.CAPTURE: "payment_succeeded", LineKind.REFUND: "refund_succeeded"}


@dataclass
class Result:
    """What a comparison found; each entry a JSON object naming the line and the ledger's side."""

    matched: list[dict[str, Any]] = field(default_factory=list)
    missing_in_ledger: list[dict[str, Any]] = field(default_factory=list)
    missing_at_gateway: list[dict[str, Any]] = field(default_factory=list)
    mismatched: list[dict[str, Any]] = field(default_factory=list)
    fees: dict[str, int] = field(default_factory=dict)
    repairs: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "missing_in_ledger": self.missing_in_ledger,
            "missing_at_gateway": self.missing_at_gateway,
            "mismatched": self.mismatched,
            "fees": self.fees,
            "repairs": self.repairs,
        }

    def summary(self) -> dict[str, Any]:
        outcomes: dict[str, int] = defaultdict(int)
        for repair in self.repairs:
            outcomes[repair["outcome"]] += 1
        return {
            "matched": len(self.matched),
            "missing_in_ledger": len(self.missing_in_ledger),
            "missing_at_gateway": len(self.missing_at_gateway),
            "mismatched": len(self.mismatched),
            "fees": dict(self.fees),
            "repairs": dict(outcomes),
        }


def compare(session: Session, gateway: str, lines: Sequence[ReportLine]) -> Result:
    """Match every line of `gateway`'s report to the ledger; reads only, changes nothing."""
    result = Result()
    fees: dict[str, int] = defaultdict(int)
    for line in lines:
        if line.fee_minor:
            fees[line.fee_in] += line.fee_minor
        if line.kind is LineKind.FEE:
            fees[line.currency] += line.amount_minor
        elif line.kind is LineKind.CAPTURE:
            _compare_capture(session, gateway, line, result)
        elif line.kind is LineKind.REFUND:
            _compare_refund(session, gateway, line, result)
        elif line.kind in (LineKind.DISPUTE, LineKind.DISPUTE_REVERSAL):
            # The ledger reverses no dispute by itself: a person decides (review queue), and
            # once they have, the line is matched by that resolution.
            if _resolved(session, gateway, _event_id(line)):
                result.matched.append(_entry(line, detail="resolved in review"))
            else:
                result.missing_in_ledger.append(
                    _entry(line, detail=f"a {line.kind} the ledger does not reflect")
                )
    result.fees = dict(sorted(fees.items()))
    result.missing_at_gateway = _missing_at_gateway(session, gateway, lines)
    return result


def _compare_capture(session: Session, gateway: str, line: ReportLine, result: Result) -> None:
    topup = None
    if line.payment_id is not None:
        topup = session.scalar(
            select(Topup).where(Topup.gateway == gateway, Topup.payment_id == line.payment_id)
        )
    if topup is not None:
        if (topup.credited_minor, topup.currency) == (line.amount_minor, line.currency):
            result.matched.append(_entry(line, topup=topup))
        else:
            result.mismatched.append(
                _entry(
                    line,
                    topup=topup,
                    detail=f"the ledger credited {topup.credited_minor} {topup.currency}",
                )
            )
        return
    by_reference = _topup_by_reference(session, line.reference)
    if by_reference is None:
        detail = (
            "no top-up matches the payment or the reference"
            if line.reference
            else "the report names no reference and no top-up has this payment"
        )
        result.missing_in_ledger.append(_entry(line, detail=detail))
    elif by_reference.gateway != gateway:
        result.mismatched.append(
            _entry(line, topup=by_reference, detail=f"the top-up is a {by_reference.gateway} one")
        )
    elif by_reference.status == TopupStatus.SUCCEEDED:
        result.mismatched.append(
            _entry(
                line,
                topup=by_reference,
                detail=f"the top-up was settled by payment {by_reference.payment_id}",
            )
        )
    else:
        result.missing_in_ledger.append(
            _entry(line, topup=by_reference, detail="captured at the gateway, never credited")
        )


def _compare_refund(session: Session, gateway: str, line: ReportLine, result: Result) -> None:
    topup = None
    if line.payment_id is not None:
        topup = session.scalar(
            select(Topup).where(Topup.gateway == gateway, Topup.payment_id == line.payment_id)
        )
    if line.refund_id is not None and _refund_reflected(session, gateway, line.refund_id):
        result.matched.append(_entry(line, topup=topup))
    elif topup is None:
        result.missing_in_ledger.append(
            _entry(line, detail="a refund of a payment the ledger never credited")
        )
    else:
        result.missing_in_ledger.append(
            _entry(line, topup=topup, detail="refunded at the gateway, not reversed here")
        )


def _refund_reflected(session: Session, gateway: str, refund_id: str) -> bool:
    key = refund_key(gateway, "", refund_id)
    if session.scalar(select(Transfer.id).where(Transfer.idempotency_key == key)) is not None:
        return True
    # Refunds applied before events carried the refund id are known by their inbox row.
    return (
        session.scalar(
            select(InboxEvent.id).where(
                InboxEvent.gateway == gateway,
                InboxEvent.refund_id == refund_id,
                InboxEvent.kind == "refund_succeeded",
                InboxEvent.status == InboxStatus.APPLIED,
            )
        )
        is not None
    )


def _missing_at_gateway(
    session: Session, gateway: str, lines: Sequence[ReportLine]
) -> list[dict[str, Any]]:
    """Credits of this gateway settled within the report's period that it does not contain."""
    captures = [line for line in lines if line.kind is LineKind.CAPTURE]
    times = [line.occurred_at for line in captures if line.occurred_at is not None]
    if not times:
        return []
    reported = {line.payment_id for line in captures}
    rows = session.scalars(
        select(Topup)
        .where(
            Topup.gateway == gateway,
            Topup.status == TopupStatus.SUCCEEDED,
            Topup.settled_at >= min(times),
            Topup.settled_at <= max(times),
        )
        .order_by(Topup.settled_at)
    )
    return [
        {
            "topup_id": str(topup.id),
            "wallet_id": str(topup.wallet_id),
            "payment_id": topup.payment_id,
            "amount_minor": topup.credited_minor,
            "currency": topup.currency,
            "settled_at": topup.settled_at.isoformat() if topup.settled_at else None,
        }
        for topup in rows
        if topup.payment_id not in reported
    ]


def repair(
    session: Session, gateway: str, lines: Sequence[ReportLine], result: Result, *, now: datetime
) -> list[int]:
    """Record what `result` found missing or mismatched as inbox events and apply them now.

    Missing captures and refunds go through the settlement code (it credits, or parks for
    review what it cannot match); mismatches and disputes go straight to review. An event
    recorded by an earlier run is not recorded again. Returns the inbox ids that are still
    waiting (another worker holds them), for the caller to ring the workers about.
    """
    by_line = {line.line_id: line for line in lines}
    # (entry, event, straight to review?)
    planned: list[tuple[dict[str, Any], inbox.IncomingEvent, bool]] = []
    for entry in result.missing_in_ledger:
        line = by_line[entry["line_id"]]
        planned.append((entry, _incoming(gateway, line), line.kind not in _REPAIRABLE))
    for entry in result.mismatched:
        line = by_line[entry["line_id"]]
        if line.kind in _REPAIRABLE:
            planned.append((entry, _incoming(gateway, line), True))
    if not planned:
        return []
    session.flush()
    recorded = inbox.record_many(_psycopg(session), [event for _, event, _ in planned])
    applying: list[int] = []
    for (entry, event, review), outcome in zip(planned, recorded, strict=True):
        repaired: dict[str, Any] = {
            "line_id": entry["line_id"],
            "kind": entry["kind"],
            "event_id": event.event_id,
            "inbox_id": outcome.inbox_id,
        }
        if outcome.outcome not in (inbox.Outcome.NEW, inbox.Outcome.IGNORED):
            repaired["outcome"] = f"recorded before ({outcome.outcome})"
        elif review:
            _park(session, outcome.inbox_id, f"report: {entry.get('detail') or entry['kind']}")
            repaired["outcome"] = InboxStatus.NEEDS_REVIEW.value
        else:
            applying.append(outcome.inbox_id)
            repaired["outcome"] = "waiting"
        result.repairs.append(repaired)
    statuses: dict[int, InboxStatus] = {}
    while len(statuses) < len(applying):
        claimed = settlement.apply_inbox(
            session, now=now, only=[i for i in applying if i not in statuses], limit=len(applying)
        )
        if not claimed:
            break  # the rest are held by a worker, which applies them
        statuses.update(claimed)
    for repaired in result.repairs:
        status = statuses.get(repaired["inbox_id"])
        if status is not None:
            repaired["outcome"] = status.value
    return [i for i in applying if i not in statuses]


def _event_id(line: ReportLine) -> str:
    """The inbox event id of a repaired line: from the gateway's own ids, so every run (and
    every report that repeats the line) names the same event."""
    if line.kind is LineKind.REFUND and line.refund_id:
        return f"report:refund:{line.refund_id}"[:255]
    if line.kind is LineKind.CAPTURE and line.payment_id:
        return f"report:capture:{line.payment_id}"[:255]
    return f"report:{line.kind}:{line.line_id}"[:255]


def _resolved(session: Session, gateway: str, event_id: str) -> bool:
    status = session.scalar(
        select(InboxEvent.status).where(
            InboxEvent.gateway == gateway, InboxEvent.event_id == event_id
        )
    )
    return status == InboxStatus.RESOLVED


def _incoming(gateway: str, line: ReportLine) -> inbox.IncomingEvent:
    kind = _REPAIRABLE.get(line.kind, line.kind.value)
    event_id = _event_id(line)
    payload = {"report_line": line.line_id, "kind": line.kind.value, "row": line.raw}
    return inbox.IncomingEvent(
        gateway=gateway,
        event_id=event_id,
        kind=kind,
        actionable=line.kind in _REPAIRABLE,
        payment_id=line.payment_id,
        amount_minor=line.amount_minor or None,
        currency=line.currency,
        reference=line.reference,
        payment_method=None,
        occurred_at=line.occurred_at,
        payload=payload,
        body=json.dumps(payload, sort_keys=True, default=str).encode(),
        headers={"walletpipe-source": "reconcile"},
        refund_id=line.refund_id,
    )


def _park(session: Session, inbox_id: int, reason: str) -> None:
    session.execute(
        text(
            "UPDATE inbox_events SET status = 'needs_review', status_reason = :reason"
            " WHERE id = :id AND status IN ('received', 'ignored')"
        ),
        {"id": inbox_id, "reason": reason[: settlement.REASON_CHARS_MAX]},
    )


def store(
    session: Session,
    *,
    gateway: str,
    source_name: str,
    source: bytes,
    applied: bool,
    actor: str,
    result: Result,
) -> ReconcileRun:
    """Keep the run, its summary and its full result (walletctl reconcile list|show)."""
    run = ReconcileRun(
        gateway=gateway,
        source_name=source_name[:255],
        source_sha256=hashlib.sha256(source).digest(),
        applied=applied,
        actor=actor,
        summary=result.summary(),
        result=json.loads(json.dumps(result.as_dict(), default=str)),
    )
    session.add(run)
    session.flush()
    session.refresh(run)
    return run


def runs(session: Session, *, limit: int = 50) -> list[ReconcileRun]:
    return list(session.scalars(select(ReconcileRun).order_by(ReconcileRun.id.desc()).limit(limit)))


def _entry(
    line: ReportLine, *, topup: Topup | None = None, detail: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "line_id": line.line_id,
        "kind": line.kind.value,
        "payment_id": line.payment_id,
        "refund_id": line.refund_id,
        "reference": line.reference,
        "amount_minor": line.amount_minor,
        "currency": line.currency,
        "occurred_at": line.occurred_at.isoformat() if line.occurred_at else None,
    }
    if topup is not None:
        entry["topup_id"] = str(topup.id)
        entry["wallet_id"] = str(topup.wallet_id)
    if detail is not None:
        entry["detail"] = detail
    return entry


def _topup_by_reference(session: Session, reference: str | None) -> Topup | None:
    try:
        topup_id = uuid.UUID(reference or "")
    except ValueError:
        return None
    return session.get(Topup, topup_id)


def _psycopg(session: Session) -> psycopg.Connection[Any]:
    connection = session.connection().connection.driver_connection
    assert isinstance(connection, psycopg.Connection)
    return connection
