"""Group commit of the inbox: one writer a web process stores the verified events of every
request waiting on it with one statement and one COMMIT, then wakes each request with its own
outcome.

A request hears its outcome only after the COMMIT that holds its rows. When the COMMIT fails,
every request of the batch is told the storage is unavailable (it answers 503, the gateway
retries) and nothing of the batch remains. When the database refuses one request's rows, the
writer stores each request of the batch on its own, so the others are not held back by it.

After a commit that stored new events the writer rings the workers' doorbell, at most once
every `doorbell_interval_ms`: a ring it holds back goes out when the interval ends, so no
stored event waits for the relay unless the broker is down.

The writer's thread and its connection are created on the first request after a fork (or
after an idle spell), never at import, and go away when the process has been idle for a while.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from ledger.connection import ConnectionTimeouts
from ledger.db import libpq_url
from ledger.inbox import IncomingEvent, Outcome, Recorded, record_many

logger = logging.getLogger(__name__)

IDLE_S_DEFAULT = 10.0
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 10_000
# Longer than a connect and a statement may take: past it a request gives up waiting.
STORE_WAIT_S_MAX = CONNECT_TIMEOUT_S + STATEMENT_TIMEOUT_MS / 1000 + 5


class StorageUnavailable(Exception):
    """The events were not stored: the database is down, or refused them."""


@dataclass(eq=False)
class _Request:
    events: Sequence[IncomingEvent]
    done: threading.Event = field(default_factory=threading.Event)
    recorded: list[Recorded] | None = None


class InboxWriter:
    """Stores the events of concurrent requests in shared transactions; thread-safe."""

    def __init__(
        self,
        database_url: str,
        *,
        rows_max: int,
        wait_ms: int,
        doorbell_interval_ms: int,
        ring: Callable[[], object],
        on_commit: Callable[[int], object] = lambda rows: None,
        idle_s: float = IDLE_S_DEFAULT,
    ) -> None:
        self._dsn = libpq_url(database_url)
        self._rows_max = rows_max
        self._wait_s = wait_ms / 1000
        self._doorbell_interval_s = doorbell_interval_ms / 1000
        self._ring = ring
        self._on_commit = on_commit
        self._idle_s = idle_s
        self._pending: collections.deque[_Request] = collections.deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._connection: psycopg.Connection[Any] | None = None
        self._rung_at = -float("inf")
        self._ring_wanted = False

    def store(self, events: Sequence[IncomingEvent]) -> list[Recorded]:
        """Store `events` durably; one outcome each, in order, once their COMMIT is done.

        Raises StorageUnavailable when they were not stored.
        """
        request = _Request(events)
        with self._wakeup:
            self._pending.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._wakeup.notify()
        if not request.done.wait(STORE_WAIT_S_MAX) or request.recorded is None:
            raise StorageUnavailable("the events were not stored")
        return request.recorded

    def _run(self) -> None:
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                if batch:
                    self._write(batch)
                self._ring_if_due()
        except Exception:
            # Never leave requests waiting on a writer that is gone: the next one starts anew.
            logger.exception("The inbox writer stopped; the next request starts another.")
            with self._wakeup:
                self._thread = None
                self._close()
                if self._pending:
                    self._thread = threading.Thread(
                        target=self._run, name="inbox-writer", daemon=True
                    )
                    self._thread.start()

    def _next_batch(self) -> list[_Request] | None:
        """The requests to store next ([] when only a held-back ring is due); None to exit."""
        with self._wakeup:
            idle_until = time.monotonic() + self._idle_s
            while not self._pending:
                now = time.monotonic()
                if self._ring_wanted:
                    ring_at = self._rung_at + self._doorbell_interval_s
                    if now >= ring_at:
                        return []
                    self._wakeup.wait(ring_at - now)
                    continue
                if now >= idle_until:
                    self._thread = None  # under the lock: the next store() starts a new one
                    self._close()
                    return None
                self._wakeup.wait(idle_until - now)
            batch = [self._pending.popleft()]
            rows = len(batch[0].events)
            gather_until = time.monotonic() + self._wait_s
            while rows < self._rows_max:
                if not self._pending:
                    left = gather_until - time.monotonic()
                    if left <= 0 or not self._wakeup.wait(left) or not self._pending:
                        break
                if rows + len(self._pending[0].events) > self._rows_max:
                    break
                request = self._pending.popleft()
                batch.append(request)
                rows += len(request.events)
            return batch

    def _write(self, batch: list[_Request]) -> None:
        try:
            self._store(batch)
        except Exception:
            # The connection failed (or worse): a request's outcome is set only once its
            # COMMIT is done, so those without one answer 503, and nothing of theirs remains.
            logger.warning("The inbox could not be written.", exc_info=True)
            self._close()
        stored = [request for request in batch if request.recorded is not None]
        try:
            if stored:
                self._on_commit(sum(len(request.events) for request in stored))
            if any(r.outcome is Outcome.NEW for request in stored for r in request.recorded or ()):
                self._ring_wanted = True
                # Before the answers when it is due, so a request answered 2xx has rung; a
                # ring held back by the interval goes out when the interval ends.
                self._ring_if_due()
        except Exception:  # the rows are committed: a metric or a ring is not worth an answer
            logger.exception("A callback of the inbox writer failed.")
        finally:
            for request in batch:
                request.done.set()

    def _store(self, batch: list[_Request]) -> None:
        connection = self._connect()
        events = [event for request in batch for event in request.events]
        try:
            with connection.transaction():
                recorded = record_many(connection, events)
        except psycopg.OperationalError:
            raise
        except Exception:
            # Rolled back whole: store each request on its own, so that only the one the
            # database refuses goes without.
            logger.warning(
                "A batch of %d inbox rows was refused; storing its %d requests one by one.",
                len(events),
                len(batch),
                exc_info=True,
            )
            for request in batch:
                try:
                    with connection.transaction():
                        request.recorded = record_many(connection, request.events)
                except psycopg.OperationalError:
                    raise
                except Exception:
                    logger.exception("The database refused a webhook's inbox rows.")
            return
        offset = 0
        for request in batch:
            request.recorded = recorded[offset : offset + len(request.events)]
            offset += len(request.events)

    def _ring_if_due(self) -> None:
        if self._ring_wanted and time.monotonic() >= self._rung_at + self._doorbell_interval_s:
            self._ring_wanted = False
            self._rung_at = time.monotonic()
            self._ring()  # a failed ring is logged by the sender; the relay rings later

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            # The bounds every walletpipe connection sets on a lost peer, and one on a statement.
            args = ConnectionTimeouts(connect_s=CONNECT_TIMEOUT_S).connect_args()
            args["options"] += f" -c statement_timeout={STATEMENT_TIMEOUT_MS}"
            args["application_name"] = "walletpipe-inbox"
            self._connection = psycopg.connect(
                self._dsn,
                autocommit=True,  # transactions are explicit: connection.transaction()
                **args,
            )
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except psycopg.Error:
                logger.debug("Closing the inbox connection failed.", exc_info=True)
            self._connection = None
