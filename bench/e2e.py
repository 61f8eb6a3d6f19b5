"""End-to-end pipeline cost, throughput and latency against the raw PostgreSQL rate, in one run.

gunicorn (production config), a Dramatiq worker (`--processes 2 --threads N`) and the
scheduler run as the Procfile starts them, on a database and a redis-server of their own. wrk
on the same machine sends validly signed Stripe `payment_intent.succeeded` events, each
exactly once, one per pending top-up prepared beforehand: as fast as it can and at a fixed
offered rate, for top-ups spread over many wallets and for top-ups of one hot wallet.
Everything is read back from the inbox: accepted (rows stored), applied, receipt to balance
visible (`applied_at - received_at` per row), and the backlog left once the workers have had
a bounded time to drain it. The baseline is the raw single-event transaction of
bench/ledger_apply.py (an idempotency-key INSERT, a journal INSERT, a guarded balance UPDATE)
sent by pgbench with as many clients as there are worker threads in all, measured before and
after the loads.

Per scenario it also counts, per accepted event: CPU milliseconds of every process kind (web,
worker, scheduler, the PostgreSQL backends of the bench database, Redis: utime + stime from
/proc), PostgreSQL transactions (pg_stat_database) and the jobs the workers ran (Dramatiq's
own Prometheus counter). `--count-statements` adds a pass that logs every statement of the
pipeline's connections (log_statement=all through PGOPTIONS) and counts them in the server's
log. `--backlog N` stores N captures while the workers are stopped, as a gateway's retry storm
would leave them, and times the drain once they start.

    python bench/e2e.py [--events 3000] [--threads 4] [--rate R] [--seconds 10]
                        [--count-statements] [--backlog 100000]

Needs wrk (Debian: apt-get install -y wrk). Prints one row per scenario and the ratios;
docs/benchmarks.md describes the method and records a run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from ledger_apply import PGBENCH_RAW, libpq, measure, pgbench, prepare
from procstat import CpuMeter, Kind, backends, descendants
from sqlalchemy.engine import make_url

from ledger.account import open_wallet
from ledger.db import make_engine, make_session_factory
from ledger.topup import create_topup
from webhook_receiver import gunicorn_conf
from webhook_receiver.gateways import ADAPTERS

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SECRET = "whsec_bench_e2e"
JWT_SECRET = "bench-e2e-jwt-secret-0123456789abcdef"
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://localhost/walletpipe_bench_e2e"
)
POSTGRES_LOG = "/var/log/postgresql/postgresql-15-main.log"
WORKER_PROCESSES = 2
WRK_THREADS = 2
AMOUNT_MINOR = 5000
CURRENCY = "ZAR"
WARM_UP_EVENTS = 50
# The receiver refuses a Stripe signature older than 300 s; each load is signed just before
# it starts and must be sent well within that.
SEND_S_MAX = 240
POLL_S = 0.25


@dataclass(frozen=True)
class Scenario:
    name: str
    tag: str  # event ids start with evt_<tag>, so each scenario's inbox rows can be told apart
    hot: bool
    paced: bool


SCENARIOS = (
    Scenario("spread, max", "spreadmax", hot=False, paced=False),
    Scenario("spread, fixed rate", "spreadrate", hot=False, paced=True),
    Scenario("hot, max", "hotmax", hot=True, paced=False),
    Scenario("hot, fixed rate", "hotrate", hot=True, paced=True),
)


@dataclass(frozen=True)
class Sent:
    """What wrk reports: requests answered, answered non-2xx, and socket errors."""

    answered: int
    rejected: int
    errors: int

    @property
    def failed(self) -> int:
        return self.rejected + self.errors


@dataclass(frozen=True)
class Inbox:
    """One scenario's inbox rows, read after the drain."""

    accepted: int
    applied: int
    backlog: int  # still 'received' or 'parked'
    review: int  # set aside as 'needs_review': a mismatch, never expected here
    accepted_per_s: float
    applied_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Cost:
    """What one scenario cost, counted over every process of the pipeline."""

    cpu_s: dict[str, float]  # by process kind
    transactions: int  # committed and rolled back, in the bench database
    jobs: dict[str, float]  # messages the workers ran, by actor

    def per_event(self, events: int) -> dict[str, float]:
        return {kind: 1000 * used / max(events, 1) for kind, used in self.cpu_s.items()}


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    offered_per_s: float  # 0 for as fast as wrk can
    sent: Sent
    inbox: Inbox
    cost: Cost


