"""Holds: a pending transfer reduces available funds until it is posted, voided or expires."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from ledger.account import Totals, account_totals, system_account_id
from ledger.errors import (
    InsufficientFunds,
    PendingAlreadyResolved,
    PendingExpired,
    PendingNotFound,
    PostExceedsPending,
)
from ledger.models import Category, SystemAccount, TransferKind
from ledger.transfer import TransferRequest, post_pending, transfer, void_expired, void_pending


def place_hold(sessions, wallet_id, amount_minor, *, expires_in=timedelta(hours=1)):
    with sessions.begin() as session:
        holds = system_account_id(session, SystemAccount.HOLDS, "ZAR")
        return transfer(
            session,
            TransferRequest(
                idempotency_key=f"hold:{uuid.uuid4()}",
                debit_account_id=wallet_id,
                credit_account_id=holds,
                amount_minor=amount_minor,
                currency="ZAR",
                category=Category.HOLD,
                expires_at=datetime.now(UTC) + expires_in,
            ),
        ).transfer


def test_a_hold_reduces_available_but_not_balance(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400)
    assert hold.kind == TransferKind.PENDING
    balance = balance_of(wallet)
    assert (balance.balance_minor, balance.available_minor, balance.held_minor) == (1000, 600, 400)


def test_holds_cannot_exceed_available(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)
    place_hold(sessions, wallet, 700)
    with pytest.raises(InsufficientFunds):
        place_hold(sessions, wallet, 301)


def test_posting_in_full_charges_the_hold(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400)
    with sessions.begin() as session:
        posted = post_pending(session, hold.id, idempotency_key=f"post:{hold.id}").transfer
    assert (posted.kind, posted.amount_minor) == (TransferKind.POST_PENDING, 400)
    balance = balance_of(wallet)
    assert (balance.balance_minor, balance.available_minor, balance.held_minor) == (600, 600, 0)


def test_posting_partially_releases_the_rest(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400)
    with sessions.begin() as session:
        post_pending(session, hold.id, idempotency_key=f"post:{hold.id}", amount_minor=150)
    balance = balance_of(wallet)
    assert (balance.balance_minor, balance.available_minor, balance.held_minor) == (850, 850, 0)


def test_posting_more_than_held_is_refused(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400)
    with pytest.raises(PostExceedsPending), sessions.begin() as session:
        post_pending(session, hold.id, idempotency_key=f"post:{hold.id}", amount_minor=401)
    assert balance_of(wallet).held_minor == 400


def test_voiding_releases_everything(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400)
    with sessions.begin() as session:
        void_pending(session, hold.id, idempotency_key=f"void:{hold.id}")
    balance = balance_of(wallet)
    assert (balance.balance_minor, balance.available_minor, balance.held_minor) == (1000, 1000, 0)


def test_a_hold_is_resolved_once(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400)
    with sessions.begin() as session:
        post_pending(session, hold.id, idempotency_key=f"post:{hold.id}")
    with sessions.begin() as session:  # the same request again: the first result
        assert post_pending(session, hold.id, idempotency_key=f"post:{hold.id}").replayed
    with pytest.raises(PendingAlreadyResolved), sessions.begin() as session:
        void_pending(session, hold.id, idempotency_key=f"void:{hold.id}")
    with pytest.raises(PendingAlreadyResolved), sessions.begin() as session:
        post_pending(session, hold.id, idempotency_key=f"post-again:{hold.id}")
    assert balance_of(wallet).balance_minor == 600


def test_racing_post_and_void_resolve_once(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    holds = [place_hold(sessions, wallet, 100) for _ in range(5)]

    def resolve(args):
        hold, action = args
        try:
            with sessions.begin() as session:
                action(session, hold.id, idempotency_key=f"{action.__name__}:{hold.id}")
            return action.__name__
        except PendingAlreadyResolved:
            return "refused"

    jobs = [(hold, action) for hold in holds for action in (post_pending, void_pending)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = list(pool.map(resolve, jobs))
    assert outcomes.count("refused") == 5
    posted = outcomes.count("post_pending")
    balance = balance_of(wallet)
    assert balance.held_minor == 0
    assert balance.balance_minor == 1000 - 100 * posted


def test_only_pending_transfers_can_be_resolved(sessions):
    with pytest.raises(PendingNotFound), sessions.begin() as session:
        void_pending(session, 2**62, idempotency_key=f"void:{uuid.uuid4()}")


def test_an_expired_hold_cannot_be_posted_and_is_voided_by_expiry(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=1000)
    hold = place_hold(sessions, wallet, 400, expires_in=timedelta(milliseconds=300))
    time.sleep(0.4)
    with pytest.raises(PendingExpired), sessions.begin() as session:
        post_pending(session, hold.id, idempotency_key=f"post:{hold.id}")
    with sessions.begin() as session:
        voided = void_expired(session, datetime.now(UTC))
    assert hold.id in {v.pending_id for v in voided}
    balance = balance_of(wallet)
    assert (balance.balance_minor, balance.available_minor) == (1000, 1000)
    with sessions.begin() as session:
        assert hold.id not in {v.pending_id for v in void_expired(session, datetime.now(UTC))}


def test_system_account_totals_are_derived_from_their_transfers(sessions, make_wallet):
    # CHF is used by no other test, so these system accounts see only this test's transfers.
    wallet = make_wallet(funded_minor=1000, currency="CHF")
    with sessions.begin() as session:
        holds = system_account_id(session, SystemAccount.HOLDS, "CHF")
        adjustments = system_account_id(session, SystemAccount.ADJUSTMENTS, "CHF")
        placed = [
            transfer(
                session,
                TransferRequest(
                    f"hold:{uuid.uuid4()}",
                    wallet,
                    holds,
                    amount,
                    "CHF",
                    Category.HOLD,
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                ),
            ).transfer
            for amount in (300, 200)
        ]
    with sessions.begin() as session:
        post_pending(
            session, placed[0].id, idempotency_key=f"post:{placed[0].id}", amount_minor=120
        )
    with sessions() as session:
        assert account_totals(session, holds) == Totals(0, 120, 0, 200)
        assert account_totals(session, adjustments) == Totals(1000, 0, 0, 0)
        assert account_totals(session, wallet) == Totals(120, 1000, 200, 0)
