"""The chaos run: the whole pipeline on servers of its own, gateways sending through faults.

A private PostgreSQL and Redis; gunicorn, a Dramatiq worker pool and the scheduler started as
the Procfile starts them; wallets and top-ups made over the API. Client threads play the
gateways, sending the plan's events (copies and forgeries included) while one thread brings
about the faults at set points of the run: a worker killed mid-transaction, the broker
restarted, PostgreSQL restarted. Then the run waits for the pipeline to drain, stops it, runs
`walletctl verify` and judges the ledger. Every wait is a bounded poll on a condition.

Only the product's outside is used: HTTP, processes, the command line, and SQL reads of the
ledger's tables for the verdict.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.chaos import checks
from tests.chaos.client import Api, Delivery, Gateway
from tests.chaos.faults import Fault, Faults
from tests.chaos.plan import ChaosSize, Event, Forgery, Plan, Send, draw
from tests.chaos.processes import Exit, Pipeline
from tests.chaos.signing import Signed, Signer
from tests.e2e.conftest import BIN, process_env
from tests.servers import PrivatePostgres, PrivateRedis

logger = logging.getLogger(__name__)

# Where in the run (share of requests handed to the clients) each fault begins. The clients
# wait at each point until the fault has begun, so every fault meets traffic.
FAULT_POINTS = {"worker": 0.2, "broker": 0.45, "database": 0.7}
# The relay re-sends what waits this long, checked this often: recovery in seconds.
SCHEDULER_OPTIONS = ("--interval-s", "0.5", "--resend-after-s", "2")
POLL_S = 0.1
REFUND_WAIT_S = 300
REFUND_ASK_EVERY_S = 0.2


@dataclass(frozen=True)
class ChaosConfig:
    size: ChaosSize
    clients: int = 8
    web_processes: int = 2
    worker_processes: int = 2
    worker_threads: int = 4
    # A gateway gives up on a request after retrying this long (real ones retry for days).
    retry_for_s: float = 120
    drain_timeout_s: float = 180


@dataclass
class Report:
    """The figures of a run and the problems its checks found."""

    config: ChaosConfig
    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        lines = [f"{name}: {value}" for name, value in self.figures.items()]
        lines += [f"fault {f.name}: {f.ended_s - f.began_s:.2f} s; {f.detail}" for f in self.faults]
        lines += [f"PROBLEM {problem}" for problem in self.problems]
        lines.append("verdict: " + ("PASS" if self.passed else "FAIL"))
        return lines


class ChaosRun:
    def __init__(self, config: ChaosConfig, logs: Path) -> None:
        self.config = config
        self.logs = logs
        self.plan: Plan = draw(config.size)
        self.report = Report(config)
        self._deliveries: dict[tuple[int, int], Delivery] = {}
        self._forged: list[Delivery] = []
        self._payments: set[tuple[str, str]] = set()
        self._payments_lock = threading.Lock()
        self._handed = 0
        self._handed_lock = threading.Condition()
        self._sending_over = threading.Event()
        # How many requests the clients may make before the next fault has begun.
        self._gate = round(FAULT_POINTS["worker"] * len(self.plan.sends))
        # Set when the run is cut short: clients stop, waits end.
        self._abort = threading.Event()
        self._credited: set[int] = set()  # refunds whose capture is credited
        self._asked: dict[int, float] = {}  # when each refund's capture was last looked up

    def run(self) -> Report:
        began = time.monotonic()
        with PrivatePostgres() as database, PrivateRedis() as broker:
            database_url = database.create_database("walletpipe")
            env = process_env(
                database_url,
                broker.url(),
                WEB_CONCURRENCY=str(self.config.web_processes),
                API_RATE_LIMIT="1000000/minute",  # the run's own set-up traffic
            )
            self._command(env, "db", "upgrade")
            pipeline = Pipeline(
                env, self.logs, self.config.worker_processes, self.config.worker_threads
            )
            try:
                pipeline.start(SCHEDULER_OPTIONS)
                self._exercise(pipeline, database, broker, database_url, env, began)
            finally:
                codes = pipeline.stop()
                self.report.exits = pipeline.exits
            self._judge(database_url, env, codes)
        self.report.figures["total_s"] = round(time.monotonic() - began, 1)
        return self.report

    def _command(self, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "walletctl"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=args[0] != "verify",
        )

    def _exercise(
        self,
        pipeline: Pipeline,
        database: PrivatePostgres,
        broker: PrivateRedis,
        database_url: str,
        env: dict[str, str],
        began: float,
    ) -> None:
        token = self._command(env, "token", "--sub", "chaos", "--scope", "admin").stdout.strip()
        self._create(Api(pipeline.url, token))
        figures = self.report.figures
        figures["setup_s"] = round(time.monotonic() - began, 1)
        signer = Signer(env)
        gateway = Gateway(pipeline.url, retry_for_s=self.config.retry_for_s, seed=7)
        faults = Faults(
            pipeline=pipeline,
            database=database,
            broker=broker,
            database_url=database_url,
            gateway=gateway,
            sign=lambda event: self._sign(event, signer, database_url),
            attempt=signer.attempt,
            deliveries=self._deliveries,
            clients=self.config.clients,
            sending_over=self._sending_over,
        )
        sending = time.monotonic()
        fault_errors: list[BaseException] = []
        fault_thread = threading.Thread(
            target=self._bring_faults, args=(faults, fault_errors), name="faults", daemon=True
        )
        fault_thread.start()
        try:
            self._send(gateway, signer, database_url)
        finally:
            fault_thread.join()
        sent = time.monotonic()
        if fault_errors:
            self.report.problems.append(f"a fault went wrong: {fault_errors[0]}")
        last_fault = max((f.ended_s for f in self.report.faults), default=sent)
        drained = self._wait_drained(database_url)
        figures["sending_s"] = round(sent - sending, 1)
        if drained is None:
            self.report.problems.append(
                f"the pipeline did not drain within {self.config.drain_timeout_s} s"
            )
        else:
            figures["drain_after_last_fault_s"] = round(drained - last_fault, 1)
            figures["drain_after_last_request_s"] = round(drained - sent, 1)

    def _create(self, api: Api) -> None:
        """Wallets and top-ups, as a service makes them."""
        for n, wallet in enumerate(self.plan.wallets):
            owner = f"chaos-{wallet.gateway}-{n}"
            wallet.id = str(
                api.post("/wallets", {"owner_id": owner, "currency": wallet.currency})["id"]
            )

        def create(topup_index: int) -> None:
            topup = self.plan.topups[topup_index]
            answer = api.post(
                "/topups",
                {
                    "wallet_id": topup.wallet.id,
                    "amount_minor": topup.amount_minor,
                    "gateway": topup.gateway,
                },
            )
            topup.id = str(answer["id"])

        with ThreadPoolExecutor(self.config.clients) as pool:
            list(pool.map(create, range(len(self.plan.topups))))

    def _sign(self, event: Event, signer: Signer, database_url: str) -> Signed:
        """The event's request, signed when first needed; every copy repeats it."""
        with event.lock:
            if event.signed is None:
                event.signed = (
                    self._sign_capture(event, signer)
                    if event.kind == "capture"
                    else self._sign_refund(event, signer, database_url)
                )
            return event.signed

    def _sign_capture(self, event: Event, signer: Signer) -> Signed:
        # Payment ids are drawn at random by the samples: never let two top-ups share one.
        while True:
            signed = signer.capture(
                event.gateway,
                amount_minor=event.amount_minor,
                reference=event.topup.id,
                event_id=event.event_id(),
            )
            with self._payments_lock:
                key = (event.gateway, str(signed.payment_id))
                if key not in self._payments:
                    self._payments.add(key)
                    return signed

    def _sign_refund(self, event: Event, signer: Signer, database_url: str) -> Signed:
        """A refund goes out once its capture is credited, as a refund follows a payment."""
        deadline = time.monotonic() + REFUND_WAIT_S
        while (payment_id := _credited_payment(database_url, event.topup.id)) is None:
            if time.monotonic() > deadline or self._abort.is_set():
                raise TimeoutError(f"the capture of top-up {event.topup.id} was not credited")
            time.sleep(POLL_S)
        return signer.refund(
            event.gateway,
            payment_id=payment_id,
            amount_minor=event.amount_minor,
            reference=event.topup.id,
            event_id=event.event_id(),
        )

    def _send(self, gateway: Gateway, signer: Signer, database_url: str) -> None:
        queue = deque(self.plan.sends)
        deferred_in_a_row = 0

        def take() -> Send | None:
            """The next request to make; a refund whose capture is not credited yet waits at
            the back of the queue, so its client goes on with other events meanwhile."""
            nonlocal deferred_in_a_row
            while not self._abort.is_set():
                with self._handed_lock:
                    if not queue:
                        return None
                    if self._handed >= self._gate:  # the next fault comes first
                        self._handed_lock.wait(POLL_S)
                        continue
                    send = queue.popleft()
                    if self._ready(send, database_url):
                        deferred_in_a_row = 0
                        self._handed += 1
                        self._handed_lock.notify_all()
                        return send
                    queue.append(send)
                    deferred_in_a_row += 1
                    nothing_ready = deferred_in_a_row > len(queue)
                if nothing_ready:
                    time.sleep(POLL_S)
            return None

        def client() -> None:
            while (send := take()) is not None:
                try:
                    if isinstance(send.item, Forgery):
                        self._forged.append(self._forge(gateway, signer, send.item))
                        continue
                    signed = self._sign(send.item, signer, database_url)
                    key = (send.item.number, send.copy)
                    delivery = self._deliveries.setdefault(key, Delivery())
                    gateway.deliver(signed.gateway, lambda s=signed: signer.attempt(s), delivery)
                except Exception as exc:  # the client goes on; the run reports it
                    logger.exception("A gateway client failed.")
                    self.report.problems.append(f"a gateway client failed: {exc}")

        threads = [
            threading.Thread(target=client, name=f"gateway-{n}", daemon=True)
            for n in range(self.config.clients)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException:
            self._abort.set()
            raise
        finally:
            self._sending_over.set()

    def _ready(self, send: Send, database_url: str) -> bool:
        """Whether `send` can go out now: anything but a refund of a capture not yet credited."""
        item = send.item
        if isinstance(item, Forgery) or item.kind == "capture" or item.number in self._credited:
            return True
        now = time.monotonic()
        if now < self._asked.get(item.number, 0.0) + REFUND_ASK_EVERY_S:
            return False
        self._asked[item.number] = now
        if _credited_payment(database_url, item.topup.id) is None:
            return False
        self._credited.add(item.number)
        return True

    def _forge(self, gateway: Gateway, signer: Signer, forgery: Forgery) -> Delivery:
        sample = signer.forged(
            forgery.gateway,
            forgery.how,
            amount_minor=forgery.target.amount_minor,
            reference=forgery.target.id,
            other_reference=forgery.other.id,
        )
        return gateway.deliver(forgery.gateway, lambda: sample, Delivery())

    def _bring_faults(self, faults: Faults, errors: list[BaseException]) -> None:
        actions: dict[str, Callable[[Event, Callable[[], None]], Fault]] = {
            "worker": faults.kill_worker_mid_transaction,
            "broker": faults.restart_broker,
            "database": faults.restart_database,
        }
        points = [*list(FAULT_POINTS.values())[1:], 1.0]
        try:
            for (name, action), after in zip(actions.items(), points, strict=True):
                with self._handed_lock:
                    while not self._handed_lock.wait_for(
                        lambda: self._handed >= self._gate, timeout=POLL_S
                    ):
                        if self._abort.is_set():
                            return
                logger.info("Fault %s begins.", name)
                self.report.faults.append(
                    action(self.plan.probes[name], lambda a=after: self._open_gate(a))
                )
                self._open_gate(after)
        except BaseException as exc:  # reported as a problem; the run goes on to its checks
            logger.exception("Fault failed.")
            errors.append(exc)
        finally:
            self._open_gate(1.0)

    def _open_gate(self, share: float) -> None:
        """Let the clients send up to `share` of the plan."""
        with self._handed_lock:
            self._gate = max(self._gate, round(share * len(self.plan.sends)))
            self._handed_lock.notify_all()

    def _wait_drained(self, database_url: str) -> float | None:
        """When every acknowledged event has its inbox row and none is waiting; None on timeout."""
        acknowledged = {
            number
            for (number, _), delivery in self._deliveries.items()
            if delivery.answers and delivery.final.acknowledged
        }
        deadline = time.monotonic() + self.config.drain_timeout_s
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(database_url, connect_timeout=2) as connection:
                    waiting, stored = connection.execute(
                        "SELECT count(*) FILTER (WHERE status IN ('received', 'parked')),"
                        " count(*) FROM inbox_events"
                    ).fetchone() or (0, 0)
            except psycopg.OperationalError:
                waiting, stored = 1, 0
            if waiting == 0 and stored >= len(acknowledged):
                return time.monotonic()
            time.sleep(POLL_S)
        return None

    def _judge(self, database_url: str, env: dict[str, str], codes: dict[str, int]) -> None:
        heard = checks.Heard(events={}, forgeries=self._forged)
        for (number, _), delivery in sorted(self._deliveries.items()):
            heard.events.setdefault(number, []).append(delivery)
        problems = self.report.problems
        problems += checks.answers(self.plan, heard)
        problems += checks.stored_despite_503(self.plan, heard)
        with psycopg.connect(database_url) as connection:
            problems += checks.inbox(connection, self.plan, heard)
            problems += checks.ledger(connection, self.plan, heard)
        verified = self._command(env, "verify")
        if verified.returncode != 0:
            problems.append(f"walletctl verify exited {verified.returncode}: {verified.stdout}")
        crashed = [f"{e.name} exited {e.code}" for e in self.report.exits if not e.expected]
        if crashed:
            problems.append(f"processes died unexpectedly: {', '.join(crashed)}")
        unclean = {name: code for name, code in codes.items() if code != 0}
        if unclean:
            problems.append(f"processes did not stop cleanly on SIGTERM: {unclean}")
        self._count(heard)

    def _count(self, heard: checks.Heard) -> None:
        every = [a for ds in heard.events.values() for d in ds for a in d.answers]
        forged = [a for d in heard.forgeries for a in d.answers]
        copies = [d for ds in heard.events.values() for d in ds]
        figures = self.report.figures
        events = [*self.plan.events, *self.plan.probes.values()]
        figures |= {
            "events": len(events),
            "captures": sum(e.kind == "capture" for e in events),
            "refunds": sum(e.kind == "refund" for e in events),
            "events_acknowledged": sum(heard.acknowledged(e) for e in events),
            "copies_sent": len(copies),
            "duplicates_sent": len(copies) - len(heard.events),
            "forged_sent": len(heard.forgeries),
            "forged_refused_401": sum(d.final.status == 401 for d in heard.forgeries),
            "requests": len(every) + len(forged),
            "answered_503": sum(a.status == 503 for a in every + forged),
            "connection_errors": sum(a.status is None for a in every + forged),
            "answered_accepted": sum(a.outcome in ("accepted", "[accepted]") for a in every),
            "answered_duplicate": sum(a.outcome == "duplicate" for a in every),
            "process_exits": ", ".join(f"{e.name}={e.code}" for e in self.report.exits) or "none",
        }


def _credited_payment(database_url: str, topup_id: str) -> str | None:
    try:
        with psycopg.connect(database_url, connect_timeout=2) as connection:
            row = connection.execute(
                "SELECT payment_id FROM topups WHERE id = %s AND status = 'succeeded'",
                (topup_id,),
            ).fetchone()
    except psycopg.OperationalError:
        return None  # PostgreSQL is restarting; ask again
    return None if row is None else str(row[0])
