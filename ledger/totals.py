"""Account totals recomputed from the transfers: the truth the cached totals must equal."""

from __future__ import annotations

# One row per leg of every transfer: the account and what the leg adds to its debits_posted
# (dp), credits_posted (cp), debits_pending (dpe) and credits_pending (cpe). A resolution
# releases its whole hold and posts its own amount. `{where}` narrows the transfers read.
LEGS = """
    SELECT t.debit_account_id AS account_id,
           CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END AS dp,
           0::bigint AS cp,
           CASE WHEN t.kind = 'pending' THEN t.amount_minor
                WHEN t.kind IN ('post_pending', 'void_pending') THEN -p.amount_minor
                ELSE 0 END AS dpe,
           0::bigint AS cpe
    FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id
    WHERE {debit_where}
    UNION ALL
    SELECT t.credit_account_id,
           0,
           CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END,
           0,
           CASE WHEN t.kind = 'pending' THEN t.amount_minor
                WHEN t.kind IN ('post_pending', 'void_pending') THEN -p.amount_minor
                ELSE 0 END
    FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id
    WHERE {credit_where}
"""

# Totals of every account that has transfers.
ALL_ACCOUNTS = f"""
    SELECT account_id, sum(dp) AS dp, sum(cp) AS cp, sum(dpe) AS dpe, sum(cpe) AS cpe
    FROM ({LEGS.format(debit_where="true", credit_where="true")}) legs
    GROUP BY account_id
"""

# Totals of the account :account_id (reads its transfers through their account indexes).
ONE_ACCOUNT = f"""
    SELECT coalesce(sum(dp), 0), coalesce(sum(cp), 0), coalesce(sum(dpe), 0),
           coalesce(sum(cpe), 0)
    FROM ({
    LEGS.format(
        debit_where="t.debit_account_id = :account_id",
        credit_where="t.credit_account_id = :account_id",
    )
}) legs
"""