@dataclass(frozen=True)
class Target:
    """The running pipeline a load is sent to, and where its inbox is read."""

    url: str
    db: psycopg.Connection
    connections: int
    drain_s: float
    work: Path
    pipeline: Pipeline


def create_topups(url: str, wallets: list[uuid.UUID], count: int) -> list[uuid.UUID]:
    """`count` pending Stripe top-ups, cycling over `wallets`."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        topups = [
            create_topup(
                session,
                wallet_id=wallets[i % len(wallets)],
                amount_minor=AMOUNT_MINOR,
                gateway="stripe",
            ).id
            for i in range(count)
        ]
    engine.dispose()
    return topups


def open_hot_wallet(url: str, owner_id: str) -> uuid.UUID:
    engine = make_engine(url)
    with make_session_factory(engine).begin() as session:
        wallet = open_wallet(session, owner_id, CURRENCY)
        session.flush()
        wallet_id = wallet.id
    engine.dispose()
    return wallet_id


def write_events(path: Path, tag: str, topups: list[uuid.UUID]) -> None:
    """One Stripe capture event per top-up, signed now, in bench/e2e.lua's record format."""
    adapter = ADAPTERS["stripe"]
    with path.open("wb") as out:
        for number, topup in enumerate(topups):
            sample = adapter.sample(
                SECRET,
                amount_minor=AMOUNT_MINOR,
                currency=CURRENCY,
                reference=str(topup),
                event_id=f"evt_{tag}_{number:07d}",
            )
            headers = {"Content-Type": sample.content_type, **sample.headers}
            assert b"\x1e" not in sample.body
            assert b"\x1f" not in sample.body
            out.write("".join(f"{name}: {value}\n" for name, value in headers.items()).encode())
            out.write(b"\x1f" + sample.body + b"\x1e")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(
    name: str, command: list[str], env: dict[str, str], logs: Path
) -> subprocess.Popen[bytes]:
    with (logs / f"{name}.log").open("a") as log:  # the child keeps its own copy open
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each (graceful: in-flight work finishes), then wait; kill what hangs."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start_redis(logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the bench's own, so that its CPU is the pipeline's alone."""
    port = free_port()
    server = start(
        "redis",
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        dict(os.environ),
        logs,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return server, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Pipeline:
    """gunicorn, the worker and the scheduler as the Procfile starts them."""

    def __init__(self, env: dict[str, str], logs: Path, threads: int) -> None:
        self.env = env
        self.logs = logs
        self.threads = threads
        self.url = f"http://{env['HOST']}:{env['PORT']}"
        self.jobs_url = f"http://127.0.0.1:{env['dramatiq_prom_port']}/"
        self.web = self.worker = self.scheduler = None  # type: subprocess.Popen[bytes] | None

    def start(self) -> None:
        self.web = start(
            "web",
            [
                str(BIN / "gunicorn"),
                "--config",
                "python:webhook_receiver.gunicorn_conf",
                "webhook_receiver:create_app()",
            ],
            self.env,
            self.logs,
        )
        self.start_worker()
        self.scheduler = start(
            "scheduler", [str(BIN / "walletctl"), "scheduler"], self.env, self.logs
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):  # noqa: S310
                    return
            except OSError:
                if any(p.poll() is not None for p in self.processes()) or (
                    time.monotonic() > deadline
                ):
                    self.stop()
                    raise RuntimeError(f"the pipeline did not start; logs in {self.logs}") from None
                time.sleep(0.1)

    def start_worker(self) -> None:
        prom = Path(self.env["dramatiq_prom_db"])
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        self.worker = start(
            "worker",
            [
                str(BIN / "dramatiq"),
                "workers.actors",
                "--processes",
                str(WORKER_PROCESSES),
                "--threads",
                str(self.threads),
            ],
            self.env,
            self.logs,
        )
        deadline = time.monotonic() + 30
        while self.jobs_done() is None:
            if self.worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; logs in {self.logs}")
            time.sleep(0.2)

    def stop_worker(self) -> None:
        if self.worker is not None:
            stop_all([self.worker])

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in (self.web, self.worker, self.scheduler) if p is not None]

    def stop(self) -> None:
        stop_all(self.processes())

    def jobs_done(self) -> dict[str, float] | None:
        """Messages the workers have run, by actor (Dramatiq's exporter); None if it is down."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(self.jobs_url, timeout=2) as answer:  # noqa: S310
                text = answer.read().decode()
        except OSError:
            return None
        done: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "dramatiq_messages_total":
                    actor = sample.labels["actor_name"]
                    done[actor] = done.get(actor, 0.0) + sample.value
        return done


def process_kinds(
    pipeline: Pipeline, redis_pid: int, admin: psycopg.Connection, db: str
) -> list[Kind]:
    def tree(name: str) -> Kind:
        return Kind(name, lambda: descendants(getattr(pipeline, name).pid))

    return [
        tree("web"),
        tree("worker"),
        tree("scheduler"),
        Kind("postgres", lambda: backends(admin, db)),
        Kind("redis", lambda: [redis_pid]),
    ]


def transactions(db: psycopg.Connection, name: str) -> int:
    row = db.execute(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (name,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def send(url: str, events: Path, rate: float, connections: int) -> Sent:
    """Send every record of `events` once with wrk, at `rate` requests/s (0: as fast as it can).

    wrk sleeps for its whole -d duration even when its threads have stopped, so it is
    interrupted once bench/e2e.lua says that every thread has been answered.
    """
    done = events.with_suffix(".done")
    done.unlink(missing_ok=True)
    wrk = subprocess.Popen(
        [
            "wrk",
            "-t",
            str(WRK_THREADS),
            "-c",
            str(connections),
            "-d",
            f"{SEND_S_MAX}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "e2e.lua"),
            f"{url}/webhooks/stripe",
            "--",
            str(events),
            str(WRK_THREADS),
            f"{rate:.3f}",
            str(done),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while wrk.poll() is None:
        if done.exists() and len(done.read_text().split()) >= WRK_THREADS:
            wrk.send_signal(signal.SIGINT)
            break
        time.sleep(0.05)
    out, err = wrk.communicate(timeout=SEND_S_MAX + 30)
    if wrk.returncode != 0 or " requests in " not in out:
        raise RuntimeError(f"wrk failed:\n{out}\n{err}")
    return parse_wrk(out)


def parse_wrk(out: str) -> Sent:
    answered = rejected = errors = 0
    for line in out.splitlines():
        words = line.replace(",", "").split()
        if " requests in " in line:
            answered = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            rejected = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            # "Socket errors: connect 0 read 0 write 0 timeout 0"
            errors = sum(int(word) for word in words[2:][1::2])
    return Sent(answered=answered, rejected=rejected, errors=errors)


INBOX_QUERY = """
SELECT count(*),
       count(*) FILTER (WHERE status = 'applied'),
       count(*) FILTER (WHERE status IN ('received', 'parked')),
       count(*) FILTER (WHERE status = 'needs_review'),
       extract(epoch FROM max(received_at) - min(received_at)),
       extract(epoch FROM max(applied_at) - min(received_at)),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - received_at)),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - received_at))
  FROM inbox_events
 WHERE gateway = 'stripe' AND event_id LIKE %s
