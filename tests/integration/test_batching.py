"""Workers claim waiting inbox events in batches: captures that settle their top-ups go through
the set path in a few statements, everything else row by row, none twice, whatever runs beside
it."""

from __future__ import annotations

import threading
import uuid

from sqlalchemy import event, func, select

from ledger import settlement
from ledger.account import system_account_id
from ledger.models import Category, InboxEvent, OutboxEvent, SystemAccount, Topup, Transfer
from ledger.topup import create_topup
from ledger.transfer import TransferRequest, transfer
from ledger.verify import verify

from .test_settlement import NOW, stored_event


def captures(sessions, wallet, count, amount_minor=100):
    """`count` top-ups of the wallet, each with its capture waiting in the inbox."""
    events = []
    for _ in range(count):
        with sessions.begin() as session:
            topup = create_topup(
                session, wallet_id=wallet, amount_minor=amount_minor, gateway="stripe"
            )
        events.append(stored_event(sessions, reference=topup.id, amount_minor=amount_minor))
    return events


def statuses(sessions, events):
    with sessions() as session:
        rows = session.execute(
            select(InboxEvent.id, InboxEvent.status).where(InboxEvent.id.in_(events))
        )
        return dict(rows.all())


def apply_batch(sessions, events, limit=settlement.BATCH_MAX_DEFAULT):
    """One worker transaction over these events (other tests' rows are left alone)."""
    with sessions.begin() as session:
        return settlement.apply_inbox(session, now=NOW, limit=limit, only=events)


def credits_to(sessions, wallet):
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.credit_account_id == wallet)
        )


class StatementCounter:
    """Counts the statements an engine sends while it is installed."""

    def __init__(self, engine):
        self.engine = engine
        self.statements = []

    def __enter__(self):
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement.split(None, 1)[0].upper())


def test_a_batch_of_captures_is_applied_in_a_handful_of_statements(
    sessions, engine, make_wallet, balance_of
):
    wallets = [make_wallet() for _ in range(4)]
    events = [e for wallet in wallets for e in captures(sessions, wallet, 8)]
    with sessions() as session:  # the clearing account exists, and this process knows it
        system_account_id(session, SystemAccount.clearing("stripe"), "ZAR")
    with StatementCounter(engine) as counted:
        applied = apply_batch(sessions, events)
    assert applied == dict.fromkeys(events, "applied")
    assert [balance_of(wallet).balance_minor for wallet in wallets] == [800] * 4
    # Claim, lock the top-ups, insert the transfers, settle top-ups and inbox rows, insert
    # the outbox events, inside a savepoint: the same for 32 events as for one.
    assert len(counted.statements) <= 8, counted.statements
    assert counted.statements.count("INSERT") == 2


def test_every_credit_is_announced_with_the_balance_it_left(sessions, make_wallet):
    wallet = make_wallet()
    events = captures(sessions, wallet, 5, amount_minor=100)
    apply_batch(sessions, events)
    with sessions() as session:
        payloads = session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.wallet_id == wallet, OutboxEvent.event_type == "wallet.credited")
            .order_by(OutboxEvent.id)
        ).all()
    assert [p["balance_minor"] for p in payloads] == [100, 200, 300, 400, 500]
    assert {p["amount_minor"] for p in payloads} == {100}


