"""The workers' jobs. Actors are plain callables that take ids and own one transaction each;
doorbells take none and claim, batch by batch, what the database says is waiting.

Run them with `dramatiq workers.actors` (the Procfile's worker). A business outcome is recorded
and the actor returns; a database error raises, and Dramatiq retries it with a bound. Outbox
events a job writes ring the notification workers' doorbell once its transaction commits.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import dramatiq
from sqlalchemy.orm import Session

import workers.broker  # noqa: F401  (sets the broker the actors bind to)
from ledger import outbox, provisioning, settlement, usage
from ledger.errors import NotFound
from workers import delivery, process
from workers.jobs import (
    APPLY_INBOX_BATCH,
    BILL_USAGE_RECORDS,
    DECIDE_PROVISIONING,
    DELIVER_NOTIFICATIONS,
)

logger = logging.getLogger(__name__)

# A doorbell keeps claiming while it finds full batches, for this long at most; then it rings
# again, so one message never holds a worker thread through a whole backlog.
DOORBELL_S_MAX = 5.0


@dramatiq.actor(actor_name=APPLY_INBOX_BATCH.actor_name, queue_name=APPLY_INBOX_BATCH.queue_name)
def apply_inbox_batch() -> None:
    """Apply waiting inbox events, a batch per transaction, until none is left.

    A doorbell: it names no event, so however many rings arrive, each waiting row is claimed
    by one transaction (SKIP LOCKED) and applied once. The rows' status is the only truth;
    a lost ring is covered by the relay.
    """
    batch_max = process.settings().inbox_batch_max
    deadline = time.monotonic() + DOORBELL_S_MAX
    while True:
        with ledger_transaction() as session:
            statuses = settlement.apply_inbox(session, now=datetime.now(UTC), limit=batch_max)
        for inbox_id, status in statuses.items():
            logger.info("Inbox event %s: %s.", inbox_id, status, extra={"inbox_id": inbox_id})
        if len(statuses) < batch_max:
            return
        if time.monotonic() >= deadline:
            apply_inbox_batch.send()
            return


@dramatiq.actor(
    actor_name=DELIVER_NOTIFICATIONS.actor_name, queue_name=DELIVER_NOTIFICATIONS.queue_name
)
def deliver_notifications() -> None:
    """Deliver every due outbox event to each channel that does not have it yet, in batches.

    A doorbell: it takes no arguments, the database says what is due. Each round claims up to
    NOTIFY_BATCH_MAX events in one transaction (workers.delivery); it goes on while rounds
    come back full, for DOORBELL_S_MAX at most, then rings again for the rest. A channel
    that fails is retried by the outbox's own backoff (the scheduler rings when it is due),
    not by Dramatiq, so the channels that took an event are never sent it again.
    """
    batch_max = process.settings().notify_batch_max
    deadline = time.monotonic() + DOORBELL_S_MAX
    outcomes: Counter[str] = Counter()
    while True:
        done = delivery.deliver_due(
            process.sessions(), process.channels(), process.send_pool(), limit=batch_max
        )
        outcomes.update(done.outcomes)
        if done.claimed < batch_max:
            break
        if time.monotonic() >= deadline:
            _ring(deliver_notifications)
            break
    if outcomes:
        logger.debug("Notifications: %s.", dict(outcomes))


@dramatiq.actor(
    actor_name=DECIDE_PROVISIONING.actor_name, queue_name=DECIDE_PROVISIONING.queue_name
)
def decide_provisioning(request_id: str) -> None:
    """Approve a provisioning request with a hold on its wallet, or reject it; exactly once."""
    try:
        with ledger_transaction() as session:
            request = provisioning.decide(
                session, uuid.UUID(request_id), now=datetime.now(UTC), settings=process.billing()
            )
            status, reason = request.status, request.reason
    except NotFound:
        logger.error("Provisioning request %s does not exist; nothing to decide.", request_id)
        return
    logger.info(
        "Provisioning request %s: %s%s.",
        request_id,
        status,
        f" ({reason})" if reason else "",
        extra={"provisioning_request_id": request_id},
    )


@dramatiq.actor(actor_name=BILL_USAGE_RECORDS.actor_name, queue_name=BILL_USAGE_RECORDS.queue_name)
def bill_usage_records() -> None:
    """Charge every pending usage record to its wallet, once, in batches.

    A doorbell like deliver_notifications: each round bills up to USAGE_BATCH_MAX records in
    one transaction (ledger.usage.bill_pending), for DOORBELL_S_MAX at most.
    """
    batch_max = process.settings().usage_batch_max
    deadline = time.monotonic() + DOORBELL_S_MAX
    billed = 0
    while True:
        with ledger_transaction() as session:
            done = usage.bill_pending(session, limit=batch_max)
        billed += done.billed
        if done.claimed < batch_max:
            break
        if time.monotonic() >= deadline:
            _ring(bill_usage_records)
            break
    if billed:
        logger.info("Billed %d usage records.", billed)


@contextmanager
def ledger_transaction() -> Iterator[Session]:
    """One transaction of this process; the outbox events it writes are handed to the
    notification workers once it has committed, never before."""
    with process.sessions().begin() as session:
        yield session
        notices = outbox.emitted(session)
    announce(notices)


def announce(outbox_ids: Iterable[int]) -> None:
    """Ring the notification workers' doorbell once for events a transaction has committed.

    One message however many events: the workers claim what is due. If it fails to go out,
    the relay rings for the events left waiting.
    """
    if any(True for _ in outbox_ids):
        _ring(deliver_notifications)


def _ring(doorbell: dramatiq.Actor[[], None]) -> None:
    try:
        doorbell.send()
    except Exception:  # committed already: the relay rings for what is left waiting
        logger.warning("Could not ring %s; the relay will.", doorbell.actor_name, exc_info=True)
