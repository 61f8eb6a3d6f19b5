"""Paid and granted credit: spends draw on grants first, refunds take paid credit only, and
the unused part of a grant expires exactly once, even racing spends."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from ledger import grant, settlement
from ledger.account import current_balance, open_wallet, system_account_id
from ledger.db import make_engine, make_session_factory
from ledger.errors import InsufficientFunds, InvariantViolation
from ledger.models import (
    Category,
    CreditGrant,
    CreditGrantUse,
    SystemAccount,
    Topup,
    Transfer,
    WalletEntry,
)
from ledger.transfer import TransferRequest, transfer
from ledger.verify import verify
from tests.integration.test_settlement import stored_event
from workers.jobs import JobSender
from workers.scheduler import Scheduler


def _grant(sessions, wallet_id, amount_minor, **terms):
    with sessions.begin() as session:
        return grant.grant_credit(
            session,
            wallet_id=wallet_id,
            amount_minor=amount_minor,
            reason=terms.pop("reason", "welcome credit"),
            actor="tests",
            **terms,
        ).grant.id


def _spend(sessions, wallet_id, amount_minor, *, forced=False, category=Category.ORDER_PAYMENT):
    with sessions.begin() as session:
        revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
        return transfer(
            session,
            TransferRequest(
                f"spend:{uuid.uuid4()}",
                wallet_id,
                revenue,
                amount_minor,
                "ZAR",
                Category.USAGE if forced else category,
                forced=forced,
            ),
        ).transfer.id


def _split(sessions, wallet_id):
    with sessions() as session:
        balance = current_balance(session, wallet_id)
        return balance.balance_minor, balance.paid_minor, balance.granted_minor


def _uses(sessions, transfer_id):
    with sessions() as session:
        return {
            use.grant_id: use.amount_minor
            for use in session.scalars(
                select(CreditGrantUse).where(CreditGrantUse.transfer_id == transfer_id)
            )
        }


def _soon(seconds: float = 1.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_a_spend_draws_on_grants_by_priority_then_expiry_then_on_paid_credit(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)  # paid credit
    later = _grant(sessions, wallet, 300, expires_at=_soon(3600 * 48))
    sooner = _grant(sessions, wallet, 200, expires_at=_soon(3600))
    first = _grant(sessions, wallet, 100, priority=10)  # no expiry, but a higher priority
    assert _split(sessions, wallet) == (1600, 1000, 600)

    spend = _spend(sessions, wallet, 450)

    assert _uses(sessions, spend) == {first: 100, sooner: 200, later: 150}
    assert _split(sessions, wallet) == (1150, 1000, 150)
    spend = _spend(sessions, wallet, 400)
    assert _uses(sessions, spend) == {later: 150}
    assert _split(sessions, wallet) == (750, 750, 0)
    with sessions() as session:
        entry = session.scalars(select(WalletEntry).where(WalletEntry.transfer_id == spend)).one()
    assert (entry.granted_delta_minor, entry.paid_delta_minor) == (-150, -250)
    assert (entry.balance_after_minor, entry.paid_after_minor) == (750, 750)


def test_a_gateway_refund_takes_paid_credit_only_even_into_debt(sessions, topup):
    topup_id, wallet = topup(amount_minor=5000)
    assert settlement_applied(sessions, topup_id, 5000)
    _grant(sessions, wallet, 2000)
    _spend(sessions, wallet, 2500)  # 2000 granted, 500 paid
    assert _split(sessions, wallet) == (4500, 4500, 0)
    _grant(sessions, wallet, 1000)

    refund = stored_event(
        sessions,
        kind="refund_succeeded",
        payment_id=_payment_of(sessions, topup_id),
        amount_minor=5000,
    )
    settlement_apply(sessions, refund)

    # The customer gets back the 5000 paid; the 1000 granted stays granted, the 500 of paid
    # credit already spent is debt.
    assert _split(sessions, wallet) == (500, -500, 1000)
    with sessions() as session:
        assert verify(session) == []


def test_consumed_usage_into_debt_draws_on_grants_first(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100)
    granted = _grant(sessions, wallet, 300)

    charge = _spend(sessions, wallet, 1000, forced=True)

    assert _uses(sessions, charge) == {granted: 300}
    assert _split(sessions, wallet) == (-600, -600, 0)


def test_expired_credit_is_never_spendable_and_expires_exactly_once(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100)
    expiring = _grant(sessions, wallet, 500, expires_at=_soon(0.5))
    kept = _grant(sessions, wallet, 50)
    time.sleep(0.6)

    # Due, but the scheduler has not run yet: the 500 is still in the balance, not spendable.
    with pytest.raises(InsufficientFunds):
        _spend(sessions, wallet, 151)
    spend = _spend(sessions, wallet, 150)
    assert _uses(sessions, spend) == {kept: 50}

    with sessions.begin() as session:
        assert expiring in grant.expire_due(session)  # with any other test's due grants
    with sessions.begin() as session:  # the next tick, or a second scheduler
        assert expiring not in grant.expire_due(session)

    assert _split(sessions, wallet) == (0, 0, 0)
    with sessions() as session:
        expiries = session.scalars(
            select(Transfer).where(
                Transfer.grant_id == expiring, Transfer.category == Category.GRANT_EXPIRY
            )
        ).all()
        row = session.get(CreditGrant, expiring)
    assert [t.amount_minor for t in expiries] == [500]
    assert (row.remaining_minor, row.expired_minor) == (0, 500)


def test_an_early_or_second_expiry_is_refused_by_the_database(sessions, make_wallet):
    wallet = make_wallet()
    not_yet = _grant(sessions, wallet, 500, expires_at=_soon(3600))
    with sessions.begin() as session:
        expired_to = system_account_id(session, SystemAccount.EXPIRED_CREDITS, "ZAR")
    request = TransferRequest(
        f"early:{uuid.uuid4()}",
        wallet,
        expired_to,
        500,
        "ZAR",
        Category.GRANT_EXPIRY,
        grant_id=not_yet,
    )
    with pytest.raises(InvariantViolation, match="once it has expired"), sessions.begin() as s:
        transfer(s, request)


def test_paid_and_granted_amounts_cannot_be_written_by_hand(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100)
    granted = _grant(sessions, wallet, 100)
    for statement in (
        "UPDATE accounts SET paid_minor = paid_minor + 100, granted_minor = granted_minor - 100"
        " WHERE id = :id",
        "UPDATE credit_grants SET remaining_minor = 0 WHERE wallet_id = :id",
        "DELETE FROM credit_grant_uses",
        "INSERT INTO credit_grants (wallet_id, amount_minor, currency, remaining_minor, reason,"
        " granted_by, funded_by) VALUES (:id, 100, 'ZAR', 100, 'free money', 'me', :id)",
    ):
        refused = r"changes only through|never change by hand|written by the ledger"
        with pytest.raises(DBAPIError, match=refused), sessions.begin() as session:
            session.execute(text(statement), {"id": wallet})
    with sessions() as session:
        assert session.get(CreditGrant, granted).remaining_minor == 100


def test_a_reseller_grant_is_spent_from_the_reseller_wallet(sessions, make_wallet):
    reseller = make_wallet(funded_minor=1000)
    customer = make_wallet()
    with sessions.begin() as session:
        grant.grant_credit(
            session,
            wallet_id=customer,
            amount_minor=400,
            reason="a gift",
            actor="tests",
            from_wallet_id=reseller,
        )
    assert _split(sessions, reseller) == (600, 600, 0)
    assert _split(sessions, customer) == (400, 0, 400)
    with pytest.raises(InsufficientFunds), sessions.begin() as session:
        grant.grant_credit(
            session,
            wallet_id=customer,
            amount_minor=601,
            reason="too generous",
            actor="tests",
            from_wallet_id=reseller,
        )


def test_a_repeated_grant_key_grants_once(sessions, make_wallet):
    wallet = make_wallet()
    ids = {_grant(sessions, wallet, 300, idempotency_key=f"promo-{wallet}") for _ in range(2)}
    assert len(ids) == 1
    assert _split(sessions, wallet) == (300, 0, 300)


def test_spends_racing_an_expiry_never_spend_expired_credit_nor_lose_a_cent(sessions, make_wallet):
    paid_minor, granted_minor, price_minor = 1000, 5000, 7
    wallet = make_wallet(funded_minor=paid_minor)
    expires_at = _soon(1.0)
    expiring = _grant(sessions, wallet, granted_minor, expires_at=expires_at)
    spent: list[int] = []
    stop = threading.Event()

    def spender() -> None:
        while not stop.is_set():
            try:
                spent.append(_spend(sessions, wallet, price_minor))
            except InsufficientFunds:
                time.sleep(0.01)

    def expirer() -> None:
        while not stop.is_set():
            with sessions.begin() as session:
                grant.expire_due(session)
            time.sleep(0.005)

    threads = [threading.Thread(target=spender) for _ in range(4)]
    threads.append(threading.Thread(target=expirer))
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()

    with sessions() as session:
        row = session.get(CreditGrant, expiring)
        uses = session.scalars(
            select(CreditGrantUse).where(CreditGrantUse.grant_id == expiring)
        ).all()
        balance = current_balance(session, wallet)
    with sessions() as session:
        assert verify(session) == []
    used = sum(use.amount_minor for use in uses)
    assert row.expired_minor > 0  # the race happened: the grant was still there at expiry
    assert all(use.at < expires_at for use in uses)
    assert used + row.expired_minor == granted_minor
    assert row.remaining_minor == 0
    assert balance.balance_minor == paid_minor + granted_minor - price_minor * len(spent) - (
        row.expired_minor
    )
    assert balance.granted_minor == 0
    assert balance.paid_minor >= 0  # no spend drew on expired credit by going into debt


def settlement_applied(sessions, topup_id, amount_minor) -> bool:
    event = stored_event(sessions, reference=topup_id, amount_minor=amount_minor)
    return settlement_apply(sessions, event)


def settlement_apply(sessions, inbox_id) -> bool:
    with sessions.begin() as session:
        statuses = settlement.apply_inbox(session, now=datetime.now(UTC), only=[inbox_id])
    return statuses.get(inbox_id) == "applied"


def _payment_of(sessions, topup_id):
    with sessions() as session:
        return session.get(Topup, topup_id).payment_id


def test_verify_finds_a_split_written_behind_the_ledgers_back(fresh_database_url):
    engine = make_engine(fresh_database_url)
    sessions = make_session_factory(engine)
    try:
        with sessions.begin() as session:
            wallet = open_wallet(session, "tampered", "ZAR")
            session.flush()
            wallet_id = wallet.id
        grant_id = _grant(sessions, wallet_id, 400)
        with sessions.begin() as session:
            # As a superuser restoring a dump would: with every trigger switched off.
            session.execute(text("SET LOCAL session_replication_role = replica"))
            session.execute(
                text("UPDATE credit_grants SET remaining_minor = 100 WHERE id = :id"),
                {"id": grant_id},
            )
        with sessions() as session:
            found = {(b.check, b.subject) for b in verify(session)}
        assert found == {
            ("paid_and_granted", f"wallet {wallet_id}"),
            ("grant_accounted", f"grant {grant_id}"),
        }
    finally:
        engine.dispose()


def test_the_scheduler_expires_every_grant_that_fell_due_while_it_was_down(
    engine, sessions, make_wallet, broker_url
):
    wallet = make_wallet()
    due = [_grant(sessions, wallet, 100 + i, expires_at=_soon(0.3)) for i in range(3)]
    later = _grant(sessions, wallet, 1000, expires_at=_soon(3600))
    time.sleep(0.4)  # the scheduler was not running when they expired

    Scheduler(engine, JobSender(broker_url)).tick()

    with sessions() as session:
        rows = {g: session.get(CreditGrant, g) for g in [*due, later]}
    assert [(rows[g].remaining_minor, rows[g].expired_minor) for g in due] == [
        (0, 100),
        (0, 101),
        (0, 102),
    ]
    assert (rows[later].remaining_minor, rows[later].expired_minor) == (1000, 0)
    assert _split(sessions, wallet) == (1000, 0, 1000)
