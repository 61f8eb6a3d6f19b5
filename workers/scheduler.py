"""The scheduler: one leader at a time, elected by a PostgreSQL advisory lock, so running
several (on several machines) is safe. Each tick it re-sends undecided provisioning requests
and rings the ledger, billing and notification doorbells once for whatever inbox events,
usage records and notifications wait in the database (a crash, a broker outage, a channel's
backoff), voids holds past their expiry and releases their requests, expires the unused part
of due credit grants, asks Stripe to charge automatic top-ups off-session, bills every active
resource for the hours it has run, and reviews debts (grace, suspension, resume) and low
balances.

The leader holds a session-level advisory lock on a connection of its own for as long as it
lives; when it dies, PostgreSQL releases the lock and a standby takes over within a tick.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ledger import grant, outbox, provisioning, relay
from ledger.db import make_session_factory
from ledger.settings import BillingSettings
from ledger.transfer import void_expired
from workers.jobs import (
    APPLY_INBOX_BATCH,
    BILL_USAGE_RECORDS,
    DECIDE_PROVISIONING,
    DELIVER_NOTIFICATIONS,
    Job,
    JobSender,
)
from workers.stripe_charges import StripeSettings, charge_auto_topups

logger = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x7363686564  # "sched"
INTERVAL_S_DEFAULT = 5.0
RESEND_AFTER_S_DEFAULT = 30.0
# Grant expiries one tick works through at most; the next tick goes on with the rest.
GRANT_BATCHES_MAX = 20


@dataclass
class Periodic:
    """A duty the leader runs every `interval_s`, besides its own (catch-up, say).

    A failure is logged and tried again at the next interval; it never stops the ticks.
    """

    name: str
    interval_s: float
    run: Callable[[], object]
    _due: float = field(default=0.0, repr=False)

    def run_if_due(self, now_s: float) -> None:
        if now_s < self._due:
            return
        self._due = now_s + self.interval_s
        try:
            self.run()
        except Exception:  # one duty's failure must not stop the scheduler's others
            logger.warning("Periodic duty %s failed; trying again later.", self.name, exc_info=True)


class Scheduler:
    """Ticks while it leads; waits as a standby while another scheduler does."""

    def __init__(
        self,
        engine: Engine,
        sender: JobSender,
        *,
        interval_s: float = INTERVAL_S_DEFAULT,
        resend_after_s: float = RESEND_AFTER_S_DEFAULT,
        billing: BillingSettings | None = None,
        stripe: StripeSettings | None = None,
        periodic: Sequence[Periodic] = (),
    ) -> None:
        self._engine = engine
        self._periodic = tuple(periodic)
        self._billing = billing or BillingSettings()
        self._stripe = stripe or StripeSettings()
        self._sessions = make_session_factory(engine)
        self._sender = sender
        self._interval_s = interval_s
        self._resend_after = timedelta(seconds=resend_after_s)
        self._lock: Connection | None = None
        # When each doorbell was last rung: at most once per resend_after, so workers that
        # are down for an hour find a handful of doorbells waiting, not one per tick.
        self._rung_at: dict[str, datetime] = {}

    @property
    def leading(self) -> bool:
        return self._lock is not None

    def try_to_lead(self) -> bool:
        """Take the leader lock if it is free; True while this scheduler holds it."""
        if self._lock is not None:
            try:
                self._lock.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError:
                logger.warning("Lost the scheduler's lock connection; leading no more.")
                self._release()
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        won = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": LEADER_LOCK_KEY}
        ).scalar_one()
        if won:
            self._lock = connection
            logger.info("This scheduler leads.")
        else:
            connection.close()
        return bool(won)

    def tick(self, now: datetime | None = None) -> int:
        """One round of duties; returns how many jobs were sent to the workers."""
        now = now or datetime.now(UTC)
        sent = self._relay(now)
        with self._sessions.begin() as session:
            voided = void_expired(session, now)
            released = provisioning.release_expired(session, voided, now=now)
        expired = self._expire_grants()
        charges, charge_notices = charge_auto_topups(self._sessions, self._stripe, now=now)
        if charge_notices:
            sent += self._sender.send(DELIVER_NOTIFICATIONS)
        with self._sessions.begin() as session:
            charged = provisioning.bill_due(session, now=now)
            reviewed = provisioning.review_debts(
                session, now=now, settings=self._billing, charged=set(charged)
            )
            alerts = provisioning.review_low_balance(session, set(charged), settings=self._billing)
            notices = outbox.emitted(session)
        if notices:
            sent += self._sender.send(DELIVER_NOTIFICATIONS)
        for duty in self._periodic:
            duty.run_if_due(time.monotonic())
        if voided or charged or reviewed or alerts or expired or charges:
            logger.info(
                "Voided %d expired holds (%d provisioning requests released); billed %d"
                " resources; %d debt changes; %d low-balance alerts; %d grants expired;"
                " %d automatic top-ups charged.",
                len(voided),
                released,
                len(charged),
                reviewed,
                alerts,
                expired,
                charges,
            )
        return sent

    def _expire_grants(self) -> int:
        """Expire every due grant, a batch per transaction, catching up after downtime."""
        expired = 0
        for _ in range(GRANT_BATCHES_MAX):
            with self._sessions.begin() as session:
                batch = grant.expire_due(session)
                notices = outbox.emitted(session)
            if notices:
                self._sender.send(DELIVER_NOTIFICATIONS)
            expired += len(batch)
            if len(batch) < grant.EXPIRE_BATCH_MAX:
                break
        return expired

    def _relay(self, now: datetime) -> int:
        """Re-send every kind of work left waiting in the database for `resend_after`."""
        after = self._resend_after
        with self._sessions.begin() as session:
            jobs: list[tuple[Job, tuple[object, ...]]] = [
                *(
                    [(APPLY_INBOX_BATCH, ())]
                    if relay.inbox_backlog(session, now=now, resend_after=after)
                    else []
                ),
                *(
                    (DECIDE_PROVISIONING, (str(id_),))
                    for id_ in relay.claim_undecided(session, now=now, resend_after=after)
                ),
            ]
            doorbells = [
                job
                for job, waiting in (
                    (BILL_USAGE_RECORDS, relay.unbilled_waiting),
                    (DELIVER_NOTIFICATIONS, relay.undelivered_waiting),
                )
                if self._may_ring(job, now) and waiting(session, now=now, resend_after=after)
            ]
        sent = sum(self._sender.send(job, *args) for job, args in jobs)
        for job in doorbells:
            if self._sender.send(job):
                self._rung_at[job.actor_name] = now
                sent += 1
        if jobs or doorbells:
            logger.info(
                "Re-sent %d of %d waiting jobs and doorbells.", sent, len(jobs) + len(doorbells)
            )
        return sent

    def _may_ring(self, doorbell: Job, now: datetime) -> bool:
        last = self._rung_at.get(doorbell.actor_name)
        return last is None or not last <= now < last + self._resend_after

    def run(self, stop: threading.Event) -> None:
        """Lead or stand by until `stop` is set; database outages are waited out."""
        while not stop.is_set():
            try:
                if self.try_to_lead():
                    self.tick()
            except SQLAlchemyError:
                logger.warning("Scheduler tick failed; trying again.", exc_info=True)
                self._release()
            stop.wait(self._interval_s)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            # Invalidate, not close: a closed connection would go back to the pool with the
            # session, and its advisory lock, still alive.
            with contextlib.suppress(SQLAlchemyError):
                self._lock.invalidate()
            self._lock = None
