"""Recompute the ledger from its transfers and report every invariant breach."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger import totals

# A wallet's cached totals beside the ones its transfers add up to.
_TOTALS_MISMATCH = text(f"""
WITH computed AS ({totals.ALL_ACCOUNTS})
SELECT a.id, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
       coalesce(c.dp, 0), coalesce(c.cp, 0), coalesce(c.dpe, 0), coalesce(c.cpe, 0)
FROM accounts a LEFT JOIN computed c ON c.account_id = a.id
WHERE a.kind = 'wallet'
  AND (a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending)
      IS DISTINCT FROM
      (coalesce(c.dp, 0), coalesce(c.cp, 0), coalesce(c.dpe, 0), coalesce(c.cpe, 0))
ORDER BY a.id
""")

# Per currency, debits minus credits over every account is zero: wallets by their cached totals,
# system accounts by their derived ones. A wallet total written by hand shows here too.
_ZERO_SUM = text(f"""
WITH computed AS ({totals.ALL_ACCOUNTS}),
balances AS (
    SELECT a.currency,
           CASE WHEN a.kind = 'wallet' THEN a.debits_posted - a.credits_posted
                ELSE coalesce(c.dp, 0) - coalesce(c.cp, 0) END AS posted,
           CASE WHEN a.kind = 'wallet' THEN a.debits_pending - a.credits_pending
                ELSE coalesce(c.dpe, 0) - coalesce(c.cpe, 0) END AS pending
    FROM accounts a LEFT JOIN computed c ON c.account_id = a.id
)
SELECT currency, sum(posted), sum(pending)
FROM balances
GROUP BY currency
HAVING sum(posted) <> 0 OR sum(pending) <> 0
ORDER BY currency
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
   OR (t.kind = 'post_pending' AND t.created_at >= p.expires_at)
   OR (t.kind = 'void_pending' AND t.amount_minor <> p.amount_minor)
   OR (t.debit_account_id, t.credit_account_id, t.currency)
      <> (p.debit_account_id, p.credit_account_id, p.currency)
ORDER BY t.id
""")


# Transfers the trigger would have refused: accounts of another currency, or a forced transfer
# (money that already left) crediting a wallet.
_BAD_TRANSFERS = text("""
SELECT t.id,
       CASE WHEN d.currency <> t.currency OR c.currency <> t.currency
            THEN 'its accounts hold ' || d.currency || ' and ' || c.currency
                 || ', the transfer is in ' || t.currency
            ELSE 'forced, yet it credits a wallet' END
FROM transfers t
JOIN accounts d ON d.id = t.debit_account_id
JOIN accounts c ON c.id = t.credit_account_id
WHERE d.currency <> t.currency OR c.currency <> t.currency OR (t.forced AND c.kind = 'wallet')
ORDER BY t.id
""")


# The split of each wallet's balance: paid plus granted is the balance (also a CHECK), granted
# is what its grants have left, and each grant's amount is what it has left, what spends drew
# on it and what expired.
_SPLIT = text("""
SELECT a.id, a.credits_posted - a.debits_posted, a.paid_minor, a.granted_minor,
       coalesce(g.remaining, 0)
FROM accounts a
LEFT JOIN (SELECT wallet_id, sum(remaining_minor) AS remaining FROM credit_grants
           GROUP BY wallet_id) g ON g.wallet_id = a.id
WHERE a.kind = 'wallet'
  AND (a.paid_minor + a.granted_minor <> a.credits_posted - a.debits_posted
       OR a.granted_minor <> coalesce(g.remaining, 0))
ORDER BY a.id
""")

_GRANTS = text("""
SELECT g.id, g.amount_minor, g.remaining_minor, coalesce(u.used, 0), g.expired_minor,
       coalesce(x.amount_minor, 0), f.amount_minor
FROM credit_grants g
LEFT JOIN (SELECT grant_id, sum(amount_minor) AS used FROM credit_grant_uses
           GROUP BY grant_id) u ON u.grant_id = g.id
LEFT JOIN transfers x ON x.grant_id = g.id AND x.category = 'grant_expiry'
LEFT JOIN transfers f ON f.grant_id = g.id AND f.category = 'grant'
WHERE g.remaining_minor + coalesce(u.used, 0) + g.expired_minor
      <> coalesce(f.amount_minor, 0)
   OR g.expired_minor <> coalesce(x.amount_minor, 0)
   OR (f.amount_minor IS NOT NULL AND f.amount_minor <> g.amount_minor)
ORDER BY g.id
""")

# Each wallet's last entry carries its current balance and holds.
_ENTRIES = text("""
SELECT a.id, a.credits_posted - a.debits_posted, a.debits_pending, a.paid_minor,
       e.balance_after_minor, e.held_after_minor, e.paid_after_minor
FROM accounts a
LEFT JOIN LATERAL (
    SELECT balance_after_minor, held_after_minor, paid_after_minor FROM wallet_entries
    WHERE wallet_id = a.id ORDER BY id DESC LIMIT 1
) e ON true
WHERE a.kind = 'wallet'
  AND (coalesce(e.balance_after_minor, 0), coalesce(e.held_after_minor, 0),
       coalesce(e.paid_after_minor, 0))
      <> (a.credits_posted - a.debits_posted, a.debits_pending, a.paid_minor)
ORDER BY a.id
""")


@dataclass(frozen=True, slots=True)
class Breach:
    """One broken invariant: which check, on what, and what was found."""

    check: str
    subject: str
    detail: str


def verify(session: Session) -> list[Breach]:
    """The invariant breaches found in the ledger; an empty list means none was found.

    Checked: each wallet's cached totals against its transfers; zero-sum per currency; that
    non-forced spending fits what was credited plus the overdraft limit (in total, not in time
    order); each transfer's currency and forced flag; each hold's resolution; the paid and
    granted split of each balance and each grant's use; each wallet's last entry.

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
                f"{tuple(cached)}, but its transfers add up to {tuple(computed)}",
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
    for transfer_id, detail in session.execute(_BAD_TRANSFERS):
        breaches.append(Breach("transfer_allowed", f"transfer {transfer_id}", detail))
    for transfer_id, pending_id in session.execute(_BAD_RESOLUTIONS):
        breaches.append(
            Breach(
                "resolution_matches_pending",
                f"transfer {transfer_id}",
                f"does not match pending transfer {pending_id}, or posts it after its expiry",
            )
        )
    for wallet_id, balance, paid, granted, remaining in session.execute(_SPLIT):
        breaches.append(
            Breach(
                "paid_and_granted",
                f"wallet {wallet_id}",
                f"balance {balance} but paid {paid} + granted {granted}, and its grants have"
                f" {remaining} left",
            )
        )
    for grant_id, amount, remaining, used, expired, expiry, funded in session.execute(_GRANTS):
        breaches.append(
            Breach(
                "grant_accounted",
                f"grant {grant_id}",
                f"amount {amount} (funded {funded}) but remaining {remaining} + used {used}"
                f" + expired {expired} (expiry transfer {expiry})",
            )
        )
    for row in session.execute(_ENTRIES):
        breaches.append(
            Breach(
                "entries_match_balance",
                f"wallet {row[0]}",
                f"(balance, held, paid) = {tuple(row[1:4])}, but its last entry says"
                f" {tuple(row[4:7])}",
            )
        )
    return breaches
