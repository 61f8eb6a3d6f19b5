"""The review queue: inbox events set aside as needs_review, and repeats of a known event id
that came with another payload (inbox conflicts), each until an operator resolves it.

A resolution happens once per item, and the database says so: the event leaves needs_review
by a guarded UPDATE, and the resolution row's unique key names the item. Money moves only by
ledger transfers whose idempotency keys are those of the normal path (`topup:<id>` for a
credited top-up, the refund's key for a reversal), so a webhook arriving after a resolution
cannot move the money a second time. Each resolution is audited: who, when, the note.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ledger import audit, outbox
from ledger.account import get_wallet, system_account_id
from ledger.errors import ReviewActionRefused, ReviewAlreadyResolved, ReviewItemNotFound
from ledger.models import (
    Category,
    InboxConflict,
    InboxEvent,
    InboxStatus,
    ReviewAction,
    ReviewResolution,
    SystemAccount,
    Topup,
    TopupStatus,
)
from ledger.review_reason import ReviewCode, code_of, code_sql
from ledger.settlement import refund_key
from ledger.transfer import TransferRequest, transfer

LIST_LIMIT_MAX = 500
NOTE_CHARS_MAX = 2000
CONFLICT_REASON = "the gateway sent this event id again with a different payload"


class ItemKind(enum.StrEnum):
    EVENT = "event"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class ItemId:
    """`event-<inbox id>` or `conflict-<conflict id>`: one id space for both kinds of item."""

    kind: ItemKind
    number: int

    def __str__(self) -> str:
        return f"{self.kind}-{self.number}"

    @classmethod
    def parse(cls, value: str) -> ItemId:
        """Raises ReviewItemNotFound for anything but event-N or conflict-N."""
        kind, _, number = value.strip().partition("-")
        # 18 digits at most: any more could not be a bigint id (and must not reach a query).
        if (
            kind not in (ItemKind.EVENT, ItemKind.CONFLICT)
            or not (number.isascii() and number.isdigit())
            or len(number) > 18
        ):
            raise ReviewItemNotFound(f"no review item {value!r}: ids read event-N or conflict-N")
        return cls(ItemKind(kind), int(number))


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: str
    gateway: str
    event_id: str
    kind: str
    payment_id: str | None
    amount_minor: int | None
    currency: str | None
    reference: str | None
    reason: str
    code: ReviewCode
    received_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "gateway": self.gateway,
            "event_id": self.event_id,
            "kind": self.kind,
            "payment_id": self.payment_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "reference": self.reference,
            "reason": self.reason,
            "reason_code": self.code.value,
            "received_at": self.received_at.isoformat(),
        }


# Open items of both kinds, oldest first; the events' arm is ix_inbox_events_needs_review's.
_OPEN = f"""
    SELECT 'event-' || e.id AS id, e.gateway, e.event_id, e.kind, e.payment_id, e.amount_minor,
           e.currency, e.reference, coalesce(e.status_reason, '') AS reason,
           {code_sql("coalesce(e.status_reason, '')")} AS code, e.received_at
    FROM inbox_events e
    WHERE e.status = 'needs_review'
    UNION ALL
    SELECT 'conflict-' || c.id, e.gateway, e.event_id, e.kind, e.payment_id, e.amount_minor,
           e.currency, e.reference, '{CONFLICT_REASON}', '{ReviewCode.PAYLOAD_CONFLICT.value}',
           c.received_at
    FROM inbox_conflicts c
    JOIN inbox_events e ON e.id = c.inbox_event_id
    WHERE NOT EXISTS (SELECT 1 FROM review_resolutions r WHERE r.inbox_conflict_id = c.id)
