"""Every ledger invariant holds against the ORM and against raw SQL: the database enforces it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ledger.account import system_account_id
from ledger.db import constraint_name
from ledger.models import Account, SystemAccount, Transfer

RAW_INSERT = text("""
    INSERT INTO transfers (idempotency_key, kind, category, debit_account_id,
                           credit_account_id, amount_minor, currency, forced, pending_id,
                           expires_at)
    VALUES (:key, :kind, :category, :debit, :credit, :amount, :currency, :forced, :pending_id,
            :expires_at)
""")
RAW_INSERT_RETURNING_ID = text(RAW_INSERT.text + " RETURNING id")


@pytest.fixture
def funded(make_wallet):
    return make_wallet(funded_minor=1000)


@pytest.fixture
def revenue(sessions):
    with sessions.begin() as session:
        return system_account_id(session, SystemAccount.REVENUE, "ZAR")


def raw_transfer(**overrides):
    values = {
        "key": f"raw:{uuid.uuid4()}",
        "kind": "posted",
        "category": "order_payment",
        "amount": 100,
        "currency": "ZAR",
        "forced": False,
        "pending_id": None,
        "expires_at": None,
    }
    return {**values, **overrides}


def refused_by(sessions, statement, params=None):
    """Run a raw statement and return the name of the constraint that refused it."""
    with pytest.raises(IntegrityError) as refused, sessions.begin() as session:
        session.execute(statement, params or {})
    return constraint_name(refused.value)


def orm_refused_by(sessions, build):
    """Build objects through the ORM, flush them, and return the refusing constraint's name."""

    def attempt():
        with sessions.begin() as session:
            build(session)
            session.flush()

    with pytest.raises(IntegrityError) as refused:
        attempt()
    return constraint_name(refused.value)


def orm_transfer(debit, credit, **overrides):
    values = dict(
        idempotency_key=f"orm:{uuid.uuid4()}",
        kind="posted",
        category="order_payment",
        debit_account_id=debit,
        credit_account_id=credit,
        amount_minor=100,
        currency="ZAR",
    )
    return Transfer(**{**values, **overrides})


@pytest.mark.parametrize("amount", [0, -5, 10**15 + 1])
def test_amounts_are_positive_and_bounded(sessions, funded, revenue, amount):
    params = raw_transfer(debit=funded, credit=revenue, amount=amount)
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_amount"
    assert (
        orm_refused_by(
            sessions, lambda s: s.add(orm_transfer(funded, revenue, amount_minor=amount))
        )
        == "ck_transfers_amount"
    )


def test_debit_and_credit_accounts_differ(sessions, funded):
    params = raw_transfer(debit=funded, credit=funded)
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_distinct_accounts"
    assert (
        orm_refused_by(sessions, lambda s: s.add(orm_transfer(funded, funded)))
        == "ck_transfers_distinct_accounts"
    )


def test_one_currency_per_transfer(sessions, funded):
    with sessions.begin() as session:
        usd_revenue = system_account_id(session, SystemAccount.REVENUE, "USD")
    for currency in ("ZAR", "USD"):
        params = raw_transfer(debit=funded, credit=usd_revenue, currency=currency)
        assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_one_currency"
        assert (
            orm_refused_by(
                sessions,
                lambda s, c=currency: s.add(orm_transfer(funded, usd_revenue, currency=c)),
            )
            == "ck_transfers_one_currency"
        )


def test_both_accounts_exist(sessions, funded):
    params = raw_transfer(debit=funded, credit=uuid.uuid4())
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_accounts_exist"
    assert (
        orm_refused_by(sessions, lambda s: s.add(orm_transfer(uuid.uuid4(), funded)))
        == "ck_transfers_accounts_exist"
    )


