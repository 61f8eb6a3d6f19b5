"""A verified webhook travels the real path: receiver, Redis, a Dramatiq worker, the ledger."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from ledger.models import InboxEvent
from webhook_receiver import create_app
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings
from workers.jobs import APPLY_INBOX_BATCH, JobSender

SECRET = "whsec_worker_tests"


def test_a_webhook_credits_the_wallet_through_the_worker(
    worker, database_url, broker_url, make_wallet, sessions, balance_of
):
    from ledger.topup import create_topup

    wallet = make_wallet()
    with sessions.begin() as session:
        topup = create_topup(session, wallet_id=wallet, amount_minor=2500, gateway="stripe").id
    app = create_app(
        ReceiverSettings(
            database_url=database_url, broker_url=broker_url, stripe_webhook_secrets=(SECRET,)
        )
    )
    sample = ADAPTERS["stripe"].sample(
        SECRET,
        amount_minor=2500,
        currency="ZAR",
        reference=str(topup),
        event_id=f"evt_{uuid.uuid4().hex}",
    )
    for _ in range(3):  # the gateway retries: delivered three times, credited once
        answer = app.test_client().post(
            "/webhooks/stripe",
            data=sample.body,
            headers=sample.headers,
            content_type=sample.content_type,
        )
        assert answer.status_code == 200
    worker.join("ledger", timeout=20_000)
    assert balance_of(wallet).balance_minor == 2500
    with sessions() as session:
        status = session.scalar(
            select(InboxEvent.status).where(InboxEvent.event_id == json.loads(sample.body)["id"])
        )
    assert status == "applied"
    # The broker and the relay ring at least once: more rings credit nothing.
    for _ in range(3):
        JobSender(broker_url).send(APPLY_INBOX_BATCH)
    worker.join("ledger", timeout=20_000)
    assert balance_of(wallet).balance_minor == 2500
