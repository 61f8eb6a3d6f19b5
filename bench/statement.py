"""A wallet's statement and balance-at-a-time, measured on a month of 100,000 entries.

Two wallets get the same month of ENTRIES entries; one of them also has HISTORY entries
before it. If a statement costs what its range holds, not what the wallet has ever done,
both take the same time. Every entry is a real transfer (the trigger writes the entry); the
entries' times are then spread over the months they stand for, in the benchmark database
only, since the trigger stamps each with the moment it ran.

    python bench/statement.py [--entries 100000] [--history 200000] [--repeat 5]

Prints the time of each statement (JSON and CSV) and of balance-at reads; docs/benchmarks.md
records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from ledger import statement
from ledger.account import open_wallet, system_account_id
from ledger.db import make_engine, make_session_factory
from ledger.migrate import upgrade
from ledger.models import Category, SystemAccount
from ledger.transfer import TransferRequest, transfer_many

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://localhost/walletpipe_bench_statement"
)
BATCH = 1000
MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)


def libpq(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(False)


def fill(sessions, wallet_id: uuid.UUID, count: int, tag: str) -> None:
    """`count` transfers on the wallet: a credit, then alternating small debits and credits."""
    with sessions.begin() as session:
        source = system_account_id(session, SystemAccount.ADJUSTMENTS, "ZAR")
        revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
    for start in range(0, count, BATCH):
        requests = []
        for i in range(start, min(count, start + BATCH)):
            spend = i % 2 == 1
            requests.append(
                TransferRequest(
                    f"bench:{tag}:{i}",
                    wallet_id if spend else source,
                    revenue if spend else wallet_id,
                    random.randint(1, 900) if spend else 1000,
                    "ZAR",
                    Category.ORDER_PAYMENT if spend else Category.ADJUSTMENT,
                )
            )
        with sessions.begin() as session:
            transfer_many(session, requests)


def spread(engine, wallet_id: uuid.UUID, first: datetime, last: datetime, skip: int) -> None:
    """Give the wallet's entries after the first `skip` times evenly spread over [first, last)."""
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL session_replication_role = replica"))
        connection.execute(
            text(
                """
                WITH ranked AS (
                    SELECT id, row_number() OVER (ORDER BY id) - 1 AS n,
                           count(*) OVER () AS total
                    FROM wallet_entries WHERE wallet_id = :wallet_id
                    ORDER BY id OFFSET :skip
                )
                UPDATE wallet_entries e
                SET at = :first + (:last - :first) * ((r.n - :skip)::float8 / (r.total - :skip))
                FROM ranked r WHERE e.id = r.id
                """
            ),
            {"wallet_id": wallet_id, "first": first, "last": last, "skip": skip},
        )
    # The trigger writes each entry once; the spreading above rewrote them all. Vacuum, so the
    # table is laid out as one written once would be, and the planner knows it.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (FULL, ANALYZE) wallet_entries"))


def timed(action, repeat: int) -> tuple[float, object]:
    runs, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    name = make_url(BENCH_DATABASE_URL).database
    assert name
    with psycopg.connect(libpq(BENCH_DATABASE_URL, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(BENCH_DATABASE_URL)
    try:
        upgrade(engine)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            fresh = open_wallet(session, "bench-month-only", "ZAR").id
            session.flush()
            aged = open_wallet(session, "bench-with-history", "ZAR").id
            session.flush()
        started = time.perf_counter()
        fill(sessions, fresh, args.entries, "fresh")
        fill(sessions, aged, args.history + args.entries, "aged")
        written = args.history + 2 * args.entries
        fill_s = time.perf_counter() - started
        spread(engine, fresh, MONTH_START, MONTH_END, 0)
        if args.history:
            spread(engine, aged, MONTH_START - timedelta(days=365), MONTH_START, 0)
        spread(engine, aged, MONTH_START, MONTH_END, args.history)

        print(f"{platform.node()}: {os.cpu_count()} cores, PostgreSQL via {BENCH_DATABASE_URL}")
        print(f"wrote {written} transfers in {fill_s:.1f} s ({written / fill_s:.0f}/s)")
        for label, wallet_id in (("month only", fresh), (f"+{args.history} before", aged)):

            def as_json(wallet_id=wallet_id) -> int:
                with sessions() as session:
                    found = statement.statement(session, wallet_id, MONTH_START, MONTH_END)
                return len(json.dumps(statement.as_json(found)))

            def as_csv(wallet_id=wallet_id) -> int:
                with sessions() as session:
                    found = statement.statement(session, wallet_id, MONTH_START, MONTH_END)
                return sum(len(line) for line in statement.as_csv(found))

            def rows_only(wallet_id=wallet_id) -> int:
                with sessions() as session:
                    return len(
                        statement.statement(session, wallet_id, MONTH_START, MONTH_END).entries
                    )

            moments = [
                MONTH_START
                - timedelta(days=300)
                + timedelta(seconds=random.randint(0, 330 * 86400))
                for _ in range(200)
            ]

            def balances(wallet_id=wallet_id, moments=moments) -> int:
                with sessions() as session:
                    for moment in moments:
                        statement.balance_at(session, wallet_id, moment)
                return len(moments)

            rows_s, count = timed(rows_only, args.repeat)
            json_s, json_bytes = timed(as_json, args.repeat)
            csv_s, csv_bytes = timed(as_csv, args.repeat)
            balance_s, _ = timed(balances, args.repeat)
            print(
                f"{label:>18}: {count} entries; read {rows_s * 1000:.0f} ms,"
                f" JSON {json_s * 1000:.0f} ms ({json_bytes / 1e6:.1f} MB),"
                f" CSV {csv_s * 1000:.0f} ms ({csv_bytes / 1e6:.1f} MB);"
                f" balance at a time {balance_s / len(moments) * 1000:.2f} ms each"
            )
        with engine.connect() as connection:
            plan = connection.execute(
                text(
                    "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) SELECT * FROM wallet_entries"
                    " WHERE wallet_id = :w AND at >= :s AND at < :e ORDER BY at, id"
                ),
                {"w": aged, "s": MONTH_START, "e": MONTH_END},
            ).scalars()
            print("\n".join(f"    {line}" for line in plan))
    finally:
        engine.dispose()
        with psycopg.connect(libpq(BENCH_DATABASE_URL, "postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
