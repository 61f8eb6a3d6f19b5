"""Recompute the ledger from its transfers and report every invariant breach."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# Each account's four totals recomputed from the transfers, beside the cached ones (the account
# row plus its slot rows). A resolution releases its whole hold and posts its own amount.
_TOTALS_MISMATCH = text("""
WITH legs AS (
    SELECT t.debit_account_id AS account_id,
           CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END AS dp,
           0::bigint AS cp,
           CASE WHEN t.kind = 'pending' THEN t.amount_minor
                WHEN t.kind IN ('post_pending', 'void_pending') THEN -p.amount_minor
                ELSE 0 END AS dpe,
           0::bigint AS cpe
    FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id
    UNION ALL
    SELECT t.credit_account_id,
           0,
           CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END,
           0,
           CASE WHEN t.kind = 'pending' THEN t.amount_minor
                WHEN t.kind IN ('post_pending', 'void_pending') THEN -p.amount_minor
                ELSE 0 END
    FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id
),
computed AS (
    SELECT account_id, sum(dp) AS dp, sum(cp) AS cp, sum(dpe) AS dpe, sum(cpe) AS cpe
    FROM legs GROUP BY account_id
),
slots AS (
    SELECT account_id, sum(debits_posted) AS dp, sum(credits_posted) AS cp,
           sum(debits_pending) AS dpe, sum(credits_pending) AS cpe
    FROM account_slots GROUP BY account_id
)
SELECT a.id,
       a.debits_posted + coalesce(s.dp, 0), a.credits_posted + coalesce(s.cp, 0),
       a.debits_pending + coalesce(s.dpe, 0), a.credits_pending + coalesce(s.cpe, 0),
       coalesce(c.dp, 0), coalesce(c.cp, 0), coalesce(c.dpe, 0), coalesce(c.cpe, 0)
FROM accounts a
LEFT JOIN slots s ON s.account_id = a.id
LEFT JOIN computed c ON c.account_id = a.id
WHERE (a.debits_posted + coalesce(s.dp, 0), a.credits_posted + coalesce(s.cp, 0),
       a.debits_pending + coalesce(s.dpe, 0), a.credits_pending + coalesce(s.cpe, 0))
      IS DISTINCT FROM
      (coalesce(c.dp, 0), coalesce(c.cp, 0), coalesce(c.dpe, 0), coalesce(c.cpe, 0))
ORDER BY a.id
""")

_ZERO_SUM = text("""
SELECT a.currency,
       sum(a.debits_posted + coalesce(s.dp, 0) - a.credits_posted - coalesce(s.cp, 0)),
       sum(a.debits_pending + coalesce(s.dpe, 0) - a.credits_pending - coalesce(s.cpe, 0))
FROM accounts a
LEFT JOIN (
    SELECT account_id, sum(debits_posted) AS dp, sum(credits_posted) AS cp,
           sum(debits_pending) AS dpe, sum(credits_pending) AS cpe
    FROM account_slots GROUP BY account_id
) s ON s.account_id = a.id
GROUP BY a.currency
HAVING sum(a.debits_posted + coalesce(s.dp, 0) - a.credits_posted - coalesce(s.cp, 0)) <> 0
    OR sum(a.debits_pending + coalesce(s.dpe, 0) - a.credits_pending - coalesce(s.cpe, 0)) <> 0
ORDER BY a.currency
""")

# Forced debits (refunds of top-ups, consumed usage) may take a wallet below its limit; every
# other spend together must still fit within what was credited plus the overdraft limit.
_OVERSPENT = text("""
SELECT a.id, a.credits_posted - a.debits_posted - a.debits_pending, a.overdraft_limit_minor,
       coalesce(f.forced_minor, 0)
FROM accounts a
LEFT JOIN (
    SELECT debit_account_id, sum(amount_minor) AS forced_minor
    FROM transfers WHERE forced GROUP BY debit_account_id
) f ON f.debit_account_id = a.id
WHERE a.kind = 'wallet'
  AND a.credits_posted - (a.debits_posted - coalesce(f.forced_minor, 0)) - a.debits_pending
      < -a.overdraft_limit_minor
ORDER BY a.id
""")

_BAD_RESOLUTIONS = text("""
SELECT t.id, t.pending_id
FROM transfers t JOIN transfers p ON p.id = t.pending_id
WHERE p.kind <> 'pending'
   OR t.amount_minor > p.amount_minor
   OR (t.kind = 'void_pending' AND t.amount_minor <> p.amount_minor)
   OR (t.debit_account_id, t.credit_account_id, t.currency)
      <> (p.debit_account_id, p.credit_account_id, p.currency)
ORDER BY t.id
""")


@dataclass(frozen=True, slots=True)
class Breach:
    """One broken invariant: which check, on what, and what was found."""

    check: str
    subject: str
    detail: str


def verify(session: Session) -> list[Breach]:
    """Every invariant breach in the ledger; an empty list means the ledger is sound.

    Reads everything in one repeatable-read snapshot, so concurrent transfers cannot make a
    sound ledger look broken. The caller's transaction must not have run a query yet.
    """
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    breaches: list[Breach] = []
    for row in session.execute(_TOTALS_MISMATCH):
        cached, computed = row[1:5], row[5:9]
        breaches.append(
            Breach(
                "cached_totals",
                f"account {row[0]}",
                "cached (debits_posted, credits_posted, debits_pending, credits_pending) = "
                f"{tuple(cached)}, but its transfers sum to {tuple(computed)}",
            )
        )
    for currency, posted, pending in session.execute(_ZERO_SUM):
        breaches.append(
            Breach(
                "zero_sum",
                f"currency {currency}",
                f"debits - credits over all accounts: posted {posted}, pending {pending}",
            )
        )
    for wallet_id, available, limit, forced in session.execute(_OVERSPENT):
        breaches.append(
            Breach(
                "spending_within_funds",
                f"wallet {wallet_id}",
                f"available {available} with overdraft limit {limit} and forced debits {forced}:"
                " spending exceeded the funds",
            )
        )
    for transfer_id, pending_id in session.execute(_BAD_RESOLUTIONS):
        breaches.append(
            Breach(
                "resolution_matches_pending",
                f"transfer {transfer_id}",
                f"does not match pending transfer {pending_id}",
            )
        )
    return breaches
