"""Usage billed by the set path: a batch of pending records charged in a handful of statements,
once each however many billers race and however often a doorbell rings, with the per-record
path only for what the database refuses in a batch.

Each test has a database of its own: a biller claims every pending record, so counting what
it billed is exact only where every record is the test's own.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, func, select, text, update

from ledger.account import get_wallet, open_wallet, system_account_id, wallet_balance
from ledger.adjustment import Direction, adjust
from ledger.db import make_engine, make_session_factory
from ledger.models import OutboxEvent, SystemAccount, Transfer, UsageRecord
from ledger.usage import UsageInput, bill_pending, record_many, wallets_of
from ledger.verify import verify


@pytest.fixture
def own(fresh_database_url):
    engine = make_engine(fresh_database_url, pool_size=10)
    yield engine, make_session_factory(engine)
    engine.dispose()


def wallet(sessions, funded_minor=0, currency="ZAR"):
    with sessions.begin() as session:
        account = open_wallet(session, f"owner-{uuid.uuid4()}", currency)
        session.flush()
        if funded_minor:
            adjust(
                session,
                wallet_id=account.id,
                direction=Direction.CREDIT,
                amount_minor=funded_minor,
                reason="test funding",
                actor="tests",
            )
        return account.id


def report(sessions, records):
    """Store (wallet id, usage id, amount) records as a service's batch would."""
    inputs = [
        UsageInput(
            usage_id=usage_id,
            wallet_id=wallet_id,
            resource_id="vm-1",
            description="cpu hour",
            amount_minor=amount,
            occurred_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
        for wallet_id, usage_id, amount in records
    ]
    with sessions.begin() as session:
        currencies = {
            w: ref.currency for w, ref in wallets_of(session, [i.wallet_id for i in inputs]).items()
        }
        return record_many(session, inputs, currencies)


def balance(sessions, wallet_id):
    with sessions() as session:
        return wallet_balance(get_wallet(session, wallet_id)).balance_minor


def count(sessions, model, *where):
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def bill_all(sessions, limit):
    """Bill until a round bills nothing (a refused record stays pending: claimed, not billed)."""
    rounds = []
    while True:
        with sessions.begin() as session:
            done = bill_pending(session, limit=limit)
        if not done.billed:
            return rounds
        rounds.append(done)


def test_a_batch_bills_every_record_once_and_announces_each_new_debt_once(own):
    _, sessions = own
    rich, poor = wallet(sessions, funded_minor=10_000), wallet(sessions, funded_minor=1000)
    report(
        sessions,
        [(rich, f"r-{n}", 100) for n in range(10)]
        + [(poor, "p-1", 600), (poor, "p-2", 600), (poor, "p-3", 600)],
    )
    rounds = bill_all(sessions, limit=50)
    assert [(r.claimed, r.billed) for r in rounds] == [(13, 13)]
    assert balance(sessions, rich) == 9000
    assert balance(sessions, poor) == -800
    with sessions() as session:
        [negative] = session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.wallet_id == poor, OutboxEvent.event_type == "wallet.negative"
            )
        )
        assert negative.payload["cause"] == f"usage-record:{poor}:p-2"  # the one that crossed
        assert negative.payload["debt_minor"] == 800
    with sessions() as session:
        assert verify(session) == []
    assert count(sessions, UsageRecord, UsageRecord.status == "pending") == 0


def test_racing_billers_charge_every_record_exactly_once(own):
    _, sessions = own
    wallets = [wallet(sessions, funded_minor=5000) for _ in range(6)]
    # Interleaved over the wallets, so every batch touches several wallets in a mixed order.
    report(sessions, [(wallets[n % 6], f"u-{n}", 10 + n % 7) for n in range(600)])
    errors = []

    def biller():
        try:
            bill_all(sessions, limit=40)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=biller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert count(sessions, Transfer, Transfer.category == "usage") == 600
    for index, wallet_id in enumerate(wallets):
        charged = sum(10 + n % 7 for n in range(600) if n % 6 == index)
        assert balance(sessions, wallet_id) == 5000 - charged
    with sessions() as session:
        assert verify(session) == []


def test_a_redelivered_doorbell_and_a_lost_status_never_charge_twice(own):
    _, sessions = own
    wallet_id = wallet(sessions, funded_minor=1000)
    report(sessions, [(wallet_id, "u-1", 300), (wallet_id, "u-2", 200)])
    bill_all(sessions, limit=10)
    assert bill_all(sessions, limit=10) == []  # the doorbell again: nothing pending
    with sessions.begin() as session:  # even if the record's status were lost...
        session.execute(
            update(UsageRecord).where(UsageRecord.wallet_id == wallet_id).values(status="pending")
        )
    [again] = bill_all(sessions, limit=10)
    assert (again.claimed, again.billed) == (2, 2)  # ...the transfers' keys replay
    assert balance(sessions, wallet_id) == 500
    assert count(sessions, Transfer, Transfer.debit_account_id == wallet_id) == 2


def test_a_record_the_database_refuses_falls_back_alone_and_stays_pending(own):
    _, sessions = own
    good, other = wallet(sessions, funded_minor=1000), wallet(sessions, funded_minor=1000)
    report(sessions, [(good, "g-1", 100), (other, "o-1", 100)])
    with sessions.begin() as session:  # a record whose currency is not its wallet's
        session.execute(
            text(
                "INSERT INTO usage_records"
                " (wallet_id, id, resource_id, description, amount_minor, currency, occurred_at)"
                " VALUES (:w, 'bad', 'vm-1', 'cpu', 100, 'USD', now())"
            ),
            {"w": good},
        )
    [done] = bill_all(sessions, limit=10)
    assert (done.claimed, done.billed) == (3, 2)
    assert balance(sessions, good) == 900
    assert balance(sessions, other) == 900
    with sessions() as session:
        assert session.get(UsageRecord, (good, "bad")).status == "pending"
    with sessions() as session:
        assert verify(session) == []


def statements_to_bill(engine, sessions, size):
    wallets = [wallet(sessions, funded_minor=100_000) for _ in range(3)]
    report(sessions, [(wallets[n % 3], f"s-{size}-{n}", 5) for n in range(size)])
    seen = []

    def count_one(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count_one)
    try:
        with sessions.begin() as session:
            done = bill_pending(session, limit=size)
    finally:
        event.remove(engine, "before_cursor_execute", count_one)
    assert (done.claimed, done.billed) == (size, size)
    return len(seen)


def test_k_records_are_billed_in_the_same_few_statements_whatever_k_is(own):
    engine, sessions = own
    with sessions.begin() as session:  # the revenue account exists once it was used once
        system_account_id(session, SystemAccount.REVENUE, "ZAR")
    small = statements_to_bill(engine, sessions, 10)
    large = statements_to_bill(engine, sessions, 300)
    # Claim, lock the wallets, savepoint, one INSERT of every transfer, release, one UPDATE.
    assert (small, large) == (6, 6)
