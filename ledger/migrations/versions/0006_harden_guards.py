"""Harden the ledger's guards; usage ids unique per wallet.

- A forced transfer (money that already left: a gateway refund, consumed usage) may credit
  only a system account, so it can never create spendable money in another wallet.
- Hold expiry is judged by the database's statement time, not by a column the inserter sets.
- A wallet's owner and overdraft limit never change by hand, like its totals.
- A usage record's id is the reporting service's key within one wallet, not across tenants.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPLY_TRANSFER = """
CREATE OR REPLACE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p transfers%ROWTYPE;
    v_debit_kind text;
    v_debit_currency text;
    v_credit_kind text;
    v_credit_currency text;
    v_posted bigint;
    v_pending bigint;
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
        -- The guard is evaluated on the locked, latest row version: it holds under any
        -- concurrency. Only facts that already happened (forced) may pass it.
        UPDATE accounts SET
            debits_posted = debits_posted + v_posted,
            debits_pending = debits_pending + v_pending
        WHERE id = NEW.debit_account_id
          AND (NEW.forced OR NEW.kind NOT IN ('posted', 'pending')
               OR credits_posted - debits_posted - v_posted - debits_pending - v_pending
                  >= -overdraft_limit_minor);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insufficient funds: wallet % cannot cover this debit',
                NEW.debit_account_id
                USING ERRCODE = 'check_violation', TABLE = 'accounts',
                      CONSTRAINT = 'ck_accounts_available_covers_spend';
        END IF;
    END IF;
    IF v_credit_kind = 'wallet' THEN
        UPDATE accounts SET
            credits_posted = credits_posted + v_posted,
            credits_pending = credits_pending + v_pending
        WHERE id = NEW.credit_account_id;
    END IF;
    RETURN NULL;
END $$;
"""

GUARD_ACCOUNTS = """
CREATE OR REPLACE FUNCTION ledger_guard_account_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
           = (0::bigint, 0::bigint, 0::bigint, 0::bigint) THEN
            RETURN NEW;
        END IF;
    ELSIF (NEW.kind, NEW.currency, NEW.owner_id, NEW.overdraft_limit_minor,
           NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
          IS NOT DISTINCT FROM (OLD.kind, OLD.currency, OLD.owner_id, OLD.overdraft_limit_minor,
                                OLD.debits_posted, OLD.credits_posted,
                                OLD.debits_pending, OLD.credits_pending) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'an account''s owner, currency, overdraft limit and totals never change by hand'
        USING ERRCODE = 'check_violation', TABLE = 'accounts',
              CONSTRAINT = 'ck_accounts_totals_from_transfers';
END $$;
"""

PREVIOUS_APPLY_TRANSFER = """
CREATE OR REPLACE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    p transfers%ROWTYPE;
    v_debit_kind text;
    v_debit_currency text;
    v_credit_kind text;
    v_credit_currency text;
    v_posted bigint;
    v_pending bigint;
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

    -- What the transfer adds to the debit side's debits and the credit side's credits.
    IF NEW.kind = 'posted' THEN
        v_posted := NEW.amount_minor;
        v_pending := 0;
    ELSIF NEW.kind = 'pending' THEN
        IF NEW.expires_at <= NEW.created_at THEN
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
        IF NEW.kind = 'post_pending' AND NEW.created_at >= p.expires_at THEN
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
        -- The guard is evaluated on the locked, latest row version: it holds under any
        -- concurrency. Only facts that already happened (forced) may pass it.
        UPDATE accounts SET
            debits_posted = debits_posted + v_posted,
            debits_pending = debits_pending + v_pending
        WHERE id = NEW.debit_account_id
          AND (NEW.forced OR NEW.kind NOT IN ('posted', 'pending')
               OR credits_posted - debits_posted - v_posted - debits_pending - v_pending
                  >= -overdraft_limit_minor);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'insufficient funds: wallet % cannot cover this debit',
                NEW.debit_account_id
                USING ERRCODE = 'check_violation', TABLE = 'accounts',
                      CONSTRAINT = 'ck_accounts_available_covers_spend';
        END IF;
    END IF;
    IF v_credit_kind = 'wallet' THEN
        UPDATE accounts SET
            credits_posted = credits_posted + v_posted,
            credits_pending = credits_pending + v_pending
        WHERE id = NEW.credit_account_id;
    END IF;
    RETURN NULL;
END $$;
"""

PREVIOUS_GUARD_ACCOUNTS = """
CREATE OR REPLACE FUNCTION ledger_guard_account_totals() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
           = (0::bigint, 0::bigint, 0::bigint, 0::bigint) THEN
            RETURN NEW;
        END IF;
    ELSIF (NEW.kind, NEW.currency, NEW.debits_posted, NEW.credits_posted,
           NEW.debits_pending, NEW.credits_pending)
          IS NOT DISTINCT FROM (OLD.kind, OLD.currency, OLD.debits_posted, OLD.credits_posted,
                                OLD.debits_pending, OLD.credits_pending) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'account totals, kind and currency change only through transfers'
        USING ERRCODE = 'check_violation', TABLE = 'accounts',
              CONSTRAINT = 'ck_accounts_totals_from_transfers';
END $$;
"""


def upgrade() -> None:
    op.execute(APPLY_TRANSFER)
    op.execute(GUARD_ACCOUNTS)
    op.drop_constraint("pk_usage_records", "usage_records", type_="primary")
    op.create_primary_key("pk_usage_records", "usage_records", ["wallet_id", "id"])


def downgrade() -> None:
    op.drop_constraint("pk_usage_records", "usage_records", type_="primary")
    op.create_primary_key("pk_usage_records", "usage_records", ["id"])
    op.execute(PREVIOUS_GUARD_ACCOUNTS)
    op.execute(PREVIOUS_APPLY_TRANSFER)
