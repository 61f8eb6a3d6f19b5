"""Paid and granted credits, a wallet's entries with the balance after each, balance monitors
and auto top-up rules.

- A wallet's balance is split into `paid_minor` and `granted_minor`; a CHECK keeps their sum
  equal to the balance, and only the transfer trigger writes them.
- `credit_grants` holds each grant's amount, priority, expiry and unused remainder; only the
  transfer trigger changes the remainder (funding, spending, expiry), and `credit_grant_uses`
  records which grants each spend drew on.
- `wallet_entries` has one row per wallet leg of every transfer, written by the trigger in the
  statement that moves the money: the balance, held and paid amounts after it. Statements and
  balances at a time read a range of it by index, never the wallet's whole history.

Revision ID: 0012
Revises: 0011
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CATEGORIES_BEFORE = (
    "topup",
    "topup_reversal",
    "order_payment",
    "order_refund",
    "usage",
    "hold",
    "transfer",
    "adjustment",
)
CATEGORIES = (*CATEGORIES_BEFORE, "grant", "grant_expiry")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# The transfer trigger, as 0006 left it, plus the split of every wallet's balance into paid and
# granted credit and one wallet_entries row per wallet leg.
#
# Debit side of a wallet:
# - a spend (anything but the two cases below) draws on the wallet's usable grants first
#   (lowest priority number, then earliest expiry, then oldest), then on paid credit; a forced
#   spend (consumed usage) that exceeds both leaves the rest as negative paid credit, i.e. debt;
# - a gateway refund (topup_reversal) takes paid credit only, even into debt: granted credit
#   was never the customer's money to give back;
# - a grant's expiry (grant_expiry) takes exactly that grant's unused remainder, once.
# The spending guard does not count granted credit whose expiry has passed but whose expiry
# transfer is still to come: no spend can draw on it, even if the scheduler is late.
# Credit side of a wallet: a grant funds its credit_grants row; anything else is paid credit.
APPLY_TRANSFER = """
CREATE OR REPLACE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p transfers%ROWTYPE;
    g credit_grants%ROWTYPE;
    v_debit_kind text;
    v_debit_currency text;
    v_credit_kind text;
    v_credit_currency text;
    v_posted bigint;
    v_pending bigint;
    v_balance bigint;
    v_held bigint;
    v_paid bigint;
    v_granted bigint;
    v_limit bigint;
    v_stale bigint;
    v_left bigint;
    v_take bigint;
    v_from_grants bigint := 0;
    v_guarded boolean;
    v_watched boolean;
