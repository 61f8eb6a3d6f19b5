"""Verified gateway events applied to the ledger: top-ups credited, failures recorded, refunds
reversed. Never guessed, never twice.

Workers claim waiting inbox rows in batches (`FOR UPDATE SKIP LOCKED`, so any number of them
share a backlog without waiting on each other), and each row leaves `received` (or `parked`)
in the same transaction as the money it moves and the outbox events that announce it, so a
row is applied once however often a worker is told to look.

The common case, a capture that settles its pending top-up, is applied for the whole batch in
a few statements: one multi-row INSERT of the transfers (the trigger keeps every guard, and the
rows go in wallet order, so two batches never lock two wallets in opposite orders), one UPDATE
of the top-ups and inbox rows, one INSERT of the outbox events. Everything else (failures,
refunds, mismatches, a second capture, anything the database refuses) takes the per-row path,
each row in a savepoint of its own, so one bad row neither aborts nor delays the others.

Each transfer's idempotency key names the top-up (one credit per top-up) or the refund's
gateway event besides. A refund is matched to the top-up its payment settled, never by
reference alone, and never reverses more than was credited.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.account import system_account_id
from ledger.errors import LedgerError
from ledger.models import (
    Category,
    InboxEvent,
    InboxStatus,
    SystemAccount,
    Topup,
    TopupStatus,
    Transfer,
)
from ledger.transfer import TransferRequest, bounded_key, transfer

logger = logging.getLogger(__name__)

# A refund can arrive before the capture it refunds; it waits this long between tries.
PARK_RETRY = timedelta(minutes=1)
# How many waiting events one transaction claims at most: enough that a commit serves many,
# few enough to keep the transaction, and the wallet locks it holds, short.
BATCH_MAX_DEFAULT = 32
REASON_CHARS_MAX = 500

Outcome = tuple[InboxStatus, str | None]

# Oldest first; rows other workers hold are skipped, never waited for.
_CLAIM = """
    SELECT id, gateway, kind, payment_id, amount_minor, currency, reference, payment_method
    FROM inbox_events
    WHERE (status = 'received' OR (status = 'parked' AND retry_at <= :now)) {only}
    ORDER BY id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
"""
_CLAIM_ANY = text(_CLAIM.format(only=""))
_CLAIM_ONLY = text(_CLAIM.format(only="AND id = ANY(CAST(:only AS bigint[]))"))
# The top-ups the claimed captures name, locked in id order (every batch locks them in the
# same order), with the top-up that already claimed the event's payment, if any.
_LOCK_TOPUPS = text(
    """
    SELECT t.id, t.wallet_id, t.gateway, t.currency, t.amount_minor, t.status,
           b.payment_id, c.id AS claimed_by
    FROM topups t
    JOIN unnest(CAST(:topup_ids AS uuid[]), CAST(:gateways AS text[]),
                CAST(:payment_ids AS text[])) AS b(topup_id, gateway, payment_id)
      ON t.id = b.topup_id
    LEFT JOIN topups c ON c.gateway = b.gateway AND c.payment_id = b.payment_id
    ORDER BY t.id
    FOR UPDATE OF t
    """
)
_CREDIT = text(
    """
    INSERT INTO transfers (idempotency_key, kind, category, debit_account_id,
                           credit_account_id, amount_minor, currency, forced, memo)
    SELECT b.key, 'posted', 'topup', b.debit, b.credit, b.amount_minor, b.currency, false, b.memo
    FROM unnest(CAST(:keys AS text[]), CAST(:debits AS uuid[]), CAST(:credits AS uuid[]),
                CAST(:amounts AS bigint[]), CAST(:currencies AS text[]), CAST(:memos AS text[]))
         WITH ORDINALITY AS b(key, debit, credit, amount_minor, currency, memo, ordinal)
    ORDER BY b.ordinal
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key
    """
)
_SETTLE = text(
    """
    WITH settled AS (
        UPDATE topups t
        SET status = 'succeeded', payment_id = b.payment_id, credited_minor = b.amount_minor,
            settled_at = :now
        FROM unnest(CAST(:topup_ids AS uuid[]), CAST(:payment_ids AS text[]),
                    CAST(:amounts AS bigint[])) AS b(topup_id, payment_id, amount_minor)
        WHERE t.id = b.topup_id AND t.status <> 'succeeded'
        RETURNING t.id
    )
    UPDATE inbox_events
    SET status = 'applied', status_reason = NULL, retry_at = NULL,
        applied_at = clock_timestamp()
    WHERE id = ANY(CAST(:inbox_ids AS bigint[]))
      AND (SELECT count(*) FROM settled) = cardinality(CAST(:topup_ids AS uuid[]))
    """
)


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    gateway: str
    kind: str
    payment_id: str | None
    amount_minor: int | None
    currency: str | None
    reference: str | None
    payment_method: str | None


@dataclass(frozen=True, slots=True)
class _Capture:
    """A claimed capture that settles its pending top-up as it stands: the set path's work."""

    event: _Claimed
    topup_id: uuid.UUID
    wallet_id: uuid.UUID
    gateway: str
    currency: str
    amount_minor: int


