"""Which inbox events the workers should get (again): the ones a lost job or a broker outage
left waiting, and parked ones whose retry time has come."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ledger.models import InboxEvent, InboxStatus


def claim_due(
    session: Session, *, now: datetime, resend_after: timedelta, limit: int = 500
) -> list[int]:
    """Ids of events to (re-)send now, stamped as relayed so they wait `resend_after` again.

    An event is due when it waits (received, or parked past its retry time) and nothing was
    sent for it for `resend_after`. Rows another relay is claiming are skipped. Send the jobs
    only after this transaction commits; one that fails to go out is due again later.
    """
    last_sent = func.coalesce(InboxEvent.relayed_at, InboxEvent.received_at)
    due = session.scalars(
        select(InboxEvent.id)
        .where(
            or_(
                InboxEvent.status == InboxStatus.RECEIVED,
                (InboxEvent.status == InboxStatus.PARKED) & (InboxEvent.retry_at <= now),
            ),
            last_sent < now - resend_after,
        )
        .order_by(InboxEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if due:
        session.execute(update(InboxEvent).where(InboxEvent.id.in_(due)).values(relayed_at=now))
    return list(due)
