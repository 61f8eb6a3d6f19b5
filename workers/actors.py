"""The workers' jobs. Actors are plain callables that take ids and own one transaction each.

Run them with `dramatiq workers.actors` (the Procfile's worker). A business outcome is recorded
and the actor returns; a database error raises, and Dramatiq retries it with a bound. Outbox
events a job writes are handed to the notification workers once its transaction commits.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import dramatiq
from sqlalchemy.orm import Session

import workers.broker  # noqa: F401  (sets the broker the actors bind to)
from ledger import outbox, provisioning, settlement, usage
from ledger.errors import NotFound
from workers import process
from workers.errors import DeliveryFailed
from workers.jobs import APPLY_INBOX_BATCH, BILL_USAGE, DECIDE_PROVISIONING, DELIVER_NOTIFICATION

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
    actor_name=DELIVER_NOTIFICATION.actor_name, queue_name=DELIVER_NOTIFICATION.queue_name
)
def deliver_notification(outbox_id: int) -> None:
    """Deliver an outbox event to each configured channel that does not have it yet.

    A channel that fails is retried by the outbox's own backoff (the scheduler re-sends the
    job), not by Dramatiq, so the channels that took it are never sent it again.
    """
    now = datetime.now(UTC)
    with process.sessions().begin() as session:
        locked = outbox.lock_for_delivery(session, outbox_id)
        if locked is None:
            return  # delivered, given up on, or being delivered by another worker now
        notice, done = locked
        delivered: list[str] = []
        errors: dict[str, str] = {}
        for channel in process.channels():
            if channel.name in done or not channel.accepts(notice):
                continue
            try:
                channel.send(notice)
            except DeliveryFailed as exc:
                errors[channel.name] = str(exc)
                continue
            except Exception as exc:  # a channel's bug counts as a failed attempt, bounded
                logger.exception("Channel %s failed on %s.", channel.name, outbox_id)
                errors[channel.name] = f"{type(exc).__name__}: {exc}"
                continue
            delivered.append(channel.name)
        state = outbox.finish_attempt(
            session, outbox_id, now=now, delivered=delivered, errors=errors
        )
    # A delivered notification is logged by the channels themselves; trouble is logged here.
    log = logger.debug if state == "delivered" else logger.warning
    log(
        "Notification %s %s: %s%s.",
        notice.event_type,
        outbox_id,
        state,
        f" ({'; '.join(errors.values())})" if errors else "",
        extra={"outbox_id": outbox_id, "event_type": notice.event_type},
    )


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


@dramatiq.actor(actor_name=BILL_USAGE.actor_name, queue_name=BILL_USAGE.queue_name)
def bill_usage(wallet_id: str, usage_id: str) -> None:
    """Charge a stored usage record to its wallet, once."""
    try:
        with ledger_transaction() as session:
            usage.bill_usage_record(session, uuid.UUID(wallet_id), usage_id)
    except NotFound:
        logger.error("Usage record %s of wallet %s does not exist.", usage_id, wallet_id)


@contextmanager
def ledger_transaction() -> Iterator[Session]:
    """One transaction of this process; the outbox events it writes are handed to the
    notification workers once it has committed, never before."""
    with process.sessions().begin() as session:
        yield session
        notices = outbox.emitted(session)
    announce(notices)


def announce(outbox_ids: Iterable[int]) -> None:
    """Send delivery jobs for committed outbox events; what fails to go out, the relay re-sends."""
    for outbox_id in outbox_ids:
        try:
            deliver_notification.send(outbox_id)
        except Exception:  # committed already: the relay finds the event undelivered
            logger.warning(
                "Could not send notification %s; the relay will re-send it.",
                outbox_id,
                exc_info=True,
                extra={"outbox_id": outbox_id},
            )