def test_redelivered_events_are_not_claimed_again(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    events = captures(sessions, wallet, 10)
    assert len(apply_batch(sessions, events)) == 10
    assert apply_batch(sessions, events) == {}
    assert balance_of(wallet).balance_minor == 1000
    assert credits_to(sessions, wallet) == 10


def test_a_batch_takes_at_most_its_bound_oldest_first(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    events = captures(sessions, wallet, 10)
    assert sorted(apply_batch(sessions, events, limit=4)) == events[:4]
    assert list(statuses(sessions, events).values()).count("received") == 6
    assert balance_of(wallet).balance_minor == 400


def test_rows_the_set_path_cannot_take_go_one_by_one_beside_it(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    good = captures(sessions, wallet, 3)
    with sessions.begin() as session:
        odd = create_topup(session, wallet_id=wallet, amount_minor=100, gateway="stripe")
        failing = create_topup(session, wallet_id=wallet, amount_minor=100, gateway="stripe")
    wrong_amount = stored_event(sessions, reference=odd.id, amount_minor=999)
    failure = stored_event(sessions, kind="payment_failed", reference=failing.id)
    unknown = stored_event(sessions, reference=f"not-a-uuid-{uuid.uuid4()}")
    early_refund = stored_event(sessions, kind="refund_succeeded", amount_minor=100)
    applied = apply_batch(sessions, [*good, wrong_amount, failure, unknown, early_refund])
    assert applied == {
        **dict.fromkeys(good, "applied"),
        wrong_amount: "needs_review",
        failure: "applied",
        unknown: "needs_review",
        early_refund: "parked",
    }
    assert balance_of(wallet).balance_minor == 300
    with sessions() as session:
        assert session.get(Topup, odd.id).status == "pending"
        assert session.get(Topup, failing.id).status == "failed"


def test_two_captures_of_one_top_up_in_one_batch_credit_it_once(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    with sessions.begin() as session:
        topup = create_topup(session, wallet_id=wallet, amount_minor=700, gateway="stripe")
    paid, other = (f"pi_{uuid.uuid4().hex[:12]}" for _ in range(2))
    first = stored_event(sessions, reference=topup.id, amount_minor=700, payment_id=paid)
    second = stored_event(sessions, reference=topup.id, amount_minor=700, payment_id=other)
    repeat = stored_event(sessions, reference=topup.id, amount_minor=700, payment_id=paid)
    applied = apply_batch(sessions, [first, second, repeat])
    assert applied == {first: "applied", second: "needs_review", repeat: "applied"}
    assert balance_of(wallet).balance_minor == 700
    assert credits_to(sessions, wallet) == 1


def test_a_row_the_ledger_refuses_is_set_aside_and_the_others_go_on(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet()
    events = captures(sessions, wallet, 3)
    with sessions.begin() as session:
        broken = create_topup(session, wallet_id=wallet, amount_minor=100, gateway="stripe")
        # Something else already used this top-up's credit key, for another amount.
        transfer(
            session,
            TransferRequest(
                idempotency_key=f"topup:{broken.id}",
                debit_account_id=system_account_id(session, SystemAccount.ADJUSTMENTS, "ZAR"),
                credit_account_id=wallet,
                amount_minor=1,
                currency="ZAR",
                category=Category.ADJUSTMENT,
            ),
        )
    refused = stored_event(sessions, reference=broken.id, amount_minor=100)
    applied = apply_batch(sessions, [*events, refused])
    assert applied == {**dict.fromkeys(events, "applied"), refused: "needs_review"}
    assert balance_of(wallet).balance_minor == 300 + 1
    with sessions() as session:
        reason = session.get(InboxEvent, refused).status_reason
    assert reason.startswith("refused by the ledger: IdempotencyConflict")


def test_racing_workers_on_one_hot_wallet_apply_every_capture_once(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet()
    events = captures(sessions, wallet, 96)
    threads_count = 8
    start = threading.Barrier(threads_count)
    failures = []

    def work():
        start.wait()
        try:
            while apply_batch(sessions, events, limit=8):
                pass
        except Exception as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert set(statuses(sessions, events).values()) == {"applied"}
    assert balance_of(wallet).balance_minor == 9600
    assert credits_to(sessions, wallet) == 96
    with sessions() as session:
        assert [b for b in verify(session) if str(wallet) in str(b)] == []


def test_racing_workers_over_many_wallets_never_deadlock(sessions, make_wallet, balance_of):
    wallets = [make_wallet() for _ in range(6)]
    # Interleaved, so every batch holds captures of several wallets in no particular order.
    per_wallet = [captures(sessions, wallet, 16) for wallet in wallets]
    events = [e for group in zip(*per_wallet, strict=True) for e in group][::-1]
    threads_count = 6
    start = threading.Barrier(threads_count)
    failures = []

    def work():
        start.wait()
        try:
            while apply_batch(sessions, events, limit=12):
                pass
        except Exception as exc:  # a deadlock would surface here
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert [balance_of(wallet).balance_minor for wallet in wallets] == [1600] * 6