BEGIN
    -- Accounts are never deleted and never change kind or currency, so this unlocked read
    -- cannot be raced; a foreign key would instead share-lock both rows on every transfer.
    SELECT d.kind, d.currency, c.kind, c.currency
      INTO v_debit_kind, v_debit_currency, v_credit_kind, v_credit_currency
      FROM accounts d, accounts c
     WHERE d.id = NEW.debit_account_id AND c.id = NEW.credit_account_id;
    IF NOT FOUND THEN
        PERFORM ledger_fail('ck_transfers_accounts_exist', format('no account with id %s',
            CASE WHEN EXISTS (SELECT FROM accounts WHERE id = NEW.debit_account_id)
                 THEN NEW.credit_account_id ELSE NEW.debit_account_id END));
    END IF;
    IF v_debit_currency <> NEW.currency OR v_credit_currency <> NEW.currency THEN
        PERFORM ledger_fail('ck_transfers_one_currency',
            format('the transfer is in %s but its accounts hold %s and %s',
                   NEW.currency, v_debit_currency, v_credit_currency));
    END IF;

    IF NEW.forced AND v_credit_kind <> 'system' THEN
        PERFORM ledger_fail('ck_transfers_forced_into_system',
            'a forced transfer records money that left: it may only credit a system account');
    END IF;
    IF NEW.category = 'grant' AND v_credit_kind <> 'wallet' THEN
        PERFORM ledger_fail('ck_transfers_grant_into_wallet', 'a grant credits a wallet');
    END IF;
    IF NEW.category = 'grant_expiry' AND (v_debit_kind <> 'wallet' OR v_credit_kind <> 'system')
    THEN
        PERFORM ledger_fail('ck_transfers_grant_expiry_accounts',
            'a grant''s expiry moves credit from its wallet to a system account');
    END IF;

    -- What the transfer adds to the debit side's debits and the credit side's credits.
    IF NEW.kind = 'posted' THEN
        v_posted := NEW.amount_minor;
        v_pending := 0;
    ELSIF NEW.kind = 'pending' THEN
        IF NEW.expires_at <= statement_timestamp() THEN
            PERFORM ledger_fail('ck_transfers_expiry_in_future',
                                'a pending transfer must expire in the future');
        END IF;
        v_posted := 0;
        v_pending := NEW.amount_minor;
    ELSE
        SELECT * INTO p FROM transfers WHERE id = NEW.pending_id;
        IF p.kind IS DISTINCT FROM 'pending' THEN
            PERFORM ledger_fail('ck_transfers_resolves_a_pending',
                                format('transfer %s is not a pending transfer', NEW.pending_id));
        END IF;
        IF (p.debit_account_id, p.credit_account_id, p.currency)
           IS DISTINCT FROM (NEW.debit_account_id, NEW.credit_account_id, NEW.currency)
           OR (NEW.kind = 'void_pending' AND NEW.amount_minor <> p.amount_minor) THEN
            PERFORM ledger_fail('ck_transfers_resolution_matches_pending',
                'a resolution must name the accounts and amount of its pending transfer');
        END IF;
        IF NEW.kind = 'post_pending' AND NEW.amount_minor > p.amount_minor THEN
            PERFORM ledger_fail('ck_transfers_post_within_pending',
                                'cannot post more than the pending transfer holds');
        END IF;
        IF NEW.kind = 'post_pending' AND statement_timestamp() >= p.expires_at THEN
            PERFORM ledger_fail('ck_transfers_pending_not_expired',
                                'the pending transfer has expired; it can only be voided');
        END IF;
        -- A resolution releases the whole hold and posts what it posts.
        v_posted := CASE WHEN NEW.kind = 'post_pending' THEN NEW.amount_minor ELSE 0 END;
        v_pending := -p.amount_minor;
    END IF;

    IF v_debit_kind = 'wallet' AND v_credit_kind = 'wallet' THEN
        -- Lock two wallets in id order, so opposite transfers between them never deadlock.
        PERFORM FROM accounts
          WHERE id IN (NEW.debit_account_id, NEW.credit_account_id)
          ORDER BY id FOR NO KEY UPDATE;
    END IF;
    IF v_debit_kind = 'wallet' THEN
        v_guarded := NOT NEW.forced AND NEW.kind IN ('posted', 'pending')
                     AND NEW.category <> 'grant_expiry';
        -- The guard is evaluated on the locked, latest row version: it holds under any
        -- concurrency. Only facts that already happened (forced) may pass it. The debit is
        -- booked against paid credit first; what grants cover moves over below, under the lock.
        UPDATE accounts SET
            debits_posted = debits_posted + v_posted,
            debits_pending = debits_pending + v_pending,
            paid_minor = paid_minor - v_posted
        WHERE id = NEW.debit_account_id
          AND (NOT v_guarded
               OR credits_posted - debits_posted - v_posted - debits_pending - v_pending
                  >= -overdraft_limit_minor)
        RETURNING credits_posted - debits_posted, debits_pending, paid_minor, granted_minor,
                  overdraft_limit_minor, watched
        INTO v_balance, v_held, v_paid, v_granted, v_limit, v_watched;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insufficient funds: wallet % cannot cover this debit',
                NEW.debit_account_id
                USING ERRCODE = 'check_violation', TABLE = 'accounts',
                      CONSTRAINT = 'ck_accounts_available_covers_spend';
        END IF;
        IF NEW.category = 'grant_expiry' THEN
            SELECT * INTO g FROM credit_grants WHERE id = NEW.grant_id FOR UPDATE;
            IF NOT FOUND OR g.wallet_id <> NEW.debit_account_id
               OR g.expires_at IS NULL OR g.expires_at > statement_timestamp()
               OR g.remaining_minor <> NEW.amount_minor OR NEW.kind <> 'posted' THEN
                PERFORM ledger_fail('ck_transfers_grant_expiry_matches_grant',
                    'a grant''s expiry takes exactly its unused remainder, once it has expired');
            END IF;
            UPDATE credit_grants SET remaining_minor = 0, expired_minor = NEW.amount_minor,
                                     expired_at = statement_timestamp()
             WHERE id = g.id;
            v_from_grants := NEW.amount_minor;
        ELSIF v_granted > 0 AND NEW.category <> 'topup_reversal' THEN
            IF v_guarded THEN
                -- Expired credit still waiting for its expiry transfer is not spendable.
                SELECT coalesce(sum(remaining_minor), 0) INTO v_stale FROM credit_grants
                 WHERE wallet_id = NEW.debit_account_id AND remaining_minor > 0
                   AND expires_at <= statement_timestamp();
                IF v_balance - v_held - v_stale < -v_limit THEN
                    RAISE EXCEPTION 'insufficient funds: wallet % cannot spend expired credit',
                        NEW.debit_account_id
                        USING ERRCODE = 'check_violation', TABLE = 'accounts',
                              CONSTRAINT = 'ck_accounts_available_covers_spend';
                END IF;
            END IF;
        END IF;
        IF v_posted > 0 AND v_granted > 0
           AND NEW.category NOT IN ('topup_reversal', 'grant_expiry') THEN
            v_left := v_posted;
            FOR g IN SELECT * FROM credit_grants
                      WHERE wallet_id = NEW.debit_account_id AND remaining_minor > 0
                        AND (expires_at IS NULL OR expires_at > statement_timestamp())
                      ORDER BY priority, expires_at NULLS LAST, created_at, id
                      FOR UPDATE
            LOOP
                EXIT WHEN v_left = 0;
                v_take := least(v_left, g.remaining_minor);
                UPDATE credit_grants SET remaining_minor = remaining_minor - v_take
                 WHERE id = g.id;
                INSERT INTO credit_grant_uses (transfer_id, grant_id, amount_minor)
                VALUES (NEW.id, g.id, v_take);
                v_left := v_left - v_take;
                v_from_grants := v_from_grants + v_take;
            END LOOP;
        END IF;
        IF v_from_grants > 0 THEN
            UPDATE accounts SET paid_minor = paid_minor + v_from_grants,
                                granted_minor = granted_minor - v_from_grants
             WHERE id = NEW.debit_account_id;
            v_paid := v_paid + v_from_grants;
        END IF;
        INSERT INTO wallet_entries (wallet_id, transfer_id, balance_delta_minor, held_delta_minor,
                                    paid_delta_minor, granted_delta_minor, balance_after_minor,
                                    held_after_minor, paid_after_minor)
        VALUES (NEW.debit_account_id, NEW.id, -v_posted, v_pending,
                v_from_grants - v_posted, -v_from_grants, v_balance, v_held, v_paid);
        IF v_watched THEN
            PERFORM ledger_watch_wallet(NEW.debit_account_id, NEW.id, v_balance - v_held);
        END IF;
    END IF;
    IF v_credit_kind = 'wallet' THEN
        IF NEW.category = 'grant' THEN
            SELECT * INTO g FROM credit_grants WHERE id = NEW.grant_id FOR UPDATE;
            IF NOT FOUND OR g.wallet_id <> NEW.credit_account_id OR NEW.kind <> 'posted'
               OR g.amount_minor <> NEW.amount_minor OR g.funded_at IS NOT NULL
               OR g.expires_at <= statement_timestamp() THEN
                PERFORM ledger_fail('ck_transfers_grant_matches_grant',
                    'a grant''s transfer funds its grant once, in full, before its expiry');
            END IF;
            UPDATE credit_grants SET remaining_minor = NEW.amount_minor,
                                     funded_at = statement_timestamp()
             WHERE id = g.id;
        END IF;
        UPDATE accounts SET
            credits_posted = credits_posted + v_posted,
            credits_pending = credits_pending + v_pending,
            paid_minor = paid_minor
                         + CASE WHEN NEW.category = 'grant' THEN 0 ELSE v_posted END,
            granted_minor = granted_minor
                            + CASE WHEN NEW.category = 'grant' THEN v_posted ELSE 0 END
        WHERE id = NEW.credit_account_id
        RETURNING credits_posted - debits_posted, debits_pending, paid_minor, watched
        INTO v_balance, v_held, v_paid, v_watched;
        INSERT INTO wallet_entries (wallet_id, transfer_id, balance_delta_minor, held_delta_minor,
                                    paid_delta_minor, granted_delta_minor, balance_after_minor,
                                    held_after_minor, paid_after_minor)
        VALUES (NEW.credit_account_id, NEW.id, v_posted, 0,
                CASE WHEN NEW.category = 'grant' THEN 0 ELSE v_posted END,
                CASE WHEN NEW.category = 'grant' THEN v_posted ELSE 0 END,
                v_balance, v_held, v_paid);
        IF v_watched THEN
            PERFORM ledger_watch_wallet(NEW.credit_account_id, NEW.id, v_balance - v_held);
        END IF;
    END IF;
    RETURN NULL;
