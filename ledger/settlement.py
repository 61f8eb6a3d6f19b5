"""Verified gateway events applied to the ledger: top-ups credited, failures recorded, refunds
reversed. Never guessed, never twice.

The inbox row is locked and leaves `received` (or `parked`) in the same transaction as the
money it moves and the outbox events that announce it, so a redelivered job finds it done.
Each transfer's idempotency key names the top-up (one credit per top-up) or the refund's
gateway event besides. A refund is matched to the top-up its payment settled, never by
reference alone, and never reverses more than was credited.

A wallet receiving many top-ups at once is a hot row: every credit waits for the one before it
to commit. So the worker applying one capture also claims that wallet's other waiting captures
(rows other workers hold are skipped) and applies them in the same transaction, one commit for
the lot; each is still decided on its own, inside a savepoint of its own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import cast, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.types import Text

from ledger import outbox
from ledger.account import system_account_id
from ledger.errors import LedgerError, NotFound
from ledger.models import Category, InboxEvent, InboxStatus, SystemAccount, Topup, TopupStatus
from ledger.transfer import TransferRequest, bounded_key, transfer

logger = logging.getLogger(__name__)

# A refund can arrive before the capture it refunds; it waits this long between tries.
PARK_RETRY = timedelta(minutes=1)
# How many of a hot wallet's waiting captures one transaction applies at most, the first
# included: enough to turn a queue of row-lock waits into a few commits, few enough to keep a
# transaction short.
BATCH_MAX_DEFAULT = 32

Outcome = tuple[InboxStatus, str | None]
# Set in session.info by a capture that credited a wallet, for the batch to find its wallet.
_CREDITED_WALLET = "walletpipe.credited_wallet"


def apply_gateway_event(
    session: Session, inbox_id: int, *, now: datetime, batch_max: int = 1
) -> dict[int, InboxStatus]:
    """Apply the inbox event `inbox_id` once; returns the new status of each event it decided.

    With `batch_max` > 1 a capture brings along up to `batch_max - 1` other waiting captures
    of the same wallet, each applied as if on its own. An event applied or set aside before is
    left as it is, and the answer is empty. A business outcome (unknown reference, mismatch,
    refund ahead of its capture) is recorded on the row, not raised. Raises NotFound for an
    unknown id; database errors propagate for the caller to retry.
    """
    event = session.scalar(
        select(InboxEvent)
        .where(InboxEvent.id == inbox_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if event is None:
        raise NotFound(f"no inbox event with id {inbox_id}")
    if event.status not in (InboxStatus.RECEIVED, InboxStatus.PARKED):
        return {}
    session.info.pop(_CREDITED_WALLET, None)
    statuses = {inbox_id: _apply(session, event, now)}
    if batch_max > 1:
        wallet_id = session.info.pop(_CREDITED_WALLET, None)
        if wallet_id is not None:
            for companion in _waiting_captures(session, wallet_id, event.id, batch_max - 1):
                try:
                    with session.begin_nested():
                        statuses[companion.id] = _apply(session, companion, now)
                except (SQLAlchemyError, LedgerError):
                    # Rolled back to its savepoint and left waiting: its own job applies it,
                    # or fails with the error itself. The event this job was sent for is
                    # not held back by another's trouble.
                    logger.warning(
                        "Batched capture %s failed; left for its own job.",
                        companion.id,
                        exc_info=True,
                    )
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


def _waiting_captures(
    session: Session, wallet_id: uuid.UUID, besides: int, limit: int
) -> list[InboxEvent]:
    """Up to `limit` captures still waiting for the wallet's unsettled top-ups, locked.

    Driven from the wallet's unsettled top-ups (few, unless the wallet is hot, and then the
    limit stops the scan early): never a scan of every waiting event of every wallet.
    """
    return list(
        session.scalars(
            select(InboxEvent)
            .join(Topup, InboxEvent.reference == cast(Topup.id, Text))
            .where(
                Topup.wallet_id == wallet_id,
                Topup.status != TopupStatus.SUCCEEDED,
                InboxEvent.status == InboxStatus.RECEIVED,
                InboxEvent.kind == "payment_succeeded",
                InboxEvent.id != besides,
            )
            .limit(limit)
            # Their top-ups too, skipping any another worker holds: a companion never waits
            # on a lock while this transaction holds the wallet's row.
            .with_for_update(of=(InboxEvent, Topup), skip_locked=True)
            .execution_options(populate_existing=True)
        )
    )


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
    session.info[_CREDITED_WALLET] = topup.wallet_id  # whose other captures may come along
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
            idempotency_key=bounded_key(f"gateway-refund:{event.gateway}:{event.event_id}"),
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


def _topup_id(event: InboxEvent) -> uuid.UUID | None:
    """The top-up id the event's reference carries, if it is one."""
    try:
        return uuid.UUID(event.reference or "")
    except ValueError:
        return None


def _topup_by_reference(session: Session, event: InboxEvent) -> Topup | None:
    topup_id = _topup_id(event)
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