class _SetRefused(Exception):
    """The set path found the ledger other than its checks expected; the rows go one by one."""


def apply_inbox(
    session: Session,
    *,
    now: datetime,
    limit: int = BATCH_MAX_DEFAULT,
    only: Sequence[int] | None = None,
) -> dict[int, InboxStatus]:
    """Claim up to `limit` waiting inbox events and apply each once; their new statuses.

    Waiting means received, or parked with its retry time come; rows other transactions hold
    are skipped. `only` restricts the claim to those ids. An event applied or set aside before
    is not claimed. A business outcome (unknown reference, mismatch, refund ahead of its
    capture) is recorded on the row, not raised; so is a refusal by the ledger, which sets
    the row aside for review. A lost connection or a deadlock raises, changing nothing, for
    the caller to retry.
    """
    claim, parameters = (
        (_CLAIM_ANY, {"now": now, "limit": limit})
        if only is None
        else (_CLAIM_ONLY, {"now": now, "limit": limit, "only": list(only)})
    )
    claimed = [_Claimed(*row) for row in session.connection().execute(claim, parameters)]
    if not claimed:
        return {}
    captures, one_by_one = _split(session, claimed)
    statuses: dict[int, InboxStatus] = {}
    if captures:
        try:
            with session.begin_nested():
                _credit_captures(session, captures, now)
            statuses.update((c.event.id, InboxStatus.APPLIED) for c in captures)
        except OperationalError:
            raise  # the connection or the transaction is gone: nothing of the batch stays
        except (_SetRefused, LedgerError, SQLAlchemyError) as exc:
            logger.warning("A batch of %d captures goes one by one: %s.", len(captures), exc)
            one_by_one = sorted([*one_by_one, *(c.event.id for c in captures)])
    if one_by_one:
        statuses.update(_apply_one_by_one(session, one_by_one, now))
    return statuses


