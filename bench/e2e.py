"""End-to-end pipeline throughput and latency against the raw PostgreSQL rate, in one run.

gunicorn (production config), a Dramatiq worker (`--processes 2 --threads N`) and the
scheduler run as the Procfile starts them, on a database and a Redis index of their own. wrk
on the same machine sends validly signed Stripe `payment_intent.succeeded` events, each
exactly once, one per pending top-up prepared beforehand: as fast as it can and at a fixed
offered rate, for top-ups spread over many wallets and for top-ups of one hot wallet.
Everything is read back from the inbox: accepted (rows stored), applied, receipt to balance
visible (`applied_at - received_at` per row), and the backlog left once the workers have had
a bounded time to drain it. The baseline is bench/ledger_apply.py's raw single-event
transaction with as many clients as there are worker threads in all, measured before and
after the loads.

    python bench/e2e.py [--events 3000] [--threads 4] [--rate R] [--seconds 10]

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
from ledger_apply import libpq, measure, prepare

from ledger.account import open_wallet
from ledger.db import make_engine, make_session_factory
from ledger.topup import create_topup
from webhook_receiver.gateways import ADAPTERS

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SECRET = "whsec_bench_e2e"
JWT_SECRET = "bench-e2e-jwt-secret-0123456789abcdef"
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://localhost/walletpipe_bench_e2e"
)
BENCH_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://localhost:6379/10")
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
class Result:
    scenario: Scenario
    offered_per_s: float  # 0 for as fast as wrk can
    sent: Sent
    inbox: Inbox


@dataclass(frozen=True)
class Target:
    """The running pipeline a load is sent to, and where its inbox is read."""

    url: str
    db: psycopg.Connection
    connections: int
    drain_s: float
    work: Path


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
    with (logs / f"{name}.log").open("w") as log:  # the child keeps its own copy open
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def start_pipeline(
    env: dict[str, str], logs: Path, threads: int
) -> tuple[list[subprocess.Popen[bytes]], str]:
    """gunicorn, the worker and the scheduler as the Procfile starts them; the web's URL."""
    processes = [
        start(
            "web",
            [
                str(BIN / "gunicorn"),
                "--config",
                "python:webhook_receiver.gunicorn_conf",
                "webhook_receiver:create_app()",
            ],
            env,
            logs,
        ),
        start(
            "worker",
            [
                str(BIN / "dramatiq"),
                "workers.actors",
                "--processes",
                str(WORKER_PROCESSES),
                "--threads",
                str(threads),
            ],
            env,
            logs,
        ),
        start("scheduler", [str(BIN / "walletctl"), "scheduler"], env, logs),
    ]
    url = f"http://{env['HOST']}:{env['PORT']}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 (local)
                return processes, url
        except OSError:
            if any(p.poll() is not None for p in processes) or time.monotonic() > deadline:
                stop_all(processes)
                raise RuntimeError(f"the pipeline did not start; logs in {logs}") from None
            time.sleep(0.1)


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
    """The scenario's inbox once its backlog is empty, or once `bound_s` has passed."""
    deadline = time.monotonic() + bound_s
    while True:
        inbox = read_inbox(db, tag)
        if inbox.backlog == 0 or time.monotonic() > deadline:
            return inbox
        time.sleep(POLL_S)


