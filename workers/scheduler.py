"""The scheduler: one leader at a time, elected by a PostgreSQL advisory lock, so running
several (on several machines) is safe. Each tick it re-sends inbox events left waiting and
outbox events left undelivered (a crash, a broker outage, a channel's backoff), and voids
holds past their expiry.

The leader holds a session-level advisory lock on a connection of its own for as long as it
lives; when it dies, PostgreSQL releases the lock and a standby takes over within a tick.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

from ledger import outbox, relay
from ledger.db import make_session_factory
from ledger.transfer import void_expired
from workers.jobs import APPLY_GATEWAY_EVENT, DELIVER_NOTIFICATION, JobSender

logger = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x7363686564  # "sched"
INTERVAL_S_DEFAULT = 5.0
RESEND_AFTER_S_DEFAULT = 30.0


class Scheduler:
    """Ticks while it leads; waits as a standby while another scheduler does."""

    def __init__(
        self,
        engine: Engine,
        sender: JobSender,
        *,
        interval_s: float = INTERVAL_S_DEFAULT,
        resend_after_s: float = RESEND_AFTER_S_DEFAULT,
    ) -> None:
        self._engine = engine
        self._sessions = make_session_factory(engine)
        self._sender = sender
        self._interval_s = interval_s
        self._resend_after = timedelta(seconds=resend_after_s)
        self._lock: Connection | None = None

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
        """One round of duties; returns how many inbox and outbox jobs were sent."""
        now = now or datetime.now(UTC)
        with self._sessions.begin() as session:
            due = relay.claim_due(session, now=now, resend_after=self._resend_after)
        sent = sum(self._sender.send(APPLY_GATEWAY_EVENT, inbox_id) for inbox_id in due)
        with self._sessions.begin() as session:
            notices = outbox.claim_due(session, now=now, resend_after=self._resend_after)
        announced = sum(self._sender.send(DELIVER_NOTIFICATION, id_) for id_ in notices)
        with self._sessions.begin() as session:
            voided = len(void_expired(session, now))
        if due or notices or voided:
            logger.info(
                "Re-sent %d of %d waiting events and %d of %d notifications;"
                " voided %d expired holds.",
                sent,
                len(due),
                announced,
                len(notices),
                voided,
            )
        return sent + announced

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
