"""Is a statement-level transfer trigger worth it for a hot wallet's batch?

The ledger's trigger is row-level: a batch of K credits to one wallet reads both accounts and
updates the wallet row K times. A statement-level trigger with a transition table could update
it once with the batch's sum. This measures the difference on the database alone, with pgbench
(by default two clients, `-M prepared`, as two workers' batches racing for the wallet), in one run:

- **row trigger**: K transfers to one hot wallet in one multi-row INSERT, as the workers' set
  path sends them, through today's trigger;
- **row trigger, spread**: the same to K different wallets (the aim: a hot wallet's batch is
  not slower than a spread one);
- **statement form**: the same INSERT with the row trigger skipped (session_replication_role
  = replica, which fires no trigger), the wallet entries (`wallet_entries`, one per transfer
  with its running balance) written by one INSERT ... SELECT, and the one UPDATE of the wallet a
  statement-level trigger would make: about the work that form would do, without its checks.

    python bench/hot_trigger.py [--batch 32] [--seconds 10] [--rounds 3]

Prints transfers/s of each and their ratio; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import os
import statistics

from ledger_apply import libpq, pgbench, prepare
from sqlalchemy.engine import make_url

from ledger.account import system_account_id
from ledger.db import make_engine, make_session_factory
from ledger.models import SystemAccount

BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql://localhost/walletpipe_bench_trigger"
)
ROW_TRIGGER = """BEGIN;
INSERT INTO transfers (idempotency_key, kind, category, debit_account_id, credit_account_id,
                       amount_minor, currency)
SELECT gen_random_uuid()::text, 'posted', 'topup', '{clearing}', '{wallet}', 1, 'ZAR'
  FROM generate_series(1, {batch});
END;
"""
ROW_TRIGGER_SPREAD = """\\set first random(0, {wallets} - {batch})
BEGIN;
INSERT INTO transfers (idempotency_key, kind, category, debit_account_id, credit_account_id,
                       amount_minor, currency)
SELECT gen_random_uuid()::text, 'posted', 'topup', '{clearing}', id, 1, 'ZAR'
  FROM bench_wallets WHERE n > :first AND n <= :first + {batch} ORDER BY id;
END;
"""
STATEMENT_FORM = """BEGIN;
SET LOCAL session_replication_role = replica;
WITH t AS (
    INSERT INTO transfers (idempotency_key, kind, category, debit_account_id, credit_account_id,
                           amount_minor, currency)
    SELECT gen_random_uuid()::text, 'posted', 'topup', '{clearing}', '{wallet}', 1, 'ZAR'
      FROM generate_series(1, {batch})
    RETURNING id, amount_minor
), a AS (SELECT credits_posted - debits_posted AS balance FROM accounts WHERE id = '{wallet}')
INSERT INTO wallet_entries (wallet_id, transfer_id, balance_delta_minor, held_delta_minor,
                            paid_delta_minor, granted_delta_minor, balance_after_minor,
                            held_after_minor, paid_after_minor)
SELECT '{wallet}', t.id, t.amount_minor, 0, t.amount_minor, 0,
       a.balance + sum(t.amount_minor) OVER (ORDER BY t.id), 0,
       a.balance + sum(t.amount_minor) OVER (ORDER BY t.id)
  FROM t, a;
UPDATE accounts SET credits_posted = credits_posted + {batch}, paid_minor = paid_minor + {batch}
 WHERE id = '{wallet}';
END;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="transfers per statement")
    parser.add_argument("--seconds", type=float, default=10.0, help="each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=2, help="pgbench clients")
    args = parser.parse_args()
    wallet_count = 10 * args.batch
    wallet = prepare(BENCH_DATABASE_URL, wallet_count)[0]
    engine = make_engine(BENCH_DATABASE_URL)
    with make_session_factory(engine)() as session:
        clearing = system_account_id(session, SystemAccount.clearing("stripe"), "ZAR")
    engine.dispose()
    scripts = {
        "row trigger": ROW_TRIGGER.format(clearing=clearing, wallet=wallet, batch=args.batch),
        "row trigger, spread": ROW_TRIGGER_SPREAD.format(
            clearing=clearing, wallets=wallet_count, batch=args.batch
        ),
        "statement form": STATEMENT_FORM.format(clearing=clearing, wallet=wallet, batch=args.batch),
    }
    rates: dict[str, list[float]] = {name: [] for name in scripts}
    for _ in range(args.rounds):
        for name, script in scripts.items():
            rates[name].append(
                pgbench(BENCH_DATABASE_URL, script, args.clients, args.seconds) * args.batch
            )
    print(
        f"database {make_url(libpq(BENCH_DATABASE_URL)).database}, {args.clients} clients,"
        f" batches of {args.batch} transfers, {args.rounds} rounds of {args.seconds:g} s"
    )
    for name, found in rates.items():
        rounds = ", ".join(f"{rate:.0f}" for rate in found)
        print(f"{name:19s} {statistics.median(found):8.0f} transfers/s  rounds {rounds}")
    ratio = statistics.median(rates["statement form"]) / statistics.median(rates["row trigger"])
    print(f"statement form / row trigger: {ratio:.2f}")
    spread = statistics.median(rates["row trigger, spread"])
    print(f"row trigger, hot / spread: {statistics.median(rates['row trigger']) / spread:.2f}")


if __name__ == "__main__":
    main()
