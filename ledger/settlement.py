"""Verified gateway events applied to the ledger: top-ups credited, failures recorded, refunds
reversed. Never guessed, never twice.

The inbox row is locked and leaves `received` (or `parked`) in the same transaction as the
money it moves, so a redelivered job finds it done. Each transfer's idempotency key names the
top-up (one credit per top-up) or the refund's gateway event besides. A refund is matched to
the top-up its payment settled, never by reference alone, and never reverses more than was
credited.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledger.account import system_account_id
from ledger.errors import NotFound
from ledger.models import Category, InboxEvent, InboxStatus, SystemAccount, Topup, TopupStatus
from ledger.transfer import TransferRequest, transfer

# A refund can arrive before the capture it refunds; it waits this long between tries.
PARK_RETRY = timedelta(minutes=1)

Outcome = tuple[InboxStatus, str | None]


def apply_gateway_event(session: Session, inbox_id: int, *, now: datetime) -> InboxStatus:
    """Apply the inbox event `inbox_id` once; returns its status afterwards.

    An event applied or set aside before is left as it is. A business outcome (unknown
    reference, mismatch, refund ahead of its capture) is recorded on the row, not raised.
    Raises NotFound for an unknown id; database errors propagate for the caller to retry.
    """
    event = session.scalar(select(InboxEvent).where(InboxEvent.id == inbox_id).with_for_update())
    if event is None:
        raise NotFound(f"no inbox event with id {inbox_id}")
    if event.status not in (InboxStatus.RECEIVED, InboxStatus.PARKED):
        return InboxStatus(event.status)
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
        event.applied_at = now
    return status


def _payment_succeeded(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_reference(session, event.reference)
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
    return InboxStatus.APPLIED, None


def _payment_failed(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_reference(session, event.reference)
    if topup is None:
        return InboxStatus.NEEDS_REVIEW, f"no top-up matches reference {event.reference!r}"
    if topup.status == TopupStatus.PENDING:
        topup.status = TopupStatus.FAILED
        topup.settled_at = now
    # A failure after a success changes nothing; a later success still settles a failed one.
    return InboxStatus.APPLIED, None


def _refund_succeeded(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    topup = _topup_by_payment(session, event)
    if topup is None:
        return InboxStatus.PARKED, "waiting for the payment this refund reverses"
    mismatch = _mismatch(topup, event)
    if mismatch or event.amount_minor is None:
        return InboxStatus.NEEDS_REVIEW, mismatch or "the refund carries no amount"
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
            idempotency_key=f"gateway-refund:{event.gateway}:{event.event_id}",
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
    return InboxStatus.APPLIED, None


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
    )


def _nothing_to_do(session: Session, event: InboxEvent, now: datetime) -> Outcome:
    return InboxStatus.APPLIED, f"{event.kind}: no money moves"


def _topup_by_reference(session: Session, reference: str | None) -> Topup | None:
    try:
        topup_id = uuid.UUID(reference or "")
    except ValueError:
        return None
    return session.scalar(select(Topup).where(Topup.id == topup_id).with_for_update())


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
