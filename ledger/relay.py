"""What the workers should get (again): work a lost job or a broker outage left waiting.

Inbox events still to apply (and parked ones whose retry time has come) need one ring of the
workers' doorbell, however many there are. Provisioning requests still to decide, usage
records still to bill and notifications still to deliver are each claimed with their row
stamped, so each waits `resend_after` before it is due again; rows another relay is claiming
are skipped. Send the jobs only after the claiming transaction commits; one that fails to go
out is due again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, tuple_, update
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


def claim_unbilled(
    session: Session, *, now: datetime, resend_after: timedelta, limit: int = 500
) -> list[tuple[uuid.UUID, str]]:
    """(wallet id, usage id) of usage records still to bill."""
    return [
        (wallet_id, usage_id)
        for wallet_id, usage_id in _claim(
            session,
            UsageRecord,
            (UsageRecord.wallet_id, UsageRecord.id),
            UsageRecord.status == "pending",
            UsageRecord.created_at,
            now=now,
            resend_after=resend_after,
            limit=limit,
        )
    ]


def claim_undelivered(
    session: Session, *, now: datetime, resend_after: timedelta, limit: int = 500
) -> list[int]:
    """Ids of outbox events not yet delivered to every channel whose next attempt is due (a
    failing channel's backoff is waited out; one given up on is never claimed)."""
    return [
        int(id_)
        for (id_,) in _claim(
            session,
            OutboxEvent,
            (OutboxEvent.id,),
            and_(
                OutboxEvent.delivered_at.is_(None),
                OutboxEvent.failed_at.is_(None),
                func.coalesce(OutboxEvent.next_attempt_at, OutboxEvent.created_at) <= now,
            ),
            OutboxEvent.created_at,
            now=now,
            resend_after=resend_after,
            limit=limit,
        )
    ]


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