def test_spending_never_exceeds_available(sessions, funded, revenue, balance_of):
    params = raw_transfer(debit=funded, credit=revenue, amount=1001)
    assert refused_by(sessions, RAW_INSERT, params) == "ck_accounts_available_covers_spend"
    assert (
        orm_refused_by(sessions, lambda s: s.add(orm_transfer(funded, revenue, amount_minor=1001)))
        == "ck_accounts_available_covers_spend"
    )
    hold = raw_transfer(
        debit=funded,
        credit=revenue,
        amount=1001,
        kind="pending",
        category="hold",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    assert refused_by(sessions, RAW_INSERT, hold) == "ck_accounts_available_covers_spend"
    assert balance_of(funded).balance_minor == 1000


def test_forcing_is_only_for_facts(sessions, funded, revenue):
    params = raw_transfer(debit=funded, credit=revenue, amount=5000, forced=True)
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_forced_only_for_facts"


def test_cached_totals_cannot_be_written_directly(sessions, funded, revenue):
    assert (
        refused_by(
            sessions,
            text("UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = :id"),
            {"id": funded},
        )
        == "ck_accounts_totals_from_transfers"
    )

    def bump(session):
        session.get(Account, funded).credits_posted += 1_000_000

    assert orm_refused_by(sessions, bump) == "ck_accounts_totals_from_transfers"
    assert (
        refused_by(
            sessions,
            text("UPDATE accounts SET debits_posted = 5 WHERE id = :id"),
            {"id": revenue},
        )
        == "ck_accounts_totals_from_transfers"
    )
    assert (
        refused_by(
            sessions, text("UPDATE accounts SET currency = 'USD' WHERE id = :id"), {"id": funded}
        )
        == "ck_accounts_totals_from_transfers"
    )
    assert (
        refused_by(
            sessions,
            text(
                "INSERT INTO accounts (kind, owner_id, currency, credits_posted)"
                " VALUES ('wallet', :owner, 'ZAR', 100)"
            ),
            {"owner": f"owner-{uuid.uuid4()}"},
        )
        == "ck_accounts_totals_from_transfers"
    )


def test_transfers_are_never_updated_or_deleted(sessions, funded):
    for statement in (
        "UPDATE transfers SET amount_minor = 1 WHERE credit_account_id = :id",
        "DELETE FROM transfers WHERE credit_account_id = :id",
        "TRUNCATE transfers CASCADE",
    ):
        assert refused_by(sessions, text(statement), {"id": funded}) == "ck_transfers_append_only"

    def rewrite(session):
        session.query(Transfer).filter_by(credit_account_id=funded).one().amount_minor = 1

    assert orm_refused_by(sessions, rewrite) == "ck_transfers_append_only"


def test_accounts_and_audit_entries_are_never_deleted(sessions, funded):
    assert (
        refused_by(sessions, text("DELETE FROM accounts WHERE id = :id"), {"id": funded})
        == "ck_accounts_append_only"
    )
    assert (
        refused_by(sessions, text("DELETE FROM audit_log WHERE subject = :id"), {"id": str(funded)})
        == "ck_audit_log_append_only"
    )


def test_one_idempotency_key_one_transfer(sessions, funded, revenue):
    params = raw_transfer(debit=funded, credit=revenue)
    with sessions.begin() as session:
        session.execute(RAW_INSERT, params)
    assert refused_by(sessions, RAW_INSERT, params) == "uq_transfers_idempotency_key"
    assert (
        orm_refused_by(
            sessions, lambda s: s.add(orm_transfer(funded, revenue, idempotency_key=params["key"]))
        )
        == "uq_transfers_idempotency_key"
    )


def test_a_hold_is_resolved_once_and_within_its_amount(sessions, funded, revenue):
    with sessions.begin() as session:
        hold = session.execute(
            RAW_INSERT_RETURNING_ID,
            raw_transfer(
                debit=funded,
                credit=revenue,
                kind="pending",
                category="hold",
                expires_at=datetime.now(UTC) + timedelta(hours=1),
                amount=300,
            ),
        ).scalar_one()
    resolve = {"debit": funded, "credit": revenue, "category": "hold", "pending_id": hold}
    assert (
        refused_by(sessions, RAW_INSERT, raw_transfer(kind="post_pending", amount=301, **resolve))
        == "ck_transfers_post_within_pending"
    )
    assert (
        refused_by(sessions, RAW_INSERT, raw_transfer(kind="void_pending", amount=5, **resolve))
        == "ck_transfers_resolution_matches_pending"
    )
    with sessions.begin() as session:
        session.execute(RAW_INSERT, raw_transfer(kind="post_pending", amount=200, **resolve))
    assert (
        refused_by(sessions, RAW_INSERT, raw_transfer(kind="void_pending", amount=300, **resolve))
        == "uq_transfers_pending_id"
    )


def test_only_a_pending_transfer_can_be_resolved(sessions, funded, revenue):
    with sessions.begin() as session:
        posted = session.execute(
            RAW_INSERT_RETURNING_ID,
            raw_transfer(debit=funded, credit=revenue, category="hold"),
        ).scalar_one()
    params = raw_transfer(
        debit=funded, credit=revenue, category="hold", kind="void_pending", pending_id=posted
    )
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_resolves_a_pending"


def test_a_hold_must_expire_in_the_future(sessions, funded, revenue):
    params = raw_transfer(
        debit=funded,
        credit=revenue,
        kind="pending",
        category="hold",
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_expiry_in_future"


def test_unknown_categories_are_refused(sessions, funded, revenue):
    params = raw_transfer(debit=funded, credit=revenue, category="gift")
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_category_known"


def test_a_forced_transfer_never_credits_a_wallet(sessions, funded, make_wallet):
    other = make_wallet()
    params = raw_transfer(debit=funded, credit=other, amount=5000, forced=True, category="usage")
    assert refused_by(sessions, RAW_INSERT, params) == "ck_transfers_forced_into_system"


def test_owner_and_overdraft_limit_never_change_by_hand(sessions, funded):
    for statement in (
        "UPDATE accounts SET overdraft_limit_minor = 1000000 WHERE id = :id",
        "UPDATE accounts SET owner_id = 'someone-else' WHERE id = :id",
    ):
        assert refused_by(sessions, text(statement), {"id": funded}) == (
            "ck_accounts_totals_from_transfers"
        )
