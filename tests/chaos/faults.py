"""The faults of the chaos run, each proven to have happened as described, not just attempted.

- A worker process SIGKILLed mid-transaction: the run holds a lock on one wallet's account row,
  sends a capture for that wallet, waits until a worker's transaction is blocked on that lock
  (so it is inside its transaction, with whatever else its batch holds), finds the worker
  process owning that database connection and kills it, then lets the lock go. Whatever the
  pipeline's insides, crediting a wallet writes its account row: the cached totals live there.
- The broker stopped and started again on the same port, losing every queued message; while it
  is down the receiver still acknowledges a capture (it is durable in the inbox).
- PostgreSQL stopped (fast: open transactions rolled back) and started again; while it is down
  the receiver answers 503 to a capture, which the gateway delivers again afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.chaos.client import Answer, Delivery, Gateway
from tests.chaos.plan import Event
from tests.chaos.processes import Pipeline
from tests.chaos.signing import Signed
from tests.servers import PrivatePostgres, PrivateRedis
from webhook_receiver.gateways.base import SignedSample

logger = logging.getLogger(__name__)

FAULT_TIMEOUT_S = 120
# The longest a server stays down once the receiver has answered as the fault requires.
HOLD_S_MAX = 5
POLL_S = 0.05


class FaultFailed(RuntimeError):
    """A fault could not be brought about, or the pipeline answered it wrongly."""


@dataclass(frozen=True)
class Fault:
    """What happened: `name`, from `began_s` to `ended_s` (monotonic), and what it proved."""

    name: str
    began_s: float
    ended_s: float
    detail: str


class Faults:
    def __init__(
        self,
        *,
        pipeline: Pipeline,
        database: PrivatePostgres,
        broker: PrivateRedis,
        database_url: str,
        gateway: Gateway,
        sign: Callable[[Event], Signed],
        attempt: Callable[[Signed], SignedSample],
        deliveries: dict[tuple[int, int], Delivery],
        clients: int,
        sending_over: threading.Event,
    ) -> None:
        self._clients = clients
        self._sending_over = sending_over
        self._pipeline = pipeline
        self._database = database
        self._broker = broker
        self._url = database_url
        self._gateway = gateway
        self._sign = sign
        self._attempt = attempt
        self._deliveries = deliveries

    def _deliver(self, event: Event, first: Answer | None = None) -> Delivery:
        """Deliver a probe capture as a gateway would, recorded as the run's other events."""
        signed = self._sign(event)
        delivery = self._deliveries.setdefault((event.number, 0), Delivery())
        if first is not None:
            delivery.answers.append(first)
            if not first.retried:
                return delivery
        return self._gateway.deliver(signed.gateway, lambda: self._attempt(signed), delivery)

    def kill_worker_mid_transaction(self, probe: Event, release: Callable[[], None]) -> Fault:
        began = time.monotonic()
        starts = self._pipeline.starts("worker")
        pool = self._pipeline.worker_pool_pid
        with (
            psycopg.connect(self._url) as blocker,
            psycopg.connect(self._url, autocommit=True) as observer,
        ):
            blocker.execute(
                "SELECT 1 FROM accounts WHERE id = %s FOR NO KEY UPDATE", (probe.topup.wallet.id,)
            )
            holder = blocker.info.backend_pid
            release()
            delivery = self._deliver(probe)
            if not delivery.final.acknowledged:
                raise FaultFailed(f"the probe capture was answered {delivery.final.status}")
            deadline = time.monotonic() + FAULT_TIMEOUT_S
            while (found := _blocked_worker(observer, holder, pool)) is None:
                if time.monotonic() > deadline:
                    raise FaultFailed(f"no worker waited on the wallet lock in {FAULT_TIMEOUT_S} s")
                time.sleep(POLL_S)
            victim, detail = found
            self._pipeline.expect_exit("worker")
            os.kill(victim, signal.SIGKILL)
            blocker.rollback()
        # The pool stops when one of its processes dies; the supervisor starts a new one.
        self._pipeline.wait_restarted("worker", starts + 1, FAULT_TIMEOUT_S)
        return Fault("worker SIGKILL", began, time.monotonic(), detail)

    def restart_broker(self, probe: Event, release: Callable[[], None]) -> Fault:
        began = time.monotonic()
        self._broker.stop()
        release()
        try:
            before = self._gateway.count(200)
            delivery = self._deliver(probe)
            if not delivery.final.acknowledged:
                raise FaultFailed(
                    f"with the broker down the receiver answered {delivery.final.status}, not 2xx"
                )
            self._hold(lambda: self._gateway.count(200) - before)
            acknowledged = self._gateway.count(200) - before
        finally:
            self._broker.start()
        return Fault(
            "broker restart",
            began,
            time.monotonic(),
            f"{acknowledged} requests acknowledged while the broker was down",
        )

    def _hold(self, answered: Callable[[], int]) -> None:
        """Keep a server down until as many requests as there are clients have met the outage,
        the sending is over, or HOLD_S_MAX has passed (clients waiting for a capture to be
        credited before they refund it send nothing while the pipeline is down)."""
        deadline = time.monotonic() + HOLD_S_MAX
        while answered() < self._clients and not self._sending_over.is_set():
            if time.monotonic() > deadline:
                return
            time.sleep(POLL_S)

    def restart_database(self, probe: Event, release: Callable[[], None]) -> Fault:
        began = time.monotonic()
        signed = self._sign(probe)
        before = self._gateway.count(503)
        self._database.stop("fast")
        release()
        try:
            deadline = time.monotonic() + FAULT_TIMEOUT_S
            first = self._gateway.post_once(signed.gateway, self._attempt(signed))
            while first.status is None and time.monotonic() < deadline:
                time.sleep(POLL_S)  # a connection cut by the shutdown: ask again
                first = self._gateway.post_once(signed.gateway, self._attempt(signed))
            if first.status != 503:
                raise FaultFailed(
                    f"with PostgreSQL down the receiver answered {first.status}, not 503"
                )
            self._hold(lambda: self._gateway.count(503) - before)
            unavailable = self._gateway.count(503) - before
            down_s = time.monotonic() - began
        finally:
            self._database.start()
        up = time.monotonic()
        delivery = self._deliver(probe, first)
        if not delivery.final.acknowledged:
            raise FaultFailed(f"after the restart the probe was answered {delivery.final.status}")
        return Fault(
            "PostgreSQL restart",
            began,
            time.monotonic(),
            f"{unavailable} answers 503 while down ({down_s:.1f} s); the probe acknowledged"
            f" {time.monotonic() - up:.2f} s after the start",
        )


def _blocked_worker(observer: psycopg.Connection, holder: int, pool: int) -> tuple[int, str] | None:
    """A process of the worker pool whose transaction waits on a lock `holder` holds, and a
    sentence saying so; None while there is none."""
    for backend, port, open_s in observer.execute(
        "SELECT pid, client_port, extract(epoch FROM clock_timestamp() - xact_start)"
        " FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
        (holder,),
    ).fetchall():
        process = None if port is None else _process_with_port(_children(pool), port)
        if process is not None:
            return process, (
                f"killed worker process {process} (of pool {pool}) while its transaction"
                f" (backend {backend}, open {float(open_s):.2f} s) waited on a wallet it was"
                " crediting"
            )
    return None


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces; the parent follows the state.
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _process_with_port(pids: list[int], port: int) -> int | None:
    """Which of `pids` owns the TCP socket bound locally to `port`, if any."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            columns = line.split()
            if int(columns[1].rpartition(":")[2], 16) == port:
                inodes.add(columns[9])
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            return pid
    return None
