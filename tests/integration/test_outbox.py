"""The outbox: every money fact announced once, in its own transaction (its delivery is in
test_delivery)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from ledger import contact, outbox
from ledger.adjustment import Direction, adjust
from ledger.models import OutboxEvent
from ledger.order import create_order, pay_order, refund_order

from .test_settlement import apply, stored_event

HOOK_SECRET = "whsec_" + "b3V0Ym91bmQtd2ViaG9vay1zZWNyZXQ="  # base64 of a test key
WAIT = timedelta(seconds=30)


def events_for(sessions, wallet_id):
    with sessions() as session:
        return list(
            session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.wallet_id == wallet_id)
                .order_by(OutboxEvent.id)
            )
        )


def test_a_credited_topup_is_announced_once(sessions, topup):
    topup_id, wallet = topup(5000)
    event = stored_event(sessions, reference=topup_id, payment_id="pi_announce")
    for _ in range(3):  # the broker and the relay deliver at least once
        assert apply(sessions, event) == "applied"
    [credited] = events_for(sessions, wallet)
    assert credited.event_type == "wallet.credited"
    assert credited.payload == {
        "wallet_id": str(wallet),
        "owner_id": credited.payload["owner_id"],
        "currency": "ZAR",
        "balance_minor": 5000,
        "available_minor": 5000,
        "topup_id": str(topup_id),
        "amount_minor": 5000,
        "gateway": "stripe",
        "payment_id": "pi_announce",
        "payment_method": None,
    }


def test_a_failed_topup_is_announced_and_moves_nothing(sessions, topup):
    topup_id, wallet = topup(700)
    failed = stored_event(sessions, kind="payment_failed", reference=topup_id, amount_minor=700)
    assert apply(sessions, failed) == "applied"
    assert [e.event_type for e in events_for(sessions, wallet)] == ["topup.failed"]


def test_a_refund_that_takes_the_wallet_into_debt_announces_the_debt(sessions, topup):
    topup_id, wallet = topup(5000)
    assert apply(sessions, stored_event(sessions, reference=topup_id, payment_id="pi_debt")) == (
        "applied"
    )
    with sessions.begin() as session:  # 30.00 of it is spent
        adjust(
            session,
            wallet_id=wallet,
            direction=Direction.DEBIT,
            amount_minor=3000,
            reason="spent",
            actor="tests",
        )
    refund = stored_event(
        sessions, kind="refund_succeeded", reference=topup_id, payment_id="pi_debt"
    )
    assert apply(sessions, refund) == "applied"
    assert apply(sessions, refund) == "applied"
    kinds = {e.event_type: e.payload for e in events_for(sessions, wallet)}
    assert set(kinds) == {"wallet.credited", "topup.refunded", "wallet.negative"}
    assert kinds["wallet.negative"]["debt_minor"] == 3000
    assert kinds["wallet.negative"]["balance_minor"] == -3000


def test_orders_paid_and_refunded_are_announced_and_a_rejection_is_not(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)
    with sessions.begin() as session:
        paid = create_order(session, wallet_id=wallet, amount_minor=600, reference="inv-1")
        session.flush()
        pay_order(session, paid.id)
        pay_order(session, paid.id)  # paid already: nothing new
        refund_order(session, paid.id, amount_minor=100, refund_key="r1")
        refund_order(session, paid.id, amount_minor=100, refund_key="r1")  # a retry
        too_dear = create_order(session, wallet_id=wallet, amount_minor=5000, reference="inv-2")
        session.flush()
        assert pay_order(session, too_dear.id).status == "rejected"
    announced = [(e.event_type, e.payload["amount_minor"]) for e in events_for(sessions, wallet)]
    assert announced == [("order.paid", 600), ("order.refunded", 100)]


def test_an_event_rolled_back_with_its_transaction_is_never_announced(sessions, make_wallet):
    wallet = make_wallet()
    key = f"k-{uuid.uuid4()}"

    def effect_that_fails():
        with sessions.begin() as session:
            assert outbox.emit_for_wallet(
                session, "wallet.credited", key=key, wallet_id=wallet, data={}
            )
            raise RuntimeError("the effect failed")

    with pytest.raises(RuntimeError):
        effect_that_fails()
    assert events_for(sessions, wallet) == []


def test_backoff_doubles_within_its_bounds():
    waits = [outbox.backoff(n) for n in range(1, outbox.ATTEMPTS_MAX + 1)]
    assert waits[0] == outbox.BACKOFF_MIN
    assert waits[1] == 2 * outbox.BACKOFF_MIN
    assert max(waits) == outbox.BACKOFF_MAX
    assert waits == sorted(waits)


def test_contacts_hold_only_international_numbers(sessions):
    owner = f"owner-{uuid.uuid4()}"
    with sessions.begin() as session:
        assert contact.set_whatsapp(session, owner, "+27 (82) 123-4567").whatsapp_to == (
            "+27821234567"
        )
        assert contact.set_whatsapp(session, owner, "+447700900123").whatsapp_to == (
            "+447700900123"
        )
        for bad in ("0821234567", "+0821234567", "+27 82 abc", "+1234567890123456"):
            with pytest.raises(ValueError, match="international"):
                contact.set_whatsapp(session, owner, bad)
    with sessions() as session:
        assert contact.get(session, owner).whatsapp_to == "+447700900123"