def _split(session: Session, claimed: list[_Claimed]) -> tuple[list[_Capture], list[int]]:
    """The captures the set path can take as they stand, and the ids of all the others."""
    candidates = {
        event.id: topup_id
        for event in claimed
        if event.kind == "payment_succeeded"
        and event.payment_id is not None
        and (topup_id := _topup_id(event.reference)) is not None
    }
    # By top-up and the payment that names it: two events may name one top-up.
    topups: dict[tuple[uuid.UUID, str | None], Any] = {}
    if candidates:
        named = [event for event in claimed if event.id in candidates]
        topups = {
            (row.id, row.payment_id): row
            for row in session.connection().execute(
                _LOCK_TOPUPS,
                {
                    "topup_ids": [candidates[event.id] for event in named],
                    "gateways": [event.gateway for event in named],
                    "payment_ids": [event.payment_id for event in named],
                },
            )
        }
    captures: list[_Capture] = []
    one_by_one: list[int] = []
    taken_topups: set[uuid.UUID] = set()
    taken_payments: set[tuple[str, str | None]] = set()
    for event in claimed:
        topup_id = candidates.get(event.id)
        topup = topups.get((topup_id, event.payment_id)) if topup_id else None
        payment = (event.gateway, event.payment_id)
        if (
            topup is None
            or topup.status == TopupStatus.SUCCEEDED
            or topup.claimed_by is not None
            or (topup.gateway, topup.currency, topup.amount_minor)
            != (event.gateway, event.currency, event.amount_minor)
            or topup.id in taken_topups
            or payment in taken_payments
        ):
            one_by_one.append(event.id)
            continue
        taken_topups.add(topup.id)
        taken_payments.add(payment)
        captures.append(
            _Capture(
                event, topup.id, topup.wallet_id, topup.gateway, topup.currency, topup.amount_minor
            )
        )
    return captures, one_by_one


def _credit_captures(session: Session, captures: list[_Capture], now: datetime) -> None:
    # Wallet order: the trigger locks each wallet as its transfer goes in.
    ordered = sorted(captures, key=lambda c: (c.wallet_id, c.event.id))
    connection = session.connection()
    keys = [f"topup:{c.topup_id}" for c in ordered]
    created = connection.execute(
        _CREDIT,
        {
            "keys": keys,
            "debits": [
                system_account_id(session, SystemAccount.clearing(c.gateway), c.currency)
                for c in ordered
            ],
            "credits": [c.wallet_id for c in ordered],
            "amounts": [c.amount_minor for c in ordered],
            "currencies": [c.currency for c in ordered],
            "memos": [f"{c.gateway} payment {c.event.payment_id}" for c in ordered],
        },
    ).all()
    if len(created) != len(ordered):
        raise _SetRefused("a top-up was credited before its row said so")
    settled = connection.execute(
        _SETTLE,
        {
            "now": now,
            "topup_ids": [c.topup_id for c in ordered],
            "payment_ids": [c.event.payment_id for c in ordered],
            "amounts": [c.amount_minor for c in ordered],
            "inbox_ids": [c.event.id for c in ordered],
        },
    )
    if settled.rowcount != len(ordered):
        raise _SetRefused("a top-up or inbox row changed under its lock")
    outbox.emit_many_for_wallets(
        session,
        "wallet.credited",
        [
            outbox.WalletFact(
                key=f"wallet.credited:topup:{c.topup_id}",
                wallet_id=c.wallet_id,
                data={
                    "topup_id": str(c.topup_id),
                    "amount_minor": c.amount_minor,
                    "gateway": c.gateway,
                    "payment_id": c.event.payment_id,
                    "payment_method": c.event.payment_method,
                },
                delta_minor=c.amount_minor,
            )
            for c in ordered
        ],
    )


def _apply_one_by_one(session: Session, ids: list[int], now: datetime) -> dict[int, InboxStatus]:
    """The per-row path, each row in a savepoint: a row the ledger refuses is set aside for
    review with the refusal as its reason, and the others go on."""
    events = session.scalars(
        select(InboxEvent)
        .where(InboxEvent.id.in_(ids))
        .order_by(InboxEvent.id)
        .execution_options(populate_existing=True)
    ).all()
    statuses: dict[int, InboxStatus] = {}
    for event in events:
        try:
            with session.begin_nested():
                statuses[event.id] = _apply(session, event, now)
        except OperationalError:
            raise  # the connection or the transaction is gone: nothing of the batch stays
        except Exception as exc:  # refused by a guard, or a defect: never block the others
            logger.exception("Inbox event %s was refused; set aside for review.", event.id)
            session.expire(event)
            event.status = InboxStatus.NEEDS_REVIEW
            event.status_reason = f"refused by the ledger: {type(exc).__name__}: {exc}"[
                :REASON_CHARS_MAX
            ]
            event.retry_at = None
            statuses[event.id] = InboxStatus.NEEDS_REVIEW
    session.flush()
    return statuses