"""


def read_inbox(db: psycopg.Connection, tag: str) -> Inbox:
    row = db.execute(INBOX_QUERY, (f"evt\\_{tag}\\_%",)).fetchone()
    assert row is not None
    accepted, applied, backlog, review, receiving_s, applying_s, p50_s, p99_s = row

    def per_s(count: int, span_s: object) -> float:
        return count / float(span_s) if span_s else 0.0

    return Inbox(
        accepted=accepted,
        applied=applied,
        backlog=backlog,
        review=review,
        accepted_per_s=per_s(accepted, receiving_s),
        applied_per_s=per_s(applied, applying_s),
        p50_ms=float(p50_s or 0) * 1000,
        p99_ms=float(p99_s or 0) * 1000,
    )


def drain(db: psycopg.Connection, tag: str, bound_s: float) -> Inbox:
    """The scenario's inbox once its backlog is empty and every notification is delivered,
    or once `bound_s` has passed."""
    deadline = time.monotonic() + bound_s
    while True:
        inbox = read_inbox(db, tag)
        if (inbox.backlog == 0 and undelivered(db) == 0) or time.monotonic() > deadline:
            return inbox
        time.sleep(POLL_S)


def undelivered(db: psycopg.Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM outbox_events WHERE delivered_at IS NULL AND failed_at IS NULL"
    ).fetchone()
    assert row is not None
    return int(row[0])


class Meter:
    """Counts a scenario's cost: CPU by process kind, transactions, jobs run."""

    def __init__(
        self,
        target_db: psycopg.Connection,
        admin: psycopg.Connection,
        name: str,
        kinds: list[Kind],
        pipeline: Pipeline,
    ) -> None:
        self._db = target_db
        self._admin = admin
        self._name = name
        self._cpu = CpuMeter(kinds)
        self._pipeline = pipeline

    def __enter__(self) -> Meter:
        self._transactions = transactions(self._admin, self._name)
        self._jobs = self._pipeline.jobs_done() or {}
        self._cpu.start()
        return self

    def __exit__(self, *exc: object) -> None:
        cpu = self._cpu.stop()
        time.sleep(1.5)  # backends report their transactions to the statistics within a second
        jobs = self._pipeline.jobs_done() or {}
        self.cost = Cost(
            cpu_s=cpu,
            transactions=transactions(self._admin, self._name) - self._transactions,
            jobs={
                a: n - self._jobs.get(a, 0.0) for a, n in jobs.items() if n > self._jobs.get(a, 0.0)
            },
        )