def run(target: Target, tag: str, topups: list[uuid.UUID], rate: float) -> tuple[Sent, Inbox]:
    """Sign one event per top-up now, send each once, wait for the drain, read the inbox."""
    events = target.work / f"{tag}.events"
    write_events(events, tag, topups)
    sent = send(target.url, events, rate, target.connections)
    return sent, drain(target.db, tag, target.drain_s)


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
    print(
        f"raw PostgreSQL single-event rate: {raw_rates[0]:.0f}/s before the loads,"
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
        hot, spread = by_name[f"hot, {mode}"], by_name[f"spread, {mode}"]
        if spread.applied_per_s:
            print(
                f"ratio hot/spread applied/s, {mode + ':':11s}  "
                f"{hot.applied_per_s / spread.applied_per_s:5.2f}   aim 1.0"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="webhooks per scenario")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="offered webhooks/s of the fixed-rate scenarios (default: half the raw rate)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="each raw measurement")
    parser.add_argument("--wallets", type=int, default=1000, help="wallets of the spread loads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--drain-s", type=float, default=60.0, help="bound on each drain")
    parser.add_argument("--logs", help="keep the processes' logs here (default: removed)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench/e2e.py needs wrk: apt-get install -y wrk", file=sys.stderr)
        raise SystemExit(1)
    if min(args.events, args.connections) < WRK_THREADS:
        parser.error(f"--events and --connections must be at least {WRK_THREADS}")
    clients = WORKER_PROCESSES * args.threads

    print(f"preparing {BENCH_DATABASE_URL}: {args.wallets} wallets, top-ups", flush=True)
    wallets = prepare(BENCH_DATABASE_URL, args.wallets)
    broker = redis.Redis.from_url(BENCH_BROKER_URL)
    broker.flushdb()
    warm_up = create_topups(BENCH_DATABASE_URL, wallets, WARM_UP_EVENTS)
    topups = {
        scenario.tag: create_topups(
            BENCH_DATABASE_URL,
            [open_hot_wallet(BENCH_DATABASE_URL, f"bench-{scenario.tag}")]
            if scenario.hot
            else wallets,
            args.events,
        )
        for scenario in SCENARIOS
    }
    raw_before = measure("raw spread", BENCH_DATABASE_URL, wallets, clients, args.seconds)
    rate = args.rate or raw_before / 2
    if args.events / rate > SEND_S_MAX:
        raise SystemExit(f"--events {args.events} at {rate:.0f}/s takes over {SEND_S_MAX} s")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()};"
        f" gunicorn {os.environ.get('WEB_CONCURRENCY', 2 * (os.cpu_count() or 1))} x"
        f" {os.environ.get('WEB_THREADS', 4)} threads; dramatiq {WORKER_PROCESSES} x"
        f" {args.threads} threads; wrk {WRK_THREADS} threads, {args.connections} connections;"
        f" {args.events} events per scenario, spread over {args.wallets} wallets;"
        f" fixed rate {rate:.0f}/s; raw: {clients} clients, {args.seconds:g} s",
        flush=True,
    )

    env = {
        **os.environ,
        "DATABASE_URL": BENCH_DATABASE_URL,
        "BROKER_URL": BENCH_BROKER_URL,
        "DATABASE_POOL_SIZE": str(max(5, args.threads)),
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "WALLETPIPE_JWT_SECRET": JWT_SECRET,
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
    }
    results = []
    kept = contextlib.nullcontext(args.logs) if args.logs else tempfile.TemporaryDirectory()
    with (
        kept as scratch,
        psycopg.connect(libpq(BENCH_DATABASE_URL), autocommit=True) as db,
    ):
        work = Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        processes, url = start_pipeline(env, work, args.threads)
        target = Target(url, db, args.connections, args.drain_s, work)
        try:
            _, warmed = run(target, "warmup", warm_up, rate=0)
            if warmed.applied != WARM_UP_EVENTS:
                problems = "\n".join(log_problems(work))
                raise RuntimeError(f"warm-up did not apply: {warmed}; logs:\n{problems}")
            for scenario in SCENARIOS:
                print(f"running {scenario.name}", flush=True)
                offered = rate if scenario.paced else 0
                sent, inbox = run(target, scenario.tag, topups[scenario.tag], offered)
                results.append(Result(scenario, offered, sent, inbox))
        finally:
            stop_all(processes)
        problems = log_problems(work)
    # Every queue (and delay queue) of the workers, not only the ledger's.
    broker_left = sum(int(broker.hlen(key)) for key in broker.scan_iter("dramatiq:*.msgs"))
    broker.flushdb()
    raw_after = measure("raw spread", BENCH_DATABASE_URL, wallets, clients, args.seconds)

    print_report(results, (raw_before, raw_after), args.drain_s, broker_left)
    print("errors in the processes' logs:")
    print("\n".join(problems))


if __name__ == "__main__":
    main()