END $$;
"""

# After every change of a wallet's available balance, in the same statement: balance monitors
# that flip announce `wallet.balance_crossed` once per crossing (and re-arm on the way back),
# and an armed auto top-up rule whose threshold is crossed downwards creates a top-up and
# announces `topup.requested`, at most per_day_max times a UTC day. Both are serialised by the
# wallet's lock, which the caller holds. Neither can refuse the transfer: the amount of an
# automatic top-up is bounded to what a top-up may be.
WATCH_WALLET = """
CREATE FUNCTION ledger_watch_wallet(p_wallet uuid, p_transfer bigint, p_available bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r auto_topup_rules%ROWTYPE;
    v_today date := (statement_timestamp() AT TIME ZONE 'UTC')::date;
    v_amount bigint;
    v_topup uuid;
BEGIN
    WITH flipped AS (
        UPDATE balance_monitors
           SET crossed = NOT crossed,
               crossings = crossings + CASE WHEN crossed THEN 0 ELSE 1 END,
               changed_at = statement_timestamp()
         WHERE wallet_id = p_wallet
           AND crossed <> CASE direction WHEN 'below' THEN p_available < threshold_minor
                                         ELSE p_available > threshold_minor END
        RETURNING id, direction, threshold_minor, crossed, crossings
    )
    INSERT INTO outbox_events (event_type, key, wallet_id, payload)
    SELECT 'wallet.balance_crossed', 'wallet.balance_crossed:' || f.id || ':' || f.crossings,
           a.id,
           jsonb_build_object(
               'wallet_id', a.id::text, 'owner_id', a.owner_id, 'currency', a.currency,
               'balance_minor', a.credits_posted - a.debits_posted,
               'available_minor', p_available, 'monitor_id', f.id::text,
               'direction', f.direction, 'threshold_minor', f.threshold_minor,
               'transfer_id', p_transfer)
      FROM flipped f JOIN accounts a ON a.id = p_wallet
     WHERE f.crossed
    ON CONFLICT (key) DO NOTHING;

    UPDATE auto_topup_rules
       SET armed = NOT armed, updated_at = statement_timestamp()
     WHERE wallet_id = p_wallet AND armed <> (p_available >= threshold_minor)
    RETURNING * INTO r;
    IF NOT FOUND OR r.armed THEN
        RETURN;
    END IF;
    IF (SELECT count(*) FROM topups WHERE wallet_id = p_wallet AND auto_rule_day = v_today)
       >= r.per_day_max THEN
        RETURN;
    END IF;
    v_amount := least(coalesce(r.amount_minor, r.target_minor - p_available), 1000000000000000);
    INSERT INTO topups (wallet_id, amount_minor, currency, gateway, auto_rule_day)
    SELECT p_wallet, v_amount, a.currency, r.gateway, v_today FROM accounts a WHERE a.id = p_wallet
    RETURNING id INTO v_topup;
    INSERT INTO outbox_events (event_type, key, wallet_id, payload)
    SELECT 'topup.requested', 'topup.requested:' || v_topup, a.id,
           jsonb_build_object(
               'wallet_id', a.id::text, 'owner_id', a.owner_id, 'currency', a.currency,
               'balance_minor', a.credits_posted - a.debits_posted,
               'available_minor', p_available, 'topup_id', v_topup::text,
               'amount_minor', v_amount, 'gateway', r.gateway, 'automatic', true,
               'charged_off_session', r.stripe_customer_id IS NOT NULL,
               'transfer_id', p_transfer)
      FROM accounts a WHERE a.id = p_wallet;
END $$;
"""

# A wallet is `watched` while it has a monitor or an auto top-up rule: the transfer trigger
# judges those only for watched wallets, so every other wallet's transfers pay nothing for
# them. Kept by these triggers (their updates run inside a trigger, past the accounts guard).
MARK_WATCHED = """
CREATE FUNCTION ledger_mark_watched() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_wallet uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.wallet_id ELSE NEW.wallet_id END;
BEGIN
    UPDATE accounts
       SET watched = EXISTS (SELECT FROM balance_monitors WHERE wallet_id = v_wallet)
                     OR EXISTS (SELECT FROM auto_topup_rules WHERE wallet_id = v_wallet)
     WHERE id = v_wallet;
    RETURN NULL;
END $$;

CREATE TRIGGER balance_monitors_mark_watched AFTER INSERT OR DELETE ON balance_monitors
    FOR EACH ROW EXECUTE FUNCTION ledger_mark_watched();
CREATE TRIGGER auto_topup_rules_mark_watched AFTER INSERT OR DELETE ON auto_topup_rules
    FOR EACH ROW EXECUTE FUNCTION ledger_mark_watched();
"""

GUARD_ACCOUNTS = """
CREATE OR REPLACE FUNCTION ledger_guard_account_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending,
            NEW.paid_minor, NEW.granted_minor, NEW.watched)
           = (0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, 0::bigint, false) THEN
            RETURN NEW;
        END IF;
    ELSIF (NEW.kind, NEW.currency, NEW.owner_id, NEW.overdraft_limit_minor,
           NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending,
           NEW.paid_minor, NEW.granted_minor, NEW.watched)
          IS NOT DISTINCT FROM (OLD.kind, OLD.currency, OLD.owner_id, OLD.overdraft_limit_minor,
                                OLD.debits_posted, OLD.credits_posted,
                                OLD.debits_pending, OLD.credits_pending,
                                OLD.paid_minor, OLD.granted_minor, OLD.watched) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an account''s owner, currency, overdraft limit and totals never change by hand'
        USING ERRCODE = 'check_violation', TABLE = 'accounts',
              CONSTRAINT = 'ck_accounts_totals_from_transfers';
