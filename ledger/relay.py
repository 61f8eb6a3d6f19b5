"""What the workers should get (again): work a lost job or a broker outage left waiting.

Inbox events still to apply (and parked ones whose retry time has come), usage records still
to bill and notifications still to deliver are served by doorbells: the relay only asks
whether any waits, and rings once for the whole backlog. Provisioning requests still to
decide are claimed with their rows stamped, so each waits `resend_after` before it is due
again; rows another relay is claiming are skipped. Send the jobs only after the claiming
transaction commits; one that fails to go out is due again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select, tuple_, update
from sqlalchemy.orm import Session

from ledger.models import InboxEvent, InboxStatus, OutboxEvent, ProvisioningRequest, UsageRecord


def inbox_backlog(session: Session, *, now: datetime, resend_after: timedelta) -> bool:
    """Whether an inbox event has waited longer than `resend_after`, or a parked one's retry
    time has come: the workers' doorbell was lost, or they are behind. One ring covers all."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    or_(
                        (InboxEvent.status == InboxStatus.RECEIVED)
                        & (InboxEvent.received_at < now - resend_after),
                        (InboxEvent.status == InboxStatus.PARKED) & (InboxEvent.retry_at <= now),
                    )
                )
            )
        )
    )


def claim_undecided(
    session: Session, *, now: datetime, resend_after: timedelta, limit: int = 500
) -> list[uuid.UUID]:
    """Ids of provisioning requests still pending a decision."""
    return [
        id_
        for (id_,) in _claim(
            session,
            ProvisioningRequest,
            (ProvisioningRequest.id,),
            ProvisioningRequest.status == "pending",
            ProvisioningRequest.created_at,
            now=now,
            resend_after=resend_after,
            limit=limit,
        )
    ]


def unbilled_waiting(session: Session, *, now: datetime, resend_after: timedelta) -> bool:
    """Whether a usage record has waited `resend_after` to be billed: its doorbell was lost.

    The billing workers claim every pending record when rung, so one ring serves a backlog.
    """
    return bool(
        session.scalar(
            select(
                exists().where(
                    UsageRecord.status == "pending",
                    UsageRecord.created_at < now - resend_after,
                )
            )
        )
    )


def undelivered_waiting(session: Session, *, now: datetime, resend_after: timedelta) -> bool:
    """Whether an outbox event is due and nobody may ring for it: one waiting `resend_after`
    since it was written (its doorbell was lost), or one whose backoff has run out (a
    failing channel's retry, which only the relay rings for). One failed for good is not."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    OutboxEvent.delivered_at.is_(None),
                    OutboxEvent.failed_at.is_(None),
                    or_(
                        OutboxEvent.next_attempt_at <= now,
                        OutboxEvent.next_attempt_at.is_(None)
                        & (OutboxEvent.created_at < now - resend_after),
                    ),
                )
            )
        )
    )


def _claim(
    session: Session,
    model: Any,
    key: tuple[Any, ...],
    waiting: ColumnElement[bool],
    created: Any,
    *,
    now: datetime,
    resend_after: timedelta,
    limit: int,
) -> list[tuple[Any, ...]]:
    last_sent = func.coalesce(model.relayed_at, created)
    due = [
        tuple(row)
        for row in session.execute(
            select(*key)
            .where(waiting, last_sent < now - resend_after)
            .order_by(created)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ]
    if due:
        session.execute(
            update(model)
            .where(tuple_(*key).in_(due))
            .values(relayed_at=now)
            .execution_options(synchronize_session=False)
        )
    return due
