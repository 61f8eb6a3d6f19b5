"""Dead letters: jobs the workers gave up on, kept in the database until an operator replays
them. The table answers `walletctl dlq list` whatever the broker, and a replay is claimed by a
guarded update, so two operators replaying at once send each job once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.models import DeadLetter

ERROR_CHARS_MAX = 8000


@dataclass(frozen=True, slots=True)
class FailedJob:
    """What the broker told us of a job that failed for good."""

    message_id: str
    queue_name: str
    actor_name: str
    args: list[Any]
    kwargs: dict[str, Any]
    error: str


def record(session: Session, job: FailedJob) -> None:
    """Keep the failed job; the same broker message recorded twice is kept once."""
    session.execute(
        insert(DeadLetter)
        .values(
            message_id=job.message_id,
            queue_name=job.queue_name,
            actor_name=job.actor_name,
            args=job.args,
            kwargs=job.kwargs,
            error=job.error[-ERROR_CHARS_MAX:],
        )
        .on_conflict_do_nothing(index_elements=["message_id"])
    )


def waiting(session: Session, *, limit: int = 100) -> list[DeadLetter]:
    """Dead letters not replayed yet, oldest first."""
    return list(
        session.scalars(
            select(DeadLetter)
            .where(DeadLetter.replayed_at.is_(None))
            .order_by(DeadLetter.id)
            .limit(limit)
        )
    )


def claim_for_replay(
    session: Session, ids: list[int] | None, *, limit: int = 1000
) -> list[DeadLetter]:
    """Lock the dead letters to replay (`ids`, or every waiting one), skipping claimed ones.

    Send each, then `mark_replayed` it, before the transaction commits.
    """
    statement = (
        select(DeadLetter)
        .where(DeadLetter.replayed_at.is_(None))
        .order_by(DeadLetter.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    if ids is not None:
        statement = statement.where(DeadLetter.id.in_(ids))
    return list(session.scalars(statement))


def mark_replayed(letter: DeadLetter, *, message_id: str, now: datetime) -> None:
    letter.replayed_at = now
    letter.replay_message_id = message_id