END $$;
"""

# A grant is inserted unfunded (remaining 0); only the transfer trigger funds, spends or
# expires it. Its terms never change afterwards, and nothing is deleted.
GUARD_GRANTS = """
CREATE FUNCTION ledger_guard_grants() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.remaining_minor = 0 AND NEW.expired_minor = 0
       AND NEW.funded_at IS NULL AND NEW.expired_at IS NULL THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a credit grant changes only through its transfers'
        USING ERRCODE = 'check_violation', TABLE = 'credit_grants',
              CONSTRAINT = 'ck_credit_grants_changed_by_transfers';
END $$;

CREATE TRIGGER credit_grants_guard BEFORE INSERT OR UPDATE OR DELETE ON credit_grants
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION ledger_guard_grants();
CREATE TRIGGER credit_grants_no_truncate BEFORE TRUNCATE ON credit_grants
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

CREATE FUNCTION ledger_refuse_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are written by the ledger''s transfers only', TG_TABLE_NAME
        USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
              CONSTRAINT = 'ck_' || TG_TABLE_NAME || '_written_by_transfers';
END $$;

CREATE TRIGGER credit_grant_uses_guard BEFORE INSERT OR UPDATE OR DELETE ON credit_grant_uses
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION ledger_refuse_write();
CREATE TRIGGER credit_grant_uses_no_truncate BEFORE TRUNCATE ON credit_grant_uses
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER wallet_entries_guard BEFORE INSERT OR UPDATE OR DELETE ON wallet_entries
    FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION ledger_refuse_write();