def run(
    target: Target, meter: Meter, tag: str, topups: list[uuid.UUID], rate: float
) -> tuple[Sent, Inbox, Cost]:
    """Sign one event per top-up now, send each once, wait for the drain, read the inbox."""
    events = target.work / f"{tag}.events"
    write_events(events, tag, topups)
    with meter:
        sent = send(target.url, events, rate, target.connections)
        inbox = drain(target.db, tag, target.drain_s)
    return sent, inbox, meter.cost


def seed_backlog(db: psycopg.Connection, count: int, wallets: int) -> None:
    """`count` pending top-ups spread over the bench wallets, each with its capture stored in
    the inbox as the receiver stores it, as a retry storm leaves them for the workers."""
    db.execute(
        """
        WITH t AS (
            INSERT INTO topups (wallet_id, amount_minor, currency, gateway)
            SELECT w.id, %(amount)s, %(currency)s, 'stripe'
            FROM generate_series(1, %(count)s) g JOIN bench_wallets w ON w.n = 1 + g %% %(wallets)s
            RETURNING id
        )
        INSERT INTO inbox_events (gateway, event_id, kind, payment_id, amount_minor, currency,
                                  reference, payload, payload_sha256, body, headers, status)
        SELECT 'stripe', 'evt_backlog_' || t.id, 'payment_succeeded',
               'pi_' || replace(t.id::text, '-', ''), %(amount)s, %(currency)s, t.id::text,
               '{}'::jsonb, sha256(t.id::text::bytea), convert_to('{}', 'UTF8'), '{}'::jsonb,
               'received'
        FROM t
        """,
        {"amount": AMOUNT_MINOR, "currency": CURRENCY, "count": count, "wallets": wallets},
    )


def count_statements(log: Path, offset: int, database: str) -> dict[str, int]:
    """Statements the server logged for `database` after `offset`, by their first word."""
    counted: dict[str, int] = {}
    marker = f"@{database} LOG:  "
    starts_below = False  # the statement's text begins on the next line
    with log.open("rb") as lines:
        lines.seek(offset)
        for raw in lines:
            line = raw.decode(errors="replace")
            if starts_below:
                starts_below = False
                word = (line.split(None, 1) or ["?"])[0].upper().rstrip(";")
                counted[word] = counted.get(word, 0) + 1
                continue
            at = line.find(marker)
            if at < 0:
                continue
            rest = line[at + len(marker) :]
            if rest.startswith("statement: "):
                sql = rest[len("statement: ") :]
            elif rest.startswith("execute "):
                sql = rest.split(": ", 1)[1] if ": " in rest else ""
            else:
                continue
            if not sql.strip():
                starts_below = True
                continue
            word = sql.split(None, 1)[0].upper().rstrip(";")
            counted[word] = counted.get(word, 0) + 1
    return counted