def _apply(session: Session, event: InboxEvent, now: datetime) -> InboxStatus:
    outcome: Outcome
    if event.kind in _MATCHED_BY_PAYMENT and event.payment_id is None:
        # Without a payment id a lookup by it would match every top-up that has none.
        outcome = InboxStatus.NEEDS_REVIEW, "the event names no gateway payment"
    else:
        outcome = _HANDLERS.get(event.kind, _nothing_to_do)(session, event, now)
    status, reason = outcome
    event.status, event.status_reason = status, reason
    event.retry_at = now + PARK_RETRY if status is InboxStatus.PARKED else None
    if status is InboxStatus.APPLIED:
        # The database's clock, as for received_at, when the row is written: comparable
        # whichever machine the worker runs on.
        event.applied_at = func.clock_timestamp()
    return status


def _payment_succeeded(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_reference(session, event)
    if topup is None:
        return InboxStatus.NEEDS_REVIEW, f"no top-up matches reference {event.reference!r}"
    mismatch = _mismatch(topup, event)
    if mismatch:
        return InboxStatus.NEEDS_REVIEW, mismatch
    if event.amount_minor != topup.amount_minor:
        return (
            InboxStatus.NEEDS_REVIEW,
            f"captured {event.amount_minor} but top-up {topup.id} was for {topup.amount_minor}",
        )
    if topup.status == TopupStatus.SUCCEEDED:
        if topup.payment_id == event.payment_id:
            return InboxStatus.APPLIED, "this payment was credited already"
        return (
            InboxStatus.NEEDS_REVIEW,
            f"top-up {topup.id} was settled by payment {topup.payment_id} already",
        )
    claimed_by = session.scalar(
        select(Topup.id).where(Topup.gateway == event.gateway, Topup.payment_id == event.payment_id)
    )
    if claimed_by is not None:
        return InboxStatus.NEEDS_REVIEW, f"payment {event.payment_id} settled top-up {claimed_by}"
    clearing = system_account_id(session, SystemAccount.clearing(topup.gateway), topup.currency)
    transfer(
        session,
        TransferRequest(
            idempotency_key=f"topup:{topup.id}",
            debit_account_id=clearing,
            credit_account_id=topup.wallet_id,
            amount_minor=event.amount_minor,
            currency=topup.currency,
            category=Category.TOPUP,
            memo=f"{topup.gateway} payment {event.payment_id}",
        ),
    )
    topup.status = TopupStatus.SUCCEEDED
    topup.payment_id = event.payment_id
    topup.credited_minor = event.amount_minor
    topup.settled_at = now
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
    return InboxStatus.APPLIED, None


def _payment_failed(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_reference(session, event)
    if topup is None:
        return InboxStatus.NEEDS_REVIEW, f"no top-up matches reference {event.reference!r}"
    if topup.status == TopupStatus.PENDING:
        topup.status = TopupStatus.FAILED
        topup.settled_at = now
        outbox.emit_for_wallet(
            session,
            "topup.failed",
            key=f"topup.failed:{topup.id}",
            wallet_id=topup.wallet_id,
            data={
                "topup_id": str(topup.id),
                "amount_minor": topup.amount_minor,
                "gateway": topup.gateway,
            },
        )
    # A failure after a success changes nothing; a later success still settles a failed one.
    return InboxStatus.APPLIED, None


def _refund_succeeded(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_payment(session, event)
    if topup is None:
        return InboxStatus.PARKED, "waiting for the payment this refund reverses"
    mismatch = _mismatch(topup, event)
    if mismatch or event.amount_minor is None:
        return InboxStatus.NEEDS_REVIEW, mismatch or "the refund carries no amount"
    key = refund_key(event.gateway, event.event_id, event.refund_id)
    if session.scalar(select(Transfer.id).where(Transfer.idempotency_key == key)) is not None:
        # The same refund told twice (a webhook and a report, or two of its events): once.
        return InboxStatus.APPLIED, "this refund was reversed already"
    if topup.refunded_minor + event.amount_minor > topup.credited_minor:
        return (
            InboxStatus.NEEDS_REVIEW,
            f"refunds of top-up {topup.id} would exceed the {topup.credited_minor} credited",
        )
    clearing = system_account_id(session, SystemAccount.clearing(topup.gateway), topup.currency)
    # The money has left through the gateway: forced, even if it takes the wallet below zero.
    transfer(
        session,
        TransferRequest(
            idempotency_key=key,
            debit_account_id=topup.wallet_id,
            credit_account_id=clearing,
            amount_minor=event.amount_minor,
            currency=topup.currency,
            category=Category.TOPUP_REVERSAL,
            forced=True,
            memo=f"{topup.gateway} refund of payment {topup.payment_id}",
        ),
    )
    topup.refunded_minor += event.amount_minor
    key = f"{event.gateway}:{event.event_id}"
    outbox.emit_for_wallet(
        session,
        "topup.refunded",
        key=f"topup.refunded:{key}",
        wallet_id=topup.wallet_id,
        data={
            "topup_id": str(topup.id),
            "amount_minor": event.amount_minor,
            "refunded_minor": topup.refunded_minor,
            "gateway": topup.gateway,
        },
    )
    outbox.emit_if_now_negative(
        session, topup.wallet_id, event.amount_minor, cause=f"topup.refunded:{key}"
    )
    return InboxStatus.APPLIED, None


def refund_key(gateway: str, event_id: str, refund_id: str | None) -> str:
    """The idempotency key of a gateway refund's reversal: the gateway's refund id when the
    event names it (so every report of that refund shares it), else the event's id."""
    if refund_id:
        return bounded_key(f"gateway-refund:{gateway}:refund:{refund_id}")
    return bounded_key(f"gateway-refund:{gateway}:{event_id}")


def _refund_failed(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_payment(session, event)
    if topup is not None and topup.refunded_minor > 0:
        # The money came back after we reversed it: a person decides what to re-credit.
        return InboxStatus.NEEDS_REVIEW, f"a refund of top-up {topup.id} failed after its reversal"
    return InboxStatus.APPLIED, "refund failed at the gateway; nothing was reversed"


def _topup_by_payment(session: Session, event: InboxEvent) -> Topup | None:
    """The settled top-up this refund event's payment credited, locked; None if none yet."""
    return session.scalar(
        select(Topup)
        .where(
            Topup.gateway == event.gateway,
            Topup.payment_id == event.payment_id,
            Topup.status == TopupStatus.SUCCEEDED,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _nothing_to_do(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    return InboxStatus.APPLIED, f"{event.kind}: no money moves"


def _topup_id(reference: str | None) -> uuid.UUID | None:
    """The top-up id an event's reference carries, if it is one."""
    try:
        return uuid.UUID(reference or "")
    except ValueError:
        return None


def _topup_by_reference(session: Session, event: InboxEvent) -> Topup | None:
    topup_id = _topup_id(event.reference)
    if topup_id is None:
        return None
    return session.scalar(
        select(Topup)
        .where(Topup.id == topup_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _mismatch(topup: Topup, event: InboxEvent) -> str | None:
    if event.gateway != topup.gateway:
        return f"top-up {topup.id} was to be paid via {topup.gateway}, not {event.gateway}"
    if event.currency != topup.currency:
        return f"top-up {topup.id} is in {topup.currency}, the event in {event.currency}"
    return None


_HANDLERS: dict[str, Callable[[Session, InboxEvent, datetime], Outcome]] = {
    "payment_succeeded": _payment_succeeded,
    "payment_failed": _payment_failed,
    "refund_succeeded": _refund_succeeded,
    "refund_failed": _refund_failed,
}

# Kinds settled by matching the gateway's payment id (a capture claims it, a refund finds it).
_MATCHED_BY_PAYMENT = frozenset({"payment_succeeded", "refund_succeeded", "refund_failed"})
