"""Ledger throughput against the raw PostgreSQL ceiling for the same work, in one run.

Each scenario runs N client processes for a fixed time; every client commits one transaction
after another. The raw baseline does, per transaction, what any exactly-once ledger must: one
INSERT of an idempotency key, one INSERT of a journal row and one balance UPDATE, with psycopg
directly. The ledger scenarios call ledger.transfer.transfer() through SQLAlchemy.

    python bench/ledger_apply.py [--clients 8] [--seconds 10] [--wallets 1000] [--batch 16]

Where pgbench is installed, the same run also measures both on the database alone (pgbench
sending the ledger's INSERT and the raw three statements), which separates the schema's cost
from the client library's. Prints transfers/s per scenario and the ratios; docs/benchmarks.md
records a run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

import psycopg
from sqlalchemy.engine import make_url

from ledger.account import open_wallet, system_account_id
from ledger.adjustment import Direction, adjust
from ledger.db import make_engine, make_session_factory
from ledger.migrate import upgrade
from ledger.models import Category, SystemAccount
from ledger.transfer import TransferRequest, transfer_many

BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://localhost/walletpipe_bench")
FUNDING_MINOR = 10**12
PRICE_MINOR = 1


@dataclass(frozen=True)
class Job:
    scenario: str
    url: str
    wallets: list[uuid.UUID]
    batch: int
    seconds: float


def libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def prepare(url: str, wallet_count: int) -> list[uuid.UUID]:
    """Recreate the bench database, migrate it, fund the wallets, create the raw tables."""
    name = make_url(url).database
    with psycopg.connect(libpq(url, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    wallets = []
    with sessions.begin() as session:
        for i in range(wallet_count):
            wallet = open_wallet(session, f"bench-{i}", "ZAR")
            session.flush()
            adjust(
                session,
                wallet_id=wallet.id,
                direction=Direction.CREDIT,
                amount_minor=FUNDING_MINOR,
                reason="bench funding",
                actor="bench",
            )
            wallets.append(wallet.id)
        system_account_id(session, SystemAccount.REVENUE, "ZAR")
    engine.dispose()
    with psycopg.connect(libpq(url)) as connection:
        connection.execute("CREATE TABLE raw_keys (key text PRIMARY KEY)")
        connection.execute(
            "CREATE TABLE raw_journal (id bigserial PRIMARY KEY, account uuid NOT NULL,"
            " amount_minor bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        connection.execute(
            "CREATE TABLE raw_balances (id uuid PRIMARY KEY, balance_minor bigint NOT NULL)"
        )
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO raw_balances VALUES (%s, %s)", [(w, FUNDING_MINOR) for w in wallets]
            )
        connection.execute(
            "CREATE TABLE bench_wallets AS"
            " SELECT row_number() OVER (ORDER BY id) AS n, id FROM raw_balances"
        )
        connection.execute("CREATE UNIQUE INDEX ON bench_wallets (n)")
    with psycopg.connect(libpq(url), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    return wallets


PGBENCH_RAW = """\\set w random(1, {wallets})
BEGIN;
INSERT INTO raw_keys VALUES (gen_random_uuid()::text);
INSERT INTO raw_journal (account, amount_minor) SELECT id, 1 FROM bench_wallets WHERE n = :w;
UPDATE raw_balances SET balance_minor = balance_minor - 1
 WHERE id = (SELECT id FROM bench_wallets WHERE n = :w) AND balance_minor >= 1;
END;
"""
PGBENCH_LEDGER = """\\set w random(1, {wallets})
BEGIN;
INSERT INTO transfers (idempotency_key, kind, category, debit_account_id, credit_account_id,
                       amount_minor, currency)
SELECT gen_random_uuid()::text, 'posted', 'order_payment', id, '{revenue}', 1, 'ZAR'
  FROM bench_wallets WHERE n = :w
