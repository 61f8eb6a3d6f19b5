"""Gateway events applied to the ledger: once, never guessed, in any order."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from ledger import inbox, settlement
from ledger.account import system_account_id
from ledger.errors import InsufficientFunds
from ledger.models import Category, InboxEvent, SystemAccount, Topup
from ledger.transfer import TransferRequest, transfer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def stored_event(
    sessions,
    *,
    kind="payment_succeeded",
    reference=None,
    amount_minor=5000,
    currency="ZAR",
    gateway="stripe",
    payment_id="",
    event_id=None,
):
    """Store a verified event; `payment_id` "" picks a fresh one, None stores none."""
    with sessions.begin() as session:
        return inbox.record(
            session,
            inbox.IncomingEvent(
                gateway=gateway,
                event_id=event_id or f"evt_{uuid.uuid4().hex}",
                kind=kind,
                actionable=True,
                payment_id=f"pi_{uuid.uuid4().hex[:12]}" if payment_id == "" else payment_id,
                amount_minor=amount_minor,
                currency=currency,
                reference=None if reference is None else str(reference),
                payment_method=None,
                occurred_at=None,
                payload={"id": str(uuid.uuid4())},
                body=b"{}",
                headers={},
            ),
        ).inbox_id


def apply(sessions, inbox_id, now=NOW):
    """Claim and apply one event as the workers' batch would; its status afterwards."""
    with sessions.begin() as session:
        settlement.apply_inbox(session, now=now, only=[inbox_id])
    with sessions() as session:
        return session.get(InboxEvent, inbox_id).status


def row(sessions, model, key):
    with sessions() as session:
        return session.get(model, key)


def test_a_captured_payment_credits_the_wallet_once(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    event = stored_event(sessions, reference=topup_id, payment_id="pi_1")
    assert apply(sessions, event) == "applied"
    assert apply(sessions, event) == "applied"  # redelivered: already done
    assert balance_of(wallet).balance_minor == 5000
    settled = row(sessions, Topup, topup_id)
    assert (settled.status, settled.payment_id, settled.credited_minor) == (
        "succeeded",
        "pi_1",
        5000,
    )
    stored = row(sessions, InboxEvent, event)
    # The database's clock, like received_at: comparable whichever machine the worker is on.
    assert stored.received_at <= stored.applied_at <= datetime.now(UTC)


def test_a_second_event_for_the_same_payment_credits_nothing(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_same"))
    again = stored_event(sessions, reference=topup_id, payment_id="pi_same")
    assert apply(sessions, again) == "applied"
    assert balance_of(wallet).balance_minor == 5000


def test_a_second_payment_for_a_settled_topup_goes_to_review(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_a"))
    other = stored_event(sessions, reference=topup_id, payment_id="pi_b")
    assert apply(sessions, other) == "needs_review"
    assert "settled by payment pi_a" in row(sessions, InboxEvent, other).status_reason
    assert balance_of(wallet).balance_minor == 5000


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"reference": "not-a-topup"}, "no top-up matches"),
        ({"reference": uuid.UUID(int=7)}, "no top-up matches"),
        ({"currency": "USD"}, "is in ZAR"),
        ({"gateway": "paystack"}, "via stripe"),
        ({"amount_minor": 4999}, "was for 5000"),
    ],
)
def test_what_does_not_match_is_parked_for_review_never_guessed(
    sessions, topup, balance_of, changes, reason
):
    topup_id, wallet = topup(5000)
    event = stored_event(sessions, **{"reference": topup_id, **changes})
    assert apply(sessions, event) == "needs_review"
    assert reason in row(sessions, InboxEvent, event).status_reason
    assert balance_of(wallet).balance_minor == 0
    assert row(sessions, Topup, topup_id).status == "pending"