CREATE TRIGGER wallet_entries_no_truncate BEFORE TRUNCATE ON wallet_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""

# Existing wallets: all of their balance is paid credit, and their history gets its entries,
# the running balance after each transfer in id order (the order the wallet's lock gave them).
BACKFILL = """
UPDATE accounts SET paid_minor = credits_posted - debits_posted WHERE kind = 'wallet';

INSERT INTO wallet_entries (wallet_id, transfer_id, at, balance_delta_minor, held_delta_minor,
                            paid_delta_minor, granted_delta_minor, balance_after_minor,
                            held_after_minor, paid_after_minor)
SELECT account_id, transfer_id, at, balance_delta, held_delta, balance_delta, 0,
       sum(balance_delta) OVER w, sum(held_delta) OVER w, sum(balance_delta) OVER w
FROM (
    SELECT t.debit_account_id AS account_id, t.id AS transfer_id, t.created_at AS at,
           -CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END
               AS balance_delta,
           CASE WHEN t.kind = 'pending' THEN t.amount_minor
                WHEN t.kind IN ('post_pending', 'void_pending') THEN -p.amount_minor
                ELSE 0 END AS held_delta
    FROM transfers t LEFT JOIN transfers p ON p.id = t.pending_id
    JOIN accounts a ON a.id = t.debit_account_id AND a.kind = 'wallet'
    UNION ALL
    SELECT t.credit_account_id, t.id, t.created_at,
           CASE WHEN t.kind IN ('posted', 'post_pending') THEN t.amount_minor ELSE 0 END, 0
    FROM transfers t
    JOIN accounts a ON a.id = t.credit_account_id AND a.kind = 'wallet'
) legs
WINDOW w AS (PARTITION BY account_id ORDER BY transfer_id)
ORDER BY account_id, transfer_id;
"""