ON CONFLICT (idempotency_key) DO NOTHING RETURNING id;
END;
"""


def pgbench(url: str, script: str, clients: int, seconds: float) -> float:
    """Transactions per second of pgbench running `script` (one transfer per transaction)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as file:
        file.write(script)
        file.flush()
        done = subprocess.run(
            [
                "pgbench",
                "-n",
                "-M",
                "prepared",
                "-c",
                str(clients),
                "-j",
                "2",
                "-T",
                str(int(seconds)),
                "-f",
                file.name,
                libpq(url),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    for line in done.stdout.splitlines():
        if line.startswith("tps = "):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no rate:\n{done.stdout}\n{done.stderr}")


def raw_client(job: Job, pick: Callable[[], uuid.UUID], ready: Barrier) -> int:
    done = 0
    with psycopg.connect(libpq(job.url)) as connection:
        ready.wait()
        stop_at = time.monotonic() + job.seconds
        while time.monotonic() < stop_at:
            wallet = pick()
            with connection.transaction():
                connection.execute("INSERT INTO raw_keys VALUES (%s)", (str(uuid.uuid4()),))
                connection.execute(
                    "INSERT INTO raw_journal (account, amount_minor) VALUES (%s, %s)",
                    (wallet, PRICE_MINOR),
                )
                connection.execute(
                    "UPDATE raw_balances SET balance_minor = balance_minor - %s"
                    " WHERE id = %s AND balance_minor >= %s",
                    (PRICE_MINOR, wallet, PRICE_MINOR),
                )
            done += 1
    return done


def ledger_client(job: Job, pick: Callable[[], uuid.UUID], ready: Barrier) -> int:
    engine = make_engine(job.url, pool_size=1)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
    done = 0
    ready.wait()
    stop_at = time.monotonic() + job.seconds
    while time.monotonic() < stop_at:
        with sessions.begin() as session:
            transfer_many(
                session,
                [
                    TransferRequest(
                        idempotency_key=str(uuid.uuid4()),
                        debit_account_id=pick(),
                        credit_account_id=revenue,
                        amount_minor=PRICE_MINOR,
                        currency="ZAR",
                        category=Category.ORDER_PAYMENT,
                    )
                    for _ in range(job.batch)
                ],
            )
        done += job.batch
    engine.dispose()
    return done


def run_client(job: Job, ready: Barrier, results: Queue) -> None:  # type: ignore[type-arg]
    rng = random.Random()
    pick = (lambda: job.wallets[0]) if "hot" in job.scenario else (lambda: rng.choice(job.wallets))
    client = raw_client if job.scenario.startswith("raw") else ledger_client
    results.put(client(job, pick, ready))


def measure(
    scenario: str, url: str, wallets: list[uuid.UUID], clients: int, seconds: float, batch: int = 1
) -> float:
    """Transfers per second of `clients` processes that start together once all have connected."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(clients), context.Queue()
    job = Job(scenario, url, wallets, batch, seconds)
    processes = [
        context.Process(target=run_client, args=(job, ready, results)) for _ in range(clients)
    ]
    for process in processes:
        process.start()
    counts: list[int] = [results.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--wallets", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16, help="transfers per hot-wallet batch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians")
    parser.add_argument("--database-url", default=BENCH_DATABASE_URL)
    args = parser.parse_args()

    wallets = prepare(args.database_url, args.wallets)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()},"
        f" {args.clients} clients, {args.seconds:g} s per scenario and round, {args.rounds}"
        f" rounds, {args.wallets} wallets"
    )
    scenarios = [
        ("raw spread", 1),
        ("ledger spread", 1),
        ("raw hot", 1),
        ("ledger hot", 1),
        (f"ledger hot batched x{args.batch}", args.batch),
    ]
    pgbench_scripts = {}
    if shutil.which("pgbench"):
        with psycopg.connect(libpq(args.database_url)) as connection:
            found = connection.execute("SELECT id FROM accounts WHERE code = 'revenue'").fetchone()
        assert found is not None
        pgbench_scripts = {
            "pgbench raw SQL": PGBENCH_RAW.format(wallets=args.wallets),
            "pgbench ledger SQL": PGBENCH_LEDGER.format(wallets=args.wallets, revenue=found[0]),
        }
    # Rounds interleave the scenarios, so a burst of load from elsewhere on a shared machine
    # hits all of them alike; each figure is the median of its rounds.
    samples: dict[str, list[float]] = {name: [] for name, _ in scenarios}
    samples.update({name: [] for name in pgbench_scripts})
    for _ in range(args.rounds):
        for scenario, batch in scenarios:
            samples[scenario].append(
                measure(scenario, args.database_url, wallets, args.clients, args.seconds, batch)
            )
        for name, script in pgbench_scripts.items():
            samples[name].append(pgbench(args.database_url, script, args.clients, args.seconds))
    rates = {name: statistics.median(values) for name, values in samples.items()}
    for name, rate in rates.items():
        spread_of = ", ".join(f"{v:.0f}" for v in samples[name])
        print(f"{name:28s} {rate:9.0f} transfers/s  (rounds: {spread_of})")
    spread = rates["ledger spread"]
    print(f"ratio ledger/raw, spread wallets:      {spread / rates['raw spread']:.2f}")
    print(f"ratio ledger/raw, one hot wallet:      {rates['ledger hot'] / rates['raw hot']:.2f}")
    print(f"ratio hot/spread, ledger:              {rates['ledger hot'] / spread:.2f}")
    batched = rates[f"ledger hot batched x{args.batch}"]
    print(f"ratio hot batched/spread, ledger:      {batched / spread:.2f}")
    if pgbench_scripts:
        print(
            "ratio ledger/raw, database alone:      "
            f"{rates['pgbench ledger SQL'] / rates['pgbench raw SQL']:.2f}"
        )
    else:
        print("pgbench not installed: database-only figures skipped")


if __name__ == "__main__":
    main()
