"""A hot wallet: the worker applying one of its captures applies its other waiting captures in
the same transaction, each decided on its own, none twice, whatever runs beside it."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from ledger import settlement
from ledger.models import InboxEvent, Topup, Transfer
from ledger.topup import create_topup
from ledger.verify import verify

from .test_settlement import NOW, apply, stored_event


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


def apply_batch(sessions, inbox_id, batch_max=settlement.BATCH_MAX_DEFAULT):
    with sessions.begin() as session:
        return settlement.apply_gateway_event(session, inbox_id, now=NOW, batch_max=batch_max)


def topup_credits(sessions, wallet):
    with sessions() as session:
        return session.scalar(
            select(func.count()).select_from(Transfer).where(Transfer.credit_account_id == wallet)
        )


def test_one_job_applies_the_wallets_waiting_captures_in_one_transaction(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet()
    events = captures(sessions, wallet, 10)
    applied = apply_batch(sessions, events[3])
    assert set(applied) == set(events)
    assert set(applied.values()) == {"applied"}
    assert balance_of(wallet).balance_minor == 1000
    # Their own jobs arrive afterwards and find them settled: nothing more to decide.
    for event in events:
        assert apply_batch(sessions, event) == {}
    assert balance_of(wallet).balance_minor == 1000
    assert topup_credits(sessions, wallet) == 10


def test_a_batch_takes_at_most_its_bound(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    events = captures(sessions, wallet, 10)
    assert len(apply_batch(sessions, events[0], batch_max=4)) == 4
    assert list(statuses(sessions, events).values()).count("received") == 6
    assert balance_of(wallet).balance_minor == 400


def test_a_companion_that_needs_review_does_not_stop_the_others(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    events = captures(sessions, wallet, 3)
    with sessions.begin() as session:
        odd = create_topup(session, wallet_id=wallet, amount_minor=100, gateway="stripe")
    wrong_amount = stored_event(sessions, reference=odd.id, amount_minor=999)
    applied = apply_batch(sessions, events[0])
    assert applied[wrong_amount] == "needs_review"
    assert balance_of(wallet).balance_minor == 300
    with sessions() as session:
        assert session.get(Topup, odd.id).status == "pending"


def test_another_wallets_captures_and_other_kinds_are_left_to_their_own_jobs(sessions, make_wallet):
    hot, other = make_wallet(), make_wallet()
    mine = captures(sessions, hot, 2)
    theirs = captures(sessions, other, 2)
    with sessions.begin() as session:
        failing = create_topup(session, wallet_id=hot, amount_minor=100, gateway="stripe")
    failure = stored_event(sessions, kind="payment_failed", reference=failing.id)
    assert set(apply_batch(sessions, mine[0])) == set(mine)
    assert statuses(sessions, [*theirs, failure]) == dict.fromkeys([*theirs, failure], "received")


def test_racing_workers_on_one_hot_wallet_apply_every_capture_once(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet()
    events = captures(sessions, wallet, 48)
    threads_count = 8
    start = threading.Barrier(threads_count)
    failures = []

    def work(mine):
        start.wait()
        try:
            for event in mine:
                apply_batch(sessions, event, batch_max=8)
        except Exception as exc:  # reported below, with the thread's events
            failures.append((mine, exc))

    threads = [
        threading.Thread(target=work, args=(events[i::threads_count],))
        for i in range(threads_count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert set(statuses(sessions, events).values()) == {"applied"}
    assert balance_of(wallet).balance_minor == 4800
    assert topup_credits(sessions, wallet) == 48
    with sessions() as session:
        assert [b for b in verify(session) if str(wallet) in str(b)] == []


def test_the_same_event_applied_by_two_workers_at_once_credits_once(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet()
    [event] = captures(sessions, wallet, 1, amount_minor=2500)
    start = threading.Barrier(4)
    results = []

    def work():
        start.wait()
        results.append(apply(sessions, event))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == ["applied"] * 4
    assert balance_of(wallet).balance_minor == 2500
    assert topup_credits(sessions, wallet) == 1


def test_a_reference_that_is_no_top_up_id_brings_no_companions(sessions):
    event = stored_event(sessions, reference=f"not-a-uuid-{uuid.uuid4()}")
    assert apply_batch(sessions, event) == {event: "needs_review"}


def test_a_companion_that_fails_is_rolled_back_alone_and_left_to_its_own_job(
    sessions, make_wallet, balance_of
):
    from ledger.account import system_account_id
    from ledger.errors import IdempotencyConflict
    from ledger.models import Category, SystemAccount
    from ledger.transfer import TransferRequest, transfer

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
    failing = stored_event(sessions, reference=broken.id, amount_minor=100)
    applied = apply_batch(sessions, events[0])
    assert set(applied) == set(events)
    assert statuses(sessions, [failing]) == {failing: "received"}
    assert balance_of(wallet).balance_minor == 300 + 1
    with pytest.raises(IdempotencyConflict):  # its own job reports the trouble
        apply_batch(sessions, failing)
