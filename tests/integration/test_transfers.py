"""Posting transfers: balances, idempotency, refusals."""

from __future__ import annotations

import uuid

import pytest

from ledger.account import system_account_id
from ledger.errors import (
    AccountNotFound,
    CurrencyMismatch,
    IdempotencyConflict,
    InsufficientFunds,
    InvariantViolation,
)
from ledger.models import Category, SystemAccount
from ledger.transfer import TransferRequest, transfer, transfer_many


def pay(
    session,
    wallet_id,
    amount_minor,
    key,
    *,
    currency="ZAR",
    forced=False,
    category=Category.ORDER_PAYMENT,
):
    revenue = system_account_id(session, SystemAccount.REVENUE, currency)
    return transfer(
        session,
        TransferRequest(
            idempotency_key=key,
            debit_account_id=wallet_id,
            credit_account_id=revenue,
            amount_minor=amount_minor,
            currency=currency,
            category=category,
            forced=forced,
        ),
    )


def test_a_payment_moves_money_from_the_wallet(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=2000)
    with sessions.begin() as session:
        applied = pay(session, wallet, 300, f"order:{uuid.uuid4()}")
    assert not applied.replayed
    assert applied.transfer.amount_minor == 300
    balance = balance_of(wallet)
    assert (balance.balance_minor, balance.available_minor) == (1700, 1700)


def test_same_key_same_payload_returns_the_original(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=2000)
    key = f"order:{uuid.uuid4()}"
    with sessions.begin() as session:
        first = pay(session, wallet, 300, key)
    with sessions.begin() as session:
        second = pay(session, wallet, 300, key)
    assert second.replayed
    assert second.transfer.id == first.transfer.id
    assert balance_of(wallet).balance_minor == 1700


def test_same_key_different_payload_is_a_conflict(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=2000)
    key = f"order:{uuid.uuid4()}"
    with sessions.begin() as session:
        pay(session, wallet, 300, key)
    with pytest.raises(IdempotencyConflict), sessions.begin() as session:
        pay(session, wallet, 301, key)
    assert balance_of(wallet).balance_minor == 1700


def test_spending_beyond_available_is_refused_and_moves_nothing(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=500)
    with pytest.raises(InsufficientFunds), sessions.begin() as session:
        pay(session, wallet, 501, f"order:{uuid.uuid4()}")
    assert balance_of(wallet).balance_minor == 500


def test_overdraft_limit_allows_spending_below_zero_up_to_the_limit(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=100, overdraft_limit_minor=50)
    with sessions.begin() as session:
        pay(session, wallet, 150, f"order:{uuid.uuid4()}")
    assert balance_of(wallet).balance_minor == -50
    with pytest.raises(InsufficientFunds), sessions.begin() as session:
        pay(session, wallet, 1, f"order:{uuid.uuid4()}")


def test_forced_facts_create_debt_that_blocks_spending(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=100)
    with sessions.begin() as session:
        pay(session, wallet, 250, f"usage:{uuid.uuid4()}", forced=True, category=Category.USAGE)
    assert balance_of(wallet).balance_minor == -150
    with pytest.raises(InsufficientFunds), sessions.begin() as session:
        pay(session, wallet, 1, f"order:{uuid.uuid4()}")


def test_only_facts_that_happened_may_be_forced(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100)
    with (
        pytest.raises(InvariantViolation, match="forced_only_for_facts"),
        sessions.begin() as session,
    ):
        pay(session, wallet, 250, f"order:{uuid.uuid4()}", forced=True)


def test_currencies_never_mix(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100)
    with pytest.raises(CurrencyMismatch, match="ZAR"), sessions.begin() as session:
        pay(session, wallet, 10, f"order:{uuid.uuid4()}", currency="USD")


def test_unknown_account_is_named(sessions):
    missing = uuid.uuid4()
    with pytest.raises(AccountNotFound, match=str(missing)), sessions.begin() as session:
        pay(session, missing, 10, f"order:{uuid.uuid4()}")


def test_wallet_to_wallet_transfers_in_both_directions(sessions, make_wallet, balance_of):
    alice, bob = make_wallet(funded_minor=1000), make_wallet(funded_minor=1000)
    with sessions.begin() as session:
        for debit, credit in ((alice, bob), (bob, alice), (alice, bob)):
            transfer(
                session,
                TransferRequest(f"t:{uuid.uuid4()}", debit, credit, 100, "ZAR", Category.TRANSFER),
            )
    assert balance_of(alice).balance_minor == 900
    assert balance_of(bob).balance_minor == 1100


def requests_for(session, wallet_id, amounts, prefix):
    revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
    return [
        TransferRequest(f"{prefix}:{i}", wallet_id, revenue, amount, "ZAR", Category.ORDER_PAYMENT)
        for i, amount in enumerate(amounts)
    ]


def test_a_batch_applies_in_one_statement_and_replays_per_request(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=1000)
    prefix = f"batch:{uuid.uuid4()}"
    with sessions.begin() as session:
        first = transfer_many(session, requests_for(session, wallet, [100, 200], prefix))
    assert [a.replayed for a in first] == [False, False]
    with sessions.begin() as session:
        again = transfer_many(session, requests_for(session, wallet, [100, 200, 300], prefix))
    assert [a.replayed for a in again] == [True, True, False]
    assert [a.transfer.id for a in again[:2]] == [a.transfer.id for a in first]
    assert balance_of(wallet).balance_minor == 400


def test_a_batch_is_all_or_nothing(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    with pytest.raises(InsufficientFunds), sessions.begin() as session:
        transfer_many(session, requests_for(session, wallet, [600, 600], f"b:{uuid.uuid4()}"))
    assert balance_of(wallet).balance_minor == 1000


def test_a_batch_conflicts_like_a_single_transfer(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    prefix = f"batch:{uuid.uuid4()}"
    with sessions.begin() as session:
        transfer_many(session, requests_for(session, wallet, [100], prefix))
    with pytest.raises(IdempotencyConflict), sessions.begin() as session:
        transfer_many(session, requests_for(session, wallet, [150, 100], prefix))
    with pytest.raises(ValueError, match="same idempotency key"), sessions.begin() as session:
        transfer_many(session, requests_for(session, wallet, [1], prefix) * 2)
    assert balance_of(wallet).balance_minor == 900