def log_problems(logs: Path, shown: int = 3) -> list[str]:
    """A count of error lines per log, with the first few of them."""
    lines = []
    for log in sorted(logs.glob("*.log")):
        bad = [
            line.rstrip()
            for line in log.read_text(errors="replace").splitlines()
            if any(word in line for word in ("ERROR", "CRITICAL", "Traceback"))
        ]
        lines.append(f"  {log.stem}: {len(bad)} error lines")
        lines.extend(f"    {line[:200]}" for line in bad[:shown])
    return lines


KINDS = ("web", "worker", "scheduler", "postgres", "redis")


def print_report(
    results: list[Result], raw_rates: tuple[float, float], drain_s: float, broker_left: int
) -> None:
    raw = sum(raw_rates) / len(raw_rates)
    print(
        f"{'scenario':20s} {'offered/s':>9s} {'sent':>6s} {'failed':>6s} {'accepted/s':>10s}"
        f" {'applied/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'backlog':>7s} {'review':>6s}"
    )
    for result in results:
        inbox = result.inbox
        offered = f"{result.offered_per_s:.0f}" if result.offered_per_s else "max"
        print(
            f"{result.scenario.name:20s} {offered:>9s} {result.sent.answered:6d}"
            f" {result.sent.failed:6d} {inbox.accepted_per_s:10.0f} {inbox.applied_per_s:9.0f}"
            f" {inbox.p50_ms:8.1f} {inbox.p99_ms:8.1f} {inbox.backlog:7d} {inbox.review:6d}"
        )
    print()
    print_costs([(r.scenario.name, r.inbox.accepted, r.cost) for r in results])
    print()
    print(
        f"raw PostgreSQL single-event rate (pgbench): {raw_rates[0]:.0f}/s before the loads,"
        f" {raw_rates[1]:.0f}/s after, {raw:.0f}/s mean (the baseline below)"
    )
    print(f"backlog: what was left 'received' or 'parked' {drain_s:g} s after the last request")
    print(f"jobs left in the broker after the run: {broker_left}")
    for result in results:
        answered_2xx = result.sent.answered - result.sent.rejected
        if result.inbox.accepted != answered_2xx:
            print(
                f"note: {result.scenario.name}: {result.inbox.accepted} inbox rows stored for"
                f" {answered_2xx} requests answered 2xx"
            )
    by_name = {result.scenario.name: result.inbox for result in results}
    for result in results:
        print(
            f"ratio applied/raw, {result.scenario.name + ':':20s} "
            f"{result.inbox.applied_per_s / raw:5.2f}   aim >= 0.5"
        )
    for mode in ("max", "fixed rate"):
        hot, spread = by_name.get(f"hot, {mode}"), by_name.get(f"spread, {mode}")
        if hot and spread and spread.applied_per_s:
            print(
                f"ratio hot/spread applied/s, {mode + ':':11s}  "
                f"{hot.applied_per_s / spread.applied_per_s:5.2f}   aim 1.0"
            )


def print_costs(rows: list[tuple[str, int, Cost]]) -> None:
    """CPU ms, transactions and jobs per accepted event, by scenario."""
    print(
        f"{'per accepted event':20s} "
        + " ".join(f"{k + ' ms':>12s}" for k in KINDS)
        + f" {'CPU ms':>8s} {'xacts':>6s} {'jobs':>6s}"
    )
    for name, events, cost in rows:
        per = cost.per_event(events)
        jobs = sum(cost.jobs.values()) / max(events, 1)
        print(
            f"{name:20s} "
            + " ".join(f"{per.get(k, 0.0):12.3f}" for k in KINDS)
            + f" {sum(per.values()):8.3f} {cost.transactions / max(events, 1):6.2f} {jobs:6.3f}"
        )
    for name, events, cost in rows:
        by_actor = ", ".join(f"{a} {n / max(events, 1):.3f}" for a, n in sorted(cost.jobs.items()))
        print(f"jobs per event, {name}: {by_actor or 'none'}")


