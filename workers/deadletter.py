"""A middleware that keeps every job the workers give up on in the dead_letters table.

A message is rejected for good when its retries are spent, when its error is not transient,
or when it was too old to run; the broker moves it to its own dead-letter queue, and this
middleware records it in PostgreSQL as well, where `walletctl dlq list|replay` finds it.
"""

from __future__ import annotations

import logging
from typing import Any

from dramatiq import Broker, Middleware
from dramatiq.broker import MessageProxy
from sqlalchemy.exc import SQLAlchemyError

from ledger import deadletter
from workers import process

logger = logging.getLogger(__name__)


def failure_of(message: MessageProxy) -> str:
    """What went wrong, as well as the broker knows: the traceback, else the exception."""
    traceback = message.options.get("traceback")
    if traceback:
        return str(traceback)
    exception = getattr(message, "_exception", None)
    if exception is not None:
        return f"{type(exception).__name__}: {exception}"
    return "rejected without an exception (too old to run, or no such actor)"


class DeadLetters(Middleware):
    """Records rejected messages; if the database is down too, the broker's queue still has them."""

    def after_nack(self, broker: Broker, message: MessageProxy) -> None:
        job = deadletter.FailedJob(
            message_id=message.message_id,
            queue_name=message.queue_name,
            actor_name=message.actor_name,
            args=list(message.args),
            kwargs=dict(message.kwargs),
            error=failure_of(message),
        )
        extra: dict[str, Any] = {"message_id": job.message_id, "actor": job.actor_name}
        try:
            with process.sessions().begin() as session:
                deadletter.record(session, job)
        except SQLAlchemyError:
            logger.exception(
                "Could not record dead letter %s; it stays in the broker's dead-letter queue.",
                job.message_id,
                extra=extra,
            )
            return
        logger.error(
            "Job %s%r failed for good; kept as a dead letter.",
            job.actor_name,
            tuple(job.args),
            extra=extra,
        )