def upgrade() -> None:
    op.execute("ALTER TABLE accounts DISABLE TRIGGER accounts_guard_totals")
    op.add_column(
        "accounts", sa.Column("paid_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "accounts", sa.Column("granted_minor", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "accounts",
        sa.Column("watched", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_table(
        "credit_grants",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("remaining_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expired_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("priority", sa.Integer(), server_default="50", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.Column("funded_by", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("funded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "amount_minor > 0 AND amount_minor <= 1000000000000000",
            name=op.f("ck_credit_grants_amount"),
        ),
        sa.CheckConstraint(
            "remaining_minor >= 0 AND expired_minor >= 0"
            " AND remaining_minor + expired_minor <= amount_minor",
            name=op.f("ck_credit_grants_remaining_within_amount"),
        ),
        sa.CheckConstraint(
            "priority BETWEEN 0 AND 100", name=op.f("ck_credit_grants_priority_range")
        ),
        sa.CheckConstraint(
            "length(reason) BETWEEN 1 AND 500", name=op.f("ck_credit_grants_reason_length")
        ),
        sa.CheckConstraint(
            "length(granted_by) BETWEEN 1 AND 255", name=op.f("ck_credit_grants_granted_by_length")
        ),
        sa.CheckConstraint(
            "(expired_at IS NULL) OR (expires_at IS NOT NULL AND remaining_minor = 0)",
            name=op.f("ck_credit_grants_expired_when_due"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_credit_grants_wallet_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_grants")),
    )
    op.create_index(
        "ix_credit_grants_wallet_open",
        "credit_grants",
        ["wallet_id"],
        postgresql_where=sa.text("remaining_minor > 0"),
    )
    op.create_index(
        "ix_credit_grants_expiring",
        "credit_grants",
        ["expires_at"],
        postgresql_where=sa.text("remaining_minor > 0 AND expires_at IS NOT NULL"),
    )
    op.create_index("ix_credit_grants_wallet_id", "credit_grants", ["wallet_id", "created_at"])
    op.create_table(
        "credit_grant_uses",
        sa.Column("transfer_id", sa.BigInteger(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("statement_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_credit_grant_uses_amount_positive")),
        sa.PrimaryKeyConstraint("transfer_id", "grant_id", name=op.f("pk_credit_grant_uses")),
    )
    op.create_index("ix_credit_grant_uses_grant_id", "credit_grant_uses", ["grant_id"])
    op.create_table(
        "wallet_entries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("transfer_id", sa.BigInteger(), nullable=False),
        # The wallet's lock orders its entries: clock time under that lock only moves forward.
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("balance_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("held_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("paid_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("granted_delta_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("held_after_minor", sa.BigInteger(), nullable=False),
        sa.Column("paid_after_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_entries")),
    )
    op.create_index("ix_wallet_entries_wallet_id_at", "wallet_entries", ["wallet_id", "at", "id"])

    op.add_column("transfers", sa.Column("grant_id", sa.Uuid(), nullable=True))
    op.drop_constraint(op.f("ck_transfers_category_known"), "transfers", type_="check")
    op.create_check_constraint(
        op.f("ck_transfers_category_known"), "transfers", _in("category", CATEGORIES)
    )
    op.create_check_constraint(
        op.f("ck_transfers_grant_names_grant"),
        "transfers",
        "(category IN ('grant', 'grant_expiry')) = (grant_id IS NOT NULL)",
    )
    # One funding and one expiry per grant, whoever races to write them.
    op.create_index(
        "uq_transfers_grant_funding",
        "transfers",
        ["grant_id"],
        unique=True,
        postgresql_where=sa.text("category = 'grant'"),
    )
    op.create_index(
        "uq_transfers_grant_expiry",
        "transfers",
        ["grant_id"],
        unique=True,
        postgresql_where=sa.text("category = 'grant_expiry'"),
    )

    op.execute(BACKFILL)
    op.create_check_constraint(
        op.f("ck_accounts_paid_and_granted_make_balance"),
        "accounts",
        "paid_minor + granted_minor = credits_posted - debits_posted AND granted_minor >= 0",
    )
    op.execute("ALTER TABLE accounts ENABLE TRIGGER accounts_guard_totals")

    op.create_table(
        "balance_monitors",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("threshold_minor", sa.BigInteger(), nullable=False),
        # Whether available is on the far side of the threshold, as last seen: an event goes
        # out when this flips to true, and the monitor re-arms when it flips back.
        sa.Column("crossed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("crossings", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "direction IN ('below', 'above')", name=op.f("ck_balance_monitors_direction_known")
        ),
        sa.CheckConstraint(
            "threshold_minor BETWEEN -1000000000000000 AND 1000000000000000",
            name=op.f("ck_balance_monitors_threshold_range"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_balance_monitors_wallet_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_monitors")),
        sa.UniqueConstraint(
            "wallet_id",
            "direction",
            "threshold_minor",
            name=op.f("uq_balance_monitors_wallet_id_direction_threshold_minor"),
        ),
    )
    op.create_table(
        "auto_topup_rules",
        sa.Column("wallet_id", sa.Uuid(), nullable=False),
        sa.Column("threshold_minor", sa.BigInteger(), nullable=False),
        sa.Column("target_minor", sa.BigInteger(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("gateway", sa.Text(), nullable=False),
        sa.Column("per_day_max", sa.Integer(), nullable=False),
        sa.Column("stripe_customer_id", sa.Text(), nullable=True),
        sa.Column("stripe_payment_method_id", sa.Text(), nullable=True),
        # Armed while available is at or above the threshold: one top-up per crossing.
        sa.Column("armed", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "(target_minor IS NULL) <> (amount_minor IS NULL)",
            name=op.f("ck_auto_topup_rules_target_or_amount"),
        ),
        sa.CheckConstraint(
            "threshold_minor >= 0 AND threshold_minor <= 1000000000000000",
            name=op.f("ck_auto_topup_rules_threshold_range"),
        ),
        sa.CheckConstraint(
            "target_minor IS NULL OR (target_minor > threshold_minor"
            " AND target_minor <= 1000000000000000)",
            name=op.f("ck_auto_topup_rules_target_above_threshold"),
        ),
        sa.CheckConstraint(
            "amount_minor IS NULL OR (amount_minor > 0 AND amount_minor <= 1000000000000000)",
            name=op.f("ck_auto_topup_rules_amount"),
        ),
        sa.CheckConstraint(
            "per_day_max BETWEEN 1 AND 24", name=op.f("ck_auto_topup_rules_per_day_range")
        ),
        sa.CheckConstraint(
            "gateway ~ '^[a-z]{2,32}$'", name=op.f("ck_auto_topup_rules_gateway_name")
        ),
        sa.CheckConstraint(
            "(stripe_customer_id IS NULL) = (stripe_payment_method_id IS NULL)",
            name=op.f("ck_auto_topup_rules_stripe_pair"),
        ),
        sa.ForeignKeyConstraint(
            ["wallet_id"], ["accounts.id"], name=op.f("fk_auto_topup_rules_wallet_id")
        ),
        sa.PrimaryKeyConstraint("wallet_id", name=op.f("pk_auto_topup_rules")),
    )
    op.add_column("topups", sa.Column("auto_rule_day", sa.Date(), nullable=True))
    op.add_column("topups", sa.Column("failure_reason", sa.Text(), nullable=True))
    op.add_column("topups", sa.Column("charge_id", sa.Text(), nullable=True))
    op.add_column(
        "topups",
        sa.Column("charge_attempted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_topups_auto_rule_day",
        "topups",
        ["wallet_id", "auto_rule_day"],
        postgresql_where=sa.text("auto_rule_day IS NOT NULL"),
    )
    op.execute(GUARD_ACCOUNTS)
    op.execute(GUARD_GRANTS)
    op.execute(WATCH_WALLET)
    op.execute(MARK_WATCHED)
    op.execute(APPLY_TRANSFER)


def downgrade() -> None:
    op.execute("ALTER TABLE accounts DISABLE TRIGGER accounts_guard_totals")
    op.execute(_previous_apply_transfer())
    op.execute(_previous_guard_accounts())
    op.execute("DROP FUNCTION ledger_watch_wallet(uuid, bigint, bigint)")
    op.execute("DROP FUNCTION ledger_mark_watched() CASCADE")
    op.drop_index("ix_topups_auto_rule_day", table_name="topups")
    for column in ("charge_attempted_at", "charge_id", "failure_reason", "auto_rule_day"):
        op.drop_column("topups", column)
    op.drop_table("auto_topup_rules")
    op.drop_table("balance_monitors")
    op.drop_constraint(op.f("ck_accounts_paid_and_granted_make_balance"), "accounts", type_="check")
    op.drop_index("uq_transfers_grant_expiry", table_name="transfers")
    op.drop_index("uq_transfers_grant_funding", table_name="transfers")
    op.drop_constraint(op.f("ck_transfers_grant_names_grant"), "transfers", type_="check")
    op.drop_constraint(op.f("ck_transfers_category_known"), "transfers", type_="check")
    op.create_check_constraint(
        op.f("ck_transfers_category_known"), "transfers", _in("category", CATEGORIES_BEFORE)
    )
    op.drop_column("transfers", "grant_id")
    op.drop_table("wallet_entries")
    op.drop_table("credit_grant_uses")
    op.drop_table("credit_grants")
    op.execute("DROP FUNCTION ledger_guard_grants()")
    op.execute("DROP FUNCTION ledger_refuse_write()")
    op.drop_column("accounts", "watched")
    op.drop_column("accounts", "granted_minor")
    op.drop_column("accounts", "paid_minor")
    op.execute("ALTER TABLE accounts ENABLE TRIGGER accounts_guard_totals")


def _revision_0006() -> Any:
    """The 0006 migration's module: its trigger functions are the ones this one replaced."""
    path = Path(__file__).with_name("0006_harden_guards.py")
    spec = importlib.util.spec_from_file_location("walletpipe_revision_0006", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _previous_apply_transfer() -> str:
    return str(_revision_0006().APPLY_TRANSFER)


def _previous_guard_accounts() -> str:
    return str(_revision_0006().GUARD_ACCOUNTS)