def rss_line(kinds: list[Kind]) -> str:
    return ", ".join(f"{kind.name} {kind.rss() / 2**20:.0f} MiB" for kind in kinds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="webhooks per scenario")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offered webhooks/s of the fixed-rate scenarios (default: half of spread, max)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each raw measurement")
    parser.add_argument("--wallets", type=int, default=1000, help="wallets of the spread loads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--drain-s", type=float, default=60.0, help="bound on each drain")
    parser.add_argument("--backlog", type=int, default=0, help="captures of the drain scenario")
    parser.add_argument(
        "--count-statements",
        type=int,
        default=0,
        metavar="EVENTS",
        help="also count the statements of this many events (log_statement=all)",
    )
    parser.add_argument("--postgres-log", default=POSTGRES_LOG, help="the server's log file")
    parser.add_argument(
        "--only", action="append", help="run only this scenario (repeatable; default: all)"
    )
    parser.add_argument("--logs", help="keep the processes' logs here (default: removed)")
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so the pipeline and the redis-server started here stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        print("bench/e2e.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(1)
    if min(args.events, args.connections) < WRK_THREADS:
        parser.error(f"--events and --connections must be at least {WRK_THREADS}")
    clients = WORKER_PROCESSES * args.threads
    database = make_url(BENCH_DATABASE_URL).database
    assert database

    print(f"preparing {BENCH_DATABASE_URL}: {args.wallets} wallets, top-ups", flush=True)
    wallets = prepare(BENCH_DATABASE_URL, args.wallets)
    warm_up = create_topups(BENCH_DATABASE_URL, wallets, WARM_UP_EVENTS)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    topups = {
        scenario.tag: create_topups(
            BENCH_DATABASE_URL,
            [open_hot_wallet(BENCH_DATABASE_URL, f"bench-{scenario.tag}")]
            if scenario.hot
            else wallets,
            args.events,
        )
        for scenario in chosen
    }
    counted_topups = create_topups(BENCH_DATABASE_URL, wallets, args.count_statements)

    def raw_rate() -> float:
        if shutil.which("pgbench"):
            script = PGBENCH_RAW.format(wallets=args.wallets)
            return pgbench(BENCH_DATABASE_URL, script, clients, args.seconds)
        return measure("raw spread", BENCH_DATABASE_URL, wallets, clients, args.seconds)

    raw_before = raw_rate()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()};"
        f" gunicorn {gunicorn_conf.workers} x {gunicorn_conf.threads}"
        f" {gunicorn_conf.worker_class}; dramatiq {WORKER_PROCESSES} x"
        f" {args.threads} threads; wrk {WRK_THREADS} threads, {args.connections} connections;"
        f" {args.events} events per scenario, spread over {args.wallets} wallets;"
        f" raw: pgbench, {clients} clients, {args.seconds:g} s",
        flush=True,
    )
    results: list[Result] = []
    extra_costs: list[tuple[str, int, Cost]] = []
    kept = contextlib.nullcontext(args.logs) if args.logs else tempfile.TemporaryDirectory()
    with (
        kept as scratch,
        psycopg.connect(libpq(BENCH_DATABASE_URL), autocommit=True) as db,
        psycopg.connect(libpq(BENCH_DATABASE_URL, "postgres"), autocommit=True) as admin,
    ):
        work = Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        redis_server, broker_url = start_redis(work)
        env = {
            **os.environ,
            "DATABASE_URL": BENCH_DATABASE_URL,
            "BROKER_URL": broker_url,
            "DATABASE_POOL_SIZE": str(max(5, args.threads + 1)),
            "STRIPE_WEBHOOK_SECRET": SECRET,
            "WALLETPIPE_JWT_SECRET": JWT_SECRET,
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "dramatiq_prom_port": str(free_port()),
            "dramatiq_prom_host": "127.0.0.1",
            "dramatiq_prom_db": str(work / "prometheus"),
        }
        pipeline = Pipeline(env, work, args.threads)
        try:
            pipeline.start()
            kinds = process_kinds(pipeline, redis_server.pid, admin, database)
            meter = Meter(db, admin, database, kinds, pipeline)
            target = Target(pipeline.url, db, args.connections, args.drain_s, work, pipeline)
            _, warmed, _ = run(target, meter, "warmup", warm_up, rate=0)
            if warmed.applied != WARM_UP_EVENTS:
                problems = "\n".join(log_problems(work))
                raise RuntimeError(f"warm-up did not apply: {warmed}; logs:\n{problems}")
            rss_idle = rss_line(kinds)
            rate = args.rate
            for scenario in chosen:
                offered = 0.0
                if scenario.paced:
                    if rate is None:  # half the maximum the pipeline itself just reached
                        if not results:
                            parser.error("a fixed-rate scenario alone needs --rate")
                        rate = results[0].inbox.applied_per_s / 2
                    offered = rate
                print(f"running {scenario.name}", flush=True)
                sent, inbox, cost = run(target, meter, scenario.tag, topups[scenario.tag], offered)
                results.append(Result(scenario, offered, sent, inbox, cost))
            rss_loaded = rss_line(kinds)
            if args.backlog:
                extra_costs.append(drain_backlog(target, meter, db, args.backlog, args.wallets))
        finally:
            pipeline.stop()
        if args.count_statements:
            extra_costs.append(
                statement_pass(
                    env, work, args, db, admin, database, counted_topups, redis_server.pid
                )
            )
        problems = log_problems(work)
        broker = redis.Redis.from_url(broker_url)
        # Every queue (and delay queue) of the workers, not only the ledger's.
        broker_left = sum(int(broker.hlen(key)) for key in broker.scan_iter("dramatiq:*.msgs"))
        stop_all([redis_server])
    raw_after = raw_rate()

    print_report(results, (raw_before, raw_after), args.drain_s, broker_left)
    if extra_costs:
        print()
        print_costs(extra_costs)
    print(f"RSS after the warm-up: {rss_idle}")
    print(f"RSS after the loads:   {rss_loaded}")
    print("errors in the processes' logs:")
    print("\n".join(problems))