def test_failed_then_captured_settles(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    assert (
        apply(
            sessions,
            stored_event(sessions, kind="payment_failed", reference=topup_id, amount_minor=None),
        )
        == "applied"
    )
    assert row(sessions, Topup, topup_id).status == "failed"
    apply(sessions, stored_event(sessions, reference=topup_id))
    assert row(sessions, Topup, topup_id).status == "succeeded"
    assert balance_of(wallet).balance_minor == 5000


def test_a_refund_before_its_capture_waits_then_applies(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    refund = stored_event(
        sessions, kind="refund_succeeded", amount_minor=2000, payment_id="pi_late"
    )
    assert apply(sessions, refund) == "parked"
    parked = row(sessions, InboxEvent, refund)
    assert parked.retry_at == NOW + settlement.PARK_RETRY
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_late"))
    assert apply(sessions, refund, now=NOW + timedelta(minutes=2)) == "applied"
    assert balance_of(wallet).balance_minor == 3000
    assert row(sessions, Topup, topup_id).refunded_minor == 2000


def test_a_refund_may_take_the_wallet_below_zero_and_then_blocks_spending(
    sessions, topup, balance_of
):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_spent"))
    with sessions.begin() as session:
        revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
        transfer(
            session,
            TransferRequest(
                f"o:{uuid.uuid4()}", wallet, revenue, 4000, "ZAR", Category.ORDER_PAYMENT
            ),
        )
    refund = stored_event(
        sessions, kind="refund_succeeded", amount_minor=5000, payment_id="pi_spent"
    )
    assert apply(sessions, refund) == "applied"
    assert balance_of(wallet).balance_minor == -4000
    with pytest.raises(InsufficientFunds), sessions.begin() as session:
        transfer(
            session,
            TransferRequest(f"o:{uuid.uuid4()}", wallet, revenue, 1, "ZAR", Category.ORDER_PAYMENT),
        )


def test_refunds_beyond_what_was_credited_go_to_review(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_r"))
    apply(
        sessions,
        stored_event(sessions, kind="refund_succeeded", amount_minor=3000, payment_id="pi_r"),
    )
    second = stored_event(sessions, kind="refund_succeeded", amount_minor=2001, payment_id="pi_r")
    assert apply(sessions, second) == "needs_review"
    assert balance_of(wallet).balance_minor == 2000


def test_the_same_event_applied_concurrently_credits_once(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    event = stored_event(sessions, reference=topup_id)
    barrier = threading.Barrier(8)

    def race(_):
        barrier.wait()
        with sessions.begin() as session:
            return settlement.apply_inbox(session, now=NOW, only=[event])

    with ThreadPoolExecutor(max_workers=8) as pool:
        decided = list(pool.map(race, range(8)))
    # Whoever claimed it applied it; the others skipped the locked row or found it done.
    assert sorted(map(len, decided)) == [0] * 7 + [1]
    assert row(sessions, InboxEvent, event).status == "applied"
    assert balance_of(wallet).balance_minor == 5000


def test_a_refund_failure_moves_no_money(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_f"))
    failed = stored_event(sessions, kind="refund_failed", amount_minor=5000, payment_id="pi_f")
    assert apply(sessions, failed) == "applied"
    assert balance_of(wallet).balance_minor == 5000


def test_a_refund_failing_after_its_reversal_goes_to_review(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_back"))
    apply(
        sessions,
        stored_event(sessions, kind="refund_succeeded", amount_minor=1000, payment_id="pi_back"),
    )
    failed = stored_event(sessions, kind="refund_failed", amount_minor=1000, payment_id="pi_back")
    assert apply(sessions, failed) == "needs_review"
    assert balance_of(wallet).balance_minor == 4000


def test_a_refund_of_a_payment_never_credited_reverses_nothing(sessions, topup, balance_of):
    # A second payment for a settled top-up goes to review, never credited. Its refund carries
    # the top-up's reference, but must not take the first payment's money back.
    topup_id, wallet = topup(5000)
    first, second = f"pi_{uuid.uuid4().hex}", f"pi_{uuid.uuid4().hex}"
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id=first))
    apply(sessions, stored_event(sessions, reference=topup_id, payment_id=second))
    refund = stored_event(
        sessions, kind="refund_succeeded", reference=topup_id, amount_minor=5000, payment_id=second
    )
    assert apply(sessions, refund) == "parked"
    assert balance_of(wallet).balance_minor == 5000


def test_one_payment_never_settles_two_topups(sessions, topup, balance_of):
    payment = f"pi_{uuid.uuid4().hex}"
    first_id, first_wallet = topup(5000)
    second_id, second_wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=first_id, payment_id=payment))
    again = stored_event(sessions, reference=second_id, payment_id=payment)
    assert apply(sessions, again) == "needs_review"
    assert (balance_of(first_wallet).balance_minor, balance_of(second_wallet).balance_minor) == (
        5000,
        0,
    )


@pytest.mark.parametrize("kind", ["payment_succeeded", "refund_succeeded", "refund_failed"])
def test_an_event_without_a_payment_id_matches_nothing(sessions, topup, balance_of, kind):
    pending_id, pending_wallet = topup(5000)  # a pending top-up has no payment id either
    event = stored_event(sessions, kind=kind, reference=pending_id, payment_id=None)
    assert apply(sessions, event) == "needs_review"
    assert balance_of(pending_wallet).balance_minor == 0
    assert row(sessions, Topup, pending_id).status == "pending"
