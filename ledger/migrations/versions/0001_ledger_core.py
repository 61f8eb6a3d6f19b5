"""Ledger core: accounts, immutable transfers, audit log, and the triggers that guard money.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 19:15:52.909823
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Every cached total changes only here, in the same statement as the transfer row that justifies
# it, so no code path (ORM, raw SQL, a second process) can move money without a transfer or
# spend a wallet below its overdraft limit. Errors carry a constraint name that
# ledger.errors maps to a domain exception.
#
# Only wallets cache totals. System accounts take part in nearly every transfer; their totals
# are derived from the transfers when read (verify, reconciliation), so no system account row
# is written, or locked, by every transfer.
LEDGER_FUNCTIONS = """
CREATE FUNCTION ledger_fail(p_constraint text, p_message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', p_message
        USING ERRCODE = 'check_violation', TABLE = 'transfers', CONSTRAINT = p_constraint;
END $$;

CREATE FUNCTION ledger_apply_transfer() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only; record a correcting transfer instead', TG_TABLE_NAME
        USING ERRCODE = 'check_violation', TABLE = TG_TABLE_NAME,
              CONSTRAINT = 'ck_' || TG_TABLE_NAME || '_append_only';
END $$;

-- Fired only by statements outside any trigger (see WHEN below): the ledger's own updates from
-- ledger_apply_transfer skip it, and any other write of a total, a kind or a currency fails.
CREATE FUNCTION ledger_guard_account_totals() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER transfers_apply AFTER INSERT ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_apply_transfer();
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_guard_totals BEFORE INSERT OR UPDATE ON accounts
    FOR EACH ROW WHEN (pg_trigger_depth() = 0)
    EXECUTE FUNCTION ledger_guard_account_totals();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
"""

LEDGER_FUNCTION_NAMES = (
    "ledger_apply_transfer()",
    "ledger_guard_account_totals()",
    "ledger_refuse_change()",
    "ledger_fail(text, text)",
)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("overdraft_limit_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind = 'system') = (code IS NOT NULL)", name=op.f("ck_accounts_system_has_code")
        ),
        sa.CheckConstraint(
            "(kind = 'wallet') = (owner_id IS NOT NULL)", name=op.f("ck_accounts_wallet_has_owner")
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name=op.f("ck_accounts_currency_iso")),
        sa.CheckConstraint(
            "kind = 'wallet' OR (debits_posted = 0 AND credits_posted = 0 AND debits_pending = 0 AND credits_pending = 0)",
            name=op.f("ck_accounts_system_totals_derived"),
        ),
        sa.CheckConstraint("kind IN ('wallet', 'system')", name=op.f("ck_accounts_kind_known")),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0 AND credits_pending >= 0",
            name=op.f("ck_accounts_totals_nonnegative"),
        ),
        sa.CheckConstraint(
            "length(owner_id) BETWEEN 1 AND 255", name=op.f("ck_accounts_owner_id_length")
        ),
        sa.CheckConstraint(
            "overdraft_limit_minor >= 0", name=op.f("ck_accounts_overdraft_limit_nonnegative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("code", "currency", name=op.f("uq_accounts_code_currency")),
        sa.UniqueConstraint("owner_id", "currency", name=op.f("uq_accounts_owner_id_currency")),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=False),
        sa.Column("debit_account_id", sa.Uuid(), nullable=False),
        sa.Column("credit_account_id", sa.Uuid(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("pending_id", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("forced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "(kind = 'pending') = (expires_at IS NOT NULL)",
            name=op.f("ck_transfers_pending_has_expiry"),
        ),
        sa.CheckConstraint(
            "(kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL)",
            name=op.f("ck_transfers_resolution_names_pending"),
        ),
        sa.CheckConstraint(
            "NOT forced OR (kind = 'posted' AND category IN ('topup_reversal', 'usage'))",
            name=op.f("ck_transfers_forced_only_for_facts"),
        ),
        sa.CheckConstraint(
            "category IN ('topup', 'topup_reversal', 'order_payment', 'order_refund', 'usage', 'hold', 'transfer', 'adjustment')",
            name=op.f("ck_transfers_category_known"),
        ),
        sa.CheckConstraint(
            "kind IN ('posted', 'pending', 'post_pending', 'void_pending')",
            name=op.f("ck_transfers_kind_known"),
        ),
        sa.CheckConstraint(
            "amount_minor > 0 AND amount_minor <= 1000000000000000",
            name=op.f("ck_transfers_amount"),
        ),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name=op.f("ck_transfers_distinct_accounts")
        ),
        sa.CheckConstraint(
            "length(idempotency_key) BETWEEN 1 AND 255", name=op.f("ck_transfers_key_length")
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"], ["transfers.id"], name=op.f("fk_transfers_pending_id")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_transfers_idempotency_key")),
    )
    op.create_index(
        "ix_transfers_credit_account_id", "transfers", ["credit_account_id", "id"], unique=False
    )
    op.create_index(
        "ix_transfers_debit_account_id", "transfers", ["debit_account_id", "id"], unique=False
    )
    op.create_index(
        "uq_transfers_pending_id",
        "transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=sa.text("pending_id IS NOT NULL"),
    )
    op.create_index(
        "ix_transfers_open_pending_expiry",
        "transfers",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("kind = 'pending'"),
    )
    op.execute(LEDGER_FUNCTIONS)


def downgrade() -> None:
    # CASCADE drops the triggers that call these functions.
    for function in LEDGER_FUNCTION_NAMES:
        op.execute(f"DROP FUNCTION {function} CASCADE")
    op.drop_index("uq_transfers_pending_id", table_name="transfers")
    op.drop_index(
        "ix_transfers_open_pending_expiry",
        table_name="transfers",
        postgresql_where=sa.text("kind = 'pending'"),
    )
    op.drop_index("ix_transfers_debit_account_id", table_name="transfers")
    op.drop_index("ix_transfers_credit_account_id", table_name="transfers")
    op.drop_table("transfers")
    op.drop_table("audit_log")
    op.drop_table("accounts")