def drain_backlog(
    target: Target, meter: Meter, db: psycopg.Connection, count: int, wallets: int
) -> tuple[str, int, Cost]:
    """Stop the workers, store `count` captures, start them, and time the drain."""
    from workers.jobs import APPLY_INBOX_BATCH, JobSender

    pipeline = target.pipeline
    pipeline.stop_worker()
    print(f"storing a backlog of {count} captures", flush=True)
    seed_backlog(db, count, wallets)
    with meter:
        started = time.monotonic()
        pipeline.start_worker()
        sender = JobSender(pipeline.env["BROKER_URL"])
        sender.send(APPLY_INBOX_BATCH)
        sender.close()
        inbox = drain(db, "backlog", bound_s=3600)
        drained_s = time.monotonic() - started
    print(
        f"backlog of {count}: drained in {drained_s:.1f} s ({inbox.applied / drained_s:.0f}/s),"
        f" {inbox.backlog} left, {inbox.review} set aside for review",
        flush=True,
    )
    return f"backlog {count}", inbox.applied, meter.cost


def statement_pass(
    env: dict[str, str],
    work: Path,
    args: argparse.Namespace,
    db: psycopg.Connection,
    admin: psycopg.Connection,
    database: str,
    topups: list[uuid.UUID],
    redis_pid: int,
) -> tuple[str, int, Cost]:
    """The pipeline again with every statement logged; prints the statements per event."""
    log = Path(args.postgres_log)
    admin.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
    pipeline = Pipeline({**env, "PORT": str(free_port())}, work, args.threads)
    try:
        pipeline.start()
        kinds = process_kinds(pipeline, redis_pid, admin, database)
        meter = Meter(db, admin, database, kinds, pipeline)
        target = Target(pipeline.url, db, args.connections, args.drain_s, work, pipeline)
        offset = log.stat().st_size
        rate = args.rate or 100.0
        print(f"counting the statements of {len(topups)} events at {rate:.0f}/s", flush=True)
        _, inbox, cost = run(target, meter, "counted", topups, rate)
        time.sleep(1)
        counted = count_statements(log, offset, database)
    finally:
        pipeline.stop()
        admin.execute(f'ALTER DATABASE "{database}" RESET log_statement')
    events = max(inbox.accepted, 1)
    total = sum(counted.values())
    words = ", ".join(
        f"{w} {n / events:.2f}" for w, n in sorted(counted.items(), key=lambda x: -x[1])
    )
    print(f"statements per event (logged, {inbox.accepted} events): {total / events:.2f}: {words}")
    return "statements pass", inbox.accepted, cost


if __name__ == "__main__":
    main()
