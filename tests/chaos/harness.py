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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.chaos import checks
from tests.chaos.client import Api, Gateway
from tests.chaos.faults import Fault, Faults
from tests.chaos.plan import ChaosSize, Event, Plan, draw
from tests.chaos.processes import Exit, Pipeline
from tests.chaos.signing import Signer
from tests.chaos.traffic import Traffic
from tests.e2e.conftest import BIN, process_env
from tests.servers import PrivatePostgres, PrivateRedis

logger = logging.getLogger(__name__)

# Where in the run (share of requests handed to the clients) each fault begins. The clients
# wait at each point until the fault has begun, so every fault meets traffic.
FAULT_POINTS = {"worker": 0.2, "broker": 0.45, "database": 0.7}
# The relay re-sends what waits this long, checked this often: recovery in seconds.
SCHEDULER_OPTIONS = ("--interval-s", "0.5", "--resend-after-s", "2")
POLL_S = 0.1
# What gunicorn's arbiter logs when a web worker dies or hangs.
WEB_WORKER_LOST = ("WORKER TIMEOUT", "was sent SIGKILL", "exited with code")


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
        self._traffic: Traffic | None = None

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
        gateway = Gateway(pipeline.url, retry_for_s=self.config.retry_for_s, seed=7)
        traffic = Traffic(
            self.plan, gateway, Signer(env), database_url, first_gate=FAULT_POINTS["worker"]
        )
        self._traffic = traffic
        faults = Faults(
            pipeline=pipeline,
            database=database,
            broker=broker,
            database_url=database_url,
            gateway=gateway,
            sign=traffic.sign,
            attempt=traffic.signer.attempt,
            deliveries=traffic.deliveries,
            clients=self.config.clients,
            sending_over=traffic.over,
        )
        sending = time.monotonic()
        fault_errors: list[BaseException] = []
        fault_thread = threading.Thread(
            target=self._bring_faults,
            args=(faults, traffic, fault_errors),
            name="faults",
            daemon=True,
        )
        fault_thread.start()
        try:
            traffic.run(self.config.clients)
        finally:
            fault_thread.join()
        self.report.problems += traffic.failures
        sent = time.monotonic()
        if fault_errors:
            self.report.problems.append(f"a fault went wrong: {fault_errors[0]}")
        last_fault = max((f.ended_s for f in self.report.faults), default=sent)
        drained = self._wait_drained(database_url, traffic)
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

    def _bring_faults(self, faults: Faults, traffic: Traffic, errors: list[BaseException]) -> None:
        actions: dict[str, Callable[[Event, Callable[[], None]], Fault]] = {
            "worker": faults.kill_worker_mid_transaction,
            "broker": faults.restart_broker,
            "database": faults.restart_database,
        }
        points = [*list(FAULT_POINTS.values())[1:], 1.0]
        try:
            for (name, action), after in zip(actions.items(), points, strict=True):
                if not traffic.wait_at_gate():
                    return
                logger.info("Fault %s begins.", name)
                fault = action(self.plan.probes[name], lambda a=after: traffic.open_gate(a))
                self.report.faults.append(fault)
                traffic.open_gate(after)
        except BaseException as exc:  # reported as a problem; the run goes on to its checks
            logger.exception("Fault failed.")
            errors.append(exc)
        finally:
            traffic.open_gate(1.0)

    def _wait_drained(self, database_url: str, traffic: Traffic) -> float | None:
        """When every acknowledged event has its inbox row and none is waiting; None on timeout."""
        acknowledged = {
            number
            for (number, _), delivery in traffic.deliveries.items()
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
        traffic = self._traffic
        if traffic is None:
            return
        heard = checks.Heard(events={}, forgeries=traffic.forged)
        for (number, _), delivery in sorted(traffic.deliveries.items()):
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
        # gunicorn replaces a dead or hung web worker by itself, so only its log tells.
        web_log = (self.logs / "web.log").read_text(errors="replace")
        lost = [line for line in web_log.splitlines() if any(m in line for m in WEB_WORKER_LOST)]
        if lost:
            problems.append(f"web workers died: {lost[:3]}")
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
