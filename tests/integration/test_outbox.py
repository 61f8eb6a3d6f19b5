"""The outbox: every money fact announced once, in its own transaction, and delivered to each
channel at least once, with a failing channel retried and the others never repeated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook

from ledger import contact, outbox, relay
from ledger.adjustment import Direction, adjust
from ledger.models import OutboxDelivery, OutboxEvent
from ledger.order import create_order, pay_order, refund_order
from tests.http_recorder import recording_server

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


def test_undelivered_events_are_claimed_once_per_resend_interval(sessions, make_wallet):
    wallet = make_wallet()
    with sessions.begin() as session:
        event_id = outbox.emit_for_wallet(
            session, "wallet.credited", key=f"k-{uuid.uuid4()}", wallet_id=wallet, data={}
        )
    now = datetime.now(UTC)
    later = now + WAIT + timedelta(seconds=1)
    with sessions.begin() as session:
        assert event_id not in relay.claim_undelivered(session, now=now, resend_after=WAIT)
    with sessions.begin() as session:
        assert event_id in relay.claim_undelivered(session, now=later, resend_after=WAIT)
    with sessions.begin() as session:
        assert event_id not in relay.claim_undelivered(session, now=later, resend_after=WAIT)
    with sessions.begin() as session:  # a channel failed: it waits for its backoff first
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id)
            .values(next_attempt_at=later + 3 * WAIT)
        )
    with sessions.begin() as session:
        assert event_id not in relay.claim_undelivered(
            session, now=later + 2 * WAIT, resend_after=WAIT
        )
    with sessions.begin() as session:
        assert event_id in relay.claim_undelivered(session, now=later + 4 * WAIT, resend_after=WAIT)


@pytest.fixture
def receivers():
    """A WhatsApp Cloud API stand-in and a subscriber endpoint, each recording requests."""
    with recording_server() as whatsapp, recording_server() as subscriber:
        yield whatsapp, subscriber


@pytest.fixture
def deliver(receivers, database_url, broker_url, monkeypatch):
    """The deliver_notification actor, called as a function, with every channel configured."""
    whatsapp, subscriber = receivers
    for name, value in {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "NOTIFY_CHANNELS": "log,whatsapp,webhooks",
        "WHATSAPP_API_URL": f"{whatsapp.url}/v21.0",
        "WHATSAPP_TOKEN": "wa-test-token",
        "WHATSAPP_PHONE_NUMBER_ID": "1098765",
        "NOTIFY_WEBHOOK_URLS": f"{subscriber.url}/hooks/walletpipe",
        "NOTIFY_WEBHOOK_SECRET": HOOK_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    from workers import actors, process

    process.reset()
    yield actors.deliver_notification
    process.reset()


def credited_event(sessions, topup, *, whatsapp="+27 82 123 4567"):
    topup_id, wallet = topup(5000)
    apply(sessions, stored_event(sessions, reference=topup_id))
    [event] = events_for(sessions, wallet)
    if whatsapp:
        with sessions.begin() as session:
            contact.set_whatsapp(session, event.payload["owner_id"], whatsapp)
    return event


def test_a_notification_reaches_whatsapp_and_signed_webhooks_once(
    sessions, topup, deliver, receivers
):
    whatsapp, subscriber = receivers
    event = credited_event(sessions, topup)
    deliver(event.id)
    deliver(event.id)  # a repeated job: everything has it already

    [message] = whatsapp.received
    assert message.path == "/v21.0/1098765/messages"
    assert message.headers["authorization"] == "Bearer wa-test-token"
    assert message.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "27821234567",
        "type": "template",
        "template": {
            "name": "topup_confirmation",
            "language": {"code": "en"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "ZAR 50.00"},
                        {"type": "text", "text": "ZAR 50.00"},
                    ],
                }
            ],
        },
    }
    [hook] = subscriber.on("/hooks/walletpipe")
    # The Standard Webhooks reference library accepts our signature.
    verified = Webhook(HOOK_SECRET).verify(hook.body, hook.headers)
    assert verified["type"] == "wallet.credited"
    assert verified["data"]["amount_minor"] == 5000
    assert hook.headers["webhook-id"] == f"evt_{event.id}"
    with sessions() as session:
        delivered = session.get(OutboxEvent, event.id)
        assert delivered.delivered_at is not None
        assert delivered.attempts == 1


def test_an_owner_without_a_number_gets_no_whatsapp_but_subscribers_hear(
    sessions, topup, deliver, receivers
):
    whatsapp, subscriber = receivers
    event = credited_event(sessions, topup, whatsapp=None)
    deliver(event.id)
    assert whatsapp.received == []
    assert len(subscriber.received) == 1


def test_a_failing_channel_is_retried_later_and_the_others_are_not_repeated(
    sessions, topup, deliver, receivers
):
    whatsapp, subscriber = receivers
    event = credited_event(sessions, topup)
    subscriber.status = 503
    before = datetime.now(UTC)
    deliver(event.id)
    with sessions() as session:
        waiting = session.get(OutboxEvent, event.id)
        assert waiting.delivered_at is None
        assert waiting.attempts == 1
        assert "HTTP 503" in waiting.last_error
        assert waiting.next_attempt_at >= before + outbox.BACKOFF_MIN
        assert set(
            session.scalars(
                select(OutboxDelivery.channel).where(OutboxDelivery.event_id == event.id)
            )
        ) == {"log", "whatsapp"}

    subscriber.status = 200
    deliver(event.id)
    assert len(whatsapp.received) == 1  # not sent again
    assert len(subscriber.received) == 2  # the failed one, then the retry
    assert (
        subscriber.received[0].headers["webhook-id"] == subscriber.received[1].headers["webhook-id"]
    )
    with sessions() as session:
        assert session.get(OutboxEvent, event.id).delivered_at is not None


def test_delivery_gives_up_after_the_last_attempt(sessions, topup, deliver, receivers):
    _, subscriber = receivers
    event = credited_event(sessions, topup)
    subscriber.status = 500
    with sessions.begin() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id)
            .values(attempts=outbox.ATTEMPTS_MAX - 1)
        )
    deliver(event.id)
    with sessions.begin() as session:
        failed = session.get(OutboxEvent, event.id)
        assert failed.failed_at is not None
        assert failed.next_attempt_at is None
        far_later = datetime.now(UTC) + timedelta(days=30)
        assert event.id not in relay.claim_undelivered(session, now=far_later, resend_after=WAIT)
    deliver(event.id)
    assert len(subscriber.received) == 1  # failed for good: not tried again


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