"""
# For /metrics: open items per reason code.
COUNT_BY_CODE_SQL = f"SELECT code AS label, count(*) AS value FROM ({_OPEN}) AS open GROUP BY code"


def list_items(
    session: Session,
    *,
    gateway: str | None = None,
    code: ReviewCode | None = None,
    limit: int = 100,
) -> list[ReviewItem]:
    """Open review items, oldest first, optionally of one gateway or one reason code."""
    rows = session.execute(
        text(
            f"SELECT * FROM ({_OPEN}) AS open"
            " WHERE (CAST(:gateway AS text) IS NULL OR gateway = :gateway)"
            " AND (CAST(:code AS text) IS NULL OR code = :code)"
            " ORDER BY received_at, id LIMIT :limit"
        ),
        {
            "gateway": gateway,
            "code": None if code is None else code.value,
            "limit": max(1, min(limit, LIST_LIMIT_MAX)),
        },
    )
    return [
        ReviewItem(
            id=row.id,
            gateway=row.gateway,
            event_id=row.event_id,
            kind=row.kind,
            payment_id=row.payment_id,
            amount_minor=row.amount_minor,
            currency=row.currency,
            reference=row.reference,
            reason=row.reason,
            code=ReviewCode(row.code),
            received_at=row.received_at,
        )
        for row in rows
    ]


def show(session: Session, item: str) -> dict[str, Any]:
    """An item in full: its normalised event, reason, the top-up its reference names, the raw
    payload, and its resolution once there is one. Raises ReviewItemNotFound."""
    item_id = ItemId.parse(item)
    conflict: InboxConflict | None = None
    if item_id.kind is ItemKind.CONFLICT:
        conflict = session.get(InboxConflict, item_id.number)
        if conflict is None:
            raise ReviewItemNotFound(f"no review item {item_id}")
        event = session.get(InboxEvent, conflict.inbox_event_id)
    else:
        event = session.get(InboxEvent, item_id.number)
    if event is None or (
        conflict is None and event.status not in (InboxStatus.NEEDS_REVIEW, InboxStatus.RESOLVED)
    ):
        raise ReviewItemNotFound(f"no review item {item_id}")
    reason = CONFLICT_REASON if conflict is not None else event.status_reason or ""
    resolution = session.scalar(
        select(ReviewResolution).where(
            ReviewResolution.inbox_conflict_id == item_id.number
            if conflict is not None
            else ReviewResolution.inbox_event_id == item_id.number
        )
    )
    topup = _named_topup(session, event.reference)
    return {
        "id": str(item_id),
        "status": "resolved" if resolution is not None else "open",
        "reason": reason,
        "reason_code": (
            ReviewCode.PAYLOAD_CONFLICT if conflict is not None else code_of(reason)
        ).value,
        "event": {
            "inbox_id": event.id,
            "gateway": event.gateway,
            "event_id": event.event_id,
            "kind": event.kind,
            "payment_id": event.payment_id,
            "refund_id": event.refund_id,
            "amount_minor": event.amount_minor,
            "currency": event.currency,
            "reference": event.reference,
            "payment_method": event.payment_method,
            "occurred_at": event.occurred_at.isoformat() if event.occurred_at else None,
            "received_at": event.received_at.isoformat(),
        },
        "topup": None
        if topup is None
        else {
            "id": str(topup.id),
            "wallet_id": str(topup.wallet_id),
            "gateway": topup.gateway,
            "amount_minor": topup.amount_minor,
            "currency": topup.currency,
            "status": topup.status,
            "payment_id": topup.payment_id,
            "credited_minor": topup.credited_minor,
            "refunded_minor": topup.refunded_minor,
        },
        "payload": event.payload,
        "conflicting_payload": None if conflict is None else conflict.payload,
        "resolution": None if resolution is None else resolution_view(resolution),
    }


def resolution_view(row: ReviewResolution) -> dict[str, Any]:
    return {
        "action": row.action,
        "topup_id": None if row.topup_id is None else str(row.topup_id),
        "wallet_id": None if row.wallet_id is None else str(row.wallet_id),
        "transfer_id": row.transfer_id,
        "actor": row.actor,
        "note": row.note,
        "resolved_at": row.resolved_at.isoformat(),
    }


def resolve(
    session: Session,
    item: str,
    *,
    action: ReviewAction,
    note: str,
    actor: str,
    topup_id: uuid.UUID | None = None,
    wallet_id: uuid.UUID | None = None,
) -> ReviewResolution:
    """Resolve an open item once: credit the top-up the event was meant for, credit a wallet
    with what the gateway captured, or dismiss it; audited with `actor` and `note`.

    Raises ReviewItemNotFound, ReviewAlreadyResolved (also when another operator resolves it
    at the same moment: the database lets one through), ReviewActionRefused when the action
    does not fit the item, and the ledger's own errors (CurrencyMismatch ...). On a raised
    error nothing is written.
    """
    note = note.strip()
    if not 0 < len(note) <= NOTE_CHARS_MAX:
        raise ReviewActionRefused(f"a resolution needs a note of 1 to {NOTE_CHARS_MAX} characters")
    item_id = ItemId.parse(item)
    if item_id.kind is ItemKind.CONFLICT:
        if action is not ReviewAction.DISMISS:
            raise ReviewActionRefused(
                "a payload conflict can only be dismissed: the event it repeats was applied "
                "(or parked) on its own; correct a wallet with `walletctl adjust` if needed"
            )
        event = _claim_conflict(session, item_id)
    else:
        event = _claim_event(session, item_id)
    transfer_id: int | None = None
    if action is ReviewAction.APPLY_TO_TOPUP:
        if topup_id is None:
            raise ReviewActionRefused("apply-to-topup needs the top-up's id")
        transfer_id, wallet_id = _apply_to_topup(session, event, topup_id, item_id)
    elif action is ReviewAction.CREDIT_WALLET:
        if wallet_id is None:
            raise ReviewActionRefused("credit-wallet needs the wallet's id")
        transfer_id = _credit_wallet(session, event, wallet_id, item_id)
    resolution = ReviewResolution(
        inbox_event_id=item_id.number if item_id.kind is ItemKind.EVENT else None,
        inbox_conflict_id=item_id.number if item_id.kind is ItemKind.CONFLICT else None,
        action=action.value,
        topup_id=topup_id if action is ReviewAction.APPLY_TO_TOPUP else None,
        wallet_id=wallet_id if action is not ReviewAction.DISMISS else None,
        transfer_id=transfer_id,
        actor=actor,
        note=note,
    )
    session.add(resolution)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"review.resolve.{action.value}",
        subject=str(item_id),
        details={
            "note": note,
            "transfer_id": transfer_id,
            "topup_id": None if topup_id is None else str(topup_id),
            "wallet_id": None if wallet_id is None else str(wallet_id),
            "gateway": event.gateway,
            "event_id": event.event_id,
        },
    )
    session.refresh(resolution)
    return resolution


def _claim_event(session: Session, item_id: ItemId) -> InboxEvent:
    """Move the event out of needs_review, or raise: the guard that makes a resolution once."""
    claimed = session.execute(
        text(
            "UPDATE inbox_events SET status = 'resolved', retry_at = NULL"
            " WHERE id = :id AND status = 'needs_review' RETURNING id"
        ),
        {"id": item_id.number},
    ).scalar()
    if claimed is None:
        status = session.scalar(select(InboxEvent.status).where(InboxEvent.id == item_id.number))
        if status == InboxStatus.RESOLVED:
            raise ReviewAlreadyResolved(f"review item {item_id} was resolved already")
        raise ReviewItemNotFound(f"no open review item {item_id}")
    event = session.scalar(
        select(InboxEvent)
        .where(InboxEvent.id == item_id.number)
        .execution_options(populate_existing=True)
    )
    assert event is not None
    return event


def _claim_conflict(session: Session, item_id: ItemId) -> InboxEvent:
    conflict = session.get(InboxConflict, item_id.number, with_for_update=True)
    if conflict is None:
        raise ReviewItemNotFound(f"no review item {item_id}")
    done = session.scalar(
        select(ReviewResolution.id).where(ReviewResolution.inbox_conflict_id == conflict.id)
    )
    if done is not None:
        raise ReviewAlreadyResolved(f"review item {item_id} was resolved already")
    event = session.get(InboxEvent, conflict.inbox_event_id)
    assert event is not None
    return event


def _apply_to_topup(
    session: Session, event: InboxEvent, topup_id: uuid.UUID, item_id: ItemId
) -> tuple[int, uuid.UUID]:
    topup = session.scalar(
        select(Topup)
        .where(Topup.id == topup_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if topup is None:
        raise ReviewActionRefused(f"no top-up with id {topup_id}")
    if event.amount_minor is None or event.currency is None or event.payment_id is None:
        raise ReviewActionRefused(f"event {item_id} names no amount, currency or payment")
    if (topup.gateway, topup.currency) != (event.gateway, event.currency):
        raise ReviewActionRefused(
            f"top-up {topup.id} is a {topup.gateway} top-up in {topup.currency}; the event is "
            f"{event.gateway} in {event.currency}: credit a wallet in that currency instead"
        )
    if event.kind == "payment_succeeded":
        return _credit_topup(session, event, topup), topup.wallet_id
    if event.kind in ("refund_succeeded", "dispute"):
        # A chargeback took the money back like a refund did: reversed the same way, forced.
        return _reverse_topup(session, event, topup), topup.wallet_id
    raise ReviewActionRefused(f"a {event.kind} event moves no money; dismiss it")


def _credit_topup(session: Session, event: InboxEvent, topup: Topup) -> int:
    assert event.amount_minor is not None
    if topup.status == TopupStatus.SUCCEEDED:
        raise ReviewActionRefused(
            f"top-up {topup.id} was credited already (payment {topup.payment_id}); "
            "credit a wallet instead if this capture is owed to someone"
        )
    claimed_by = session.scalar(
        select(Topup.id).where(Topup.gateway == event.gateway, Topup.payment_id == event.payment_id)
    )
    if claimed_by is not None:
        raise ReviewActionRefused(f"payment {event.payment_id} settled top-up {claimed_by}")
    clearing = system_account_id(session, SystemAccount.clearing(topup.gateway), topup.currency)
    applied = transfer(
        session,
        TransferRequest(
            # The key of the normal path: a late webhook for this top-up cannot credit again.
            idempotency_key=f"topup:{topup.id}",
            debit_account_id=clearing,
            credit_account_id=topup.wallet_id,
            amount_minor=event.amount_minor,
            currency=topup.currency,
            category=Category.TOPUP,
            memo=f"{topup.gateway} payment {event.payment_id} (review)",
        ),
    )
    topup.status = TopupStatus.SUCCEEDED
    topup.payment_id = event.payment_id
    topup.credited_minor = event.amount_minor
    topup.settled_at = _database_now(session)
    outbox.emit_for_wallet(
        session,
        "wallet.credited",
        key=f"wallet.credited:topup:{topup.id}",
        wallet_id=topup.wallet_id,
        data={
            "topup_id": str(topup.id),
            "amount_minor": event.amount_minor,
            "gateway": topup.gateway,
            "payment_id": event.payment_id,
            "payment_method": event.payment_method,
        },
    )
    return applied.transfer.id


def _reverse_topup(session: Session, event: InboxEvent, topup: Topup) -> int:
    assert event.amount_minor is not None
    if topup.status != TopupStatus.SUCCEEDED:
        raise ReviewActionRefused(f"top-up {topup.id} was never credited; nothing to reverse")
    if topup.refunded_minor + event.amount_minor > topup.credited_minor:
        raise ReviewActionRefused(
            f"refunds of top-up {topup.id} would exceed the {topup.credited_minor} credited"
        )
    clearing = system_account_id(session, SystemAccount.clearing(topup.gateway), topup.currency)
    applied = transfer(
        session,
        TransferRequest(
            idempotency_key=refund_key(event.gateway, event.event_id, event.refund_id),
            debit_account_id=topup.wallet_id,
            credit_account_id=clearing,
            amount_minor=event.amount_minor,
            currency=topup.currency,
            category=Category.TOPUP_REVERSAL,
            forced=True,
            memo=f"{topup.gateway} refund of payment {topup.payment_id} (review)",
        ),
    )
    if not applied.replayed:
        topup.refunded_minor += event.amount_minor
    return applied.transfer.id


def _credit_wallet(
    session: Session, event: InboxEvent, wallet_id: uuid.UUID, item_id: ItemId
) -> int:
    if event.kind != "payment_succeeded" or event.amount_minor is None or event.currency is None:
        raise ReviewActionRefused(
            f"only a captured payment credits a wallet; {item_id} is a {event.kind} event"
        )
    wallet = get_wallet(session, wallet_id)
    if wallet.currency != event.currency:
        raise ReviewActionRefused(
            f"wallet {wallet_id} is in {wallet.currency}; the capture is in {event.currency}"
        )
    clearing = system_account_id(session, SystemAccount.clearing(event.gateway), event.currency)
    applied = transfer(
        session,
        TransferRequest(
            idempotency_key=f"review:{item_id}:credit",
            debit_account_id=clearing,
            credit_account_id=wallet.id,
            amount_minor=event.amount_minor,
            currency=event.currency,
            category=Category.TOPUP,
            memo=f"{event.gateway} payment {event.payment_id} (review {item_id})",
        ),
    )
    outbox.emit_for_wallet(
        session,
        "wallet.credited",
        key=f"wallet.credited:review:{item_id}",
        wallet_id=wallet.id,
        data={
            "amount_minor": event.amount_minor,
            "gateway": event.gateway,
            "payment_id": event.payment_id,
            "review_item": str(item_id),
        },
    )
    return applied.transfer.id


def _database_now(session: Session) -> datetime:
    """The database's clock, so settled_at compares with the rows the workers settle."""
    now: datetime = session.execute(text("SELECT now()")).scalar_one()
    return now


def _named_topup(session: Session, reference: str | None) -> Topup | None:
    try:
        topup_id = uuid.UUID(reference or "")
    except ValueError:
        return None
    return session.get(Topup, topup_id)
