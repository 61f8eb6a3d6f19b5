"""Catch-up from the gateways' read APIs, against a local server answering in each API's
documented shape, paging included: what the inbox lacks is recorded once and credited once."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ledger import inbox, settlement
from ledger.models import InboxConflict, InboxEvent, Transfer
from tests.fake_gateway_api import fake_api
from walletctl.cli import cli
from workers.scheduler import Periodic

NOW = datetime.now(UTC)


@pytest.fixture
def run(database_url, broker_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", broker_url)

    def invoke(*args):
        return CliRunner().invoke(cli, ["--json", *args], catch_exceptions=False)

    return invoke


def apply_all(sessions, ids):
    with sessions.begin() as session:
        settlement.apply_inbox(session, now=datetime.now(UTC), only=ids, limit=len(ids) or 1)


def rows(sessions, gateway, payment_id):
    with sessions() as session:
        return session.scalars(
            select(InboxEvent).where(
                InboxEvent.gateway == gateway, InboxEvent.payment_id == payment_id
            )
        ).all()


def credits(sessions, topup_id):
    with sessions() as session:
        return session.scalar(
            select(func.count()).where(Transfer.idempotency_key == f"topup:{topup_id}")
        )


def stripe_event(event_type, obj, *, pending_webhooks=0):
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) - 60,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "type": event_type,
    }


def intent(topup_id, amount_minor):
    return {
        "id": f"pi_{uuid.uuid4().hex[:24]}",
        "object": "payment_intent",
        "amount": amount_minor,
        "amount_received": amount_minor,
        "currency": "zar",
        "metadata": {"topup_id": str(topup_id)},
        "status": "succeeded",
    }


def test_stripe_events_are_paged_through_and_recorded_once(run, sessions, topup, monkeypatch):
    lost, _ = topup(5000, gateway="stripe")
    delivered, _ = topup(2000, gateway="stripe")
    lost_event = stripe_event("payment_intent.succeeded", intent(lost, 5000))
    delivered_event = stripe_event("payment_intent.succeeded", intent(delivered, 2000))
    other = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    # The webhook of one came, when Stripe still counted it pending: another payload, same id.
    webhook = {**delivered_event, "pending_webhooks": 1}
    with sessions.begin() as session:
        inbox.record(
            session,
            inbox.IncomingEvent(
                gateway="stripe",
                event_id=webhook["id"],
                kind="payment_succeeded",
                actionable=True,
                payment_id=delivered_event["data"]["object"]["id"],
                amount_minor=2000,
                currency="ZAR",
                reference=str(delivered),
                payment_method=None,
                occurred_at=None,
                payload=webhook,
                body=json.dumps(webhook).encode(),
                headers={},
            ),
        )
    pages = {None: ([other, delivered_event], True), delivered_event["id"]: ([lost_event], False)}

    def events(query):
        data, more = pages[query.get("starting_after", [None])[0]]
        return 200, {"object": "list", "url": "/v1/events", "has_more": more, "data": data}

    with fake_api({"/v1/events": events}) as api:
        monkeypatch.setenv("STRIPE_API_BASE", api.url)
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_catchup")
        first = run("catch-up", "stripe", "--since", "24h")
        second = run("catch-up", "stripe", "--since", "24h")

    assert first.exit_code == 0, first.output
    assert json.loads(first.output) | {"since": None} == {
        "gateway": "stripe",
        "seen": 2,
        "recorded": 1,
        "known": 1,
        "since": None,
    }
    assert json.loads(second.output)["recorded"] == 0
    [asked, *_] = api.on("/v1/events")
    assert asked.headers["authorization"] == "Bearer sk_test_catchup"
    assert "payment_intent.succeeded" in asked.query["types[]"]
    assert int(asked.query["created[gte]"][0]) <= int(time.time()) - 24 * 3600 + 5
    [recorded] = rows(sessions, "stripe", lost_event["data"]["object"]["id"])
    assert recorded.event_id == lost_event["id"]  # the webhook's own id: one row for both
    apply_all(sessions, [recorded.id])
    assert credits(sessions, lost) == 1
    with sessions() as session:
        conflicts = session.scalar(
            select(func.count())
            .select_from(InboxConflict)
            .join(InboxEvent)
            .where(InboxEvent.event_id == webhook["id"])
        )
    assert conflicts == 0


def test_razorpay_payments_are_paged_by_skip_and_a_late_webhook_credits_once(
    run, sessions, topup, monkeypatch
):
    topup_id, _ = topup(7000, gateway="razorpay", currency="INR")
    captured = {
        "id": f"pay_{uuid.uuid4().hex[:14]}",
        "entity": "payment",
        "amount": 7000,
        "currency": "INR",
        "status": "captured",
        "method": "upi",
        "notes": {"topup_id": str(topup_id)},
        "created_at": int(time.time()) - 300,
    }
    authorized = [
        {**captured, "id": f"pay_{uuid.uuid4().hex[:14]}", "status": "authorized"}
        for _ in range(100)
    ]
    listed = [*authorized, captured]

    def payments(query):
        skip, count = int(query["skip"][0]), int(query["count"][0])
        items = listed[skip : skip + count]
        return 200, {"entity": "collection", "count": len(items), "items": items}

    def refunds(query):
        return 200, {"entity": "collection", "count": 0, "items": []}

    with fake_api({"/v1/payments": payments, "/v1/refunds": refunds}) as api:
        monkeypatch.setenv("RAZORPAY_API_BASE", api.url)
        monkeypatch.setenv("RAZORPAY_KEY_ID", "rzp_test_key")
        monkeypatch.setenv("RAZORPAY_KEY_SECRET", "rzp_test_secret")
        caught = run("catch-up", "razorpay", "--since", "2h")

    assert caught.exit_code == 0, caught.output
    assert json.loads(caught.output)["recorded"] == 1
    assert [a.query["skip"][0] for a in api.on("/v1/payments")] == ["0", "100"]
    assert api.on("/v1/payments")[0].headers["authorization"].startswith("Basic ")
    with sessions.begin() as session:  # the webhook of the same payment, late
        inbox.record(
            session,
            inbox.IncomingEvent(
                gateway="razorpay",
                event_id=uuid.uuid4().hex[:14],
                kind="payment_succeeded",
                actionable=True,
                payment_id=captured["id"],
                amount_minor=7000,
                currency="INR",
                reference=str(topup_id),
                payment_method="upi",
                occurred_at=None,
                payload={"event": "payment.captured"},
                body=b"{}",
                headers={},
            ),
        )
    both = rows(sessions, "razorpay", captured["id"])
    apply_all(sessions, [row.id for row in both])

    assert len(both) == 2
    assert credits(sessions, topup_id) == 1


def test_paystack_transactions_page_by_page_count(run, sessions, topup, monkeypatch):
    topup_id, _ = topup(500000, gateway="paystack", currency="NGN")
    success = {
        "id": 3119849262 + int(uuid.uuid4().int % 10**6),
        "status": "success",
        "reference": f"T{uuid.uuid4().hex[:15]}",
        "amount": 500000,
        "currency": "NGN",
        "channel": "card",
        "paid_at": "2026-11-23T09:12:30.000Z",
        "metadata": {"topup_id": str(topup_id)},
        "fees": 7500,
    }
    abandoned = {**success, "id": success["id"] + 1, "status": "abandoned"}
    pages = {"1": [abandoned], "2": [success]}

    def transactions(query):
        page = query["page"][0]
        meta = {"total": 2, "skipped": 0, "perPage": 100, "page": int(page), "pageCount": 2}
        return 200, {
            "status": True,
            "message": "Transactions retrieved",
            "data": pages[page],
            "meta": meta,
        }

    with fake_api({"/transaction": transactions}) as api:
        monkeypatch.setenv("PAYSTACK_API_BASE", api.url)
        monkeypatch.setenv("PAYSTACK_SECRET_KEY", "sk_test_paystack")
        caught = run("catch-up", "paystack", "--since", "2026-11-22T00:00:00Z")

    assert caught.exit_code == 0, caught.output
    assert [a.query["page"][0] for a in api.on("/transaction")] == ["1", "2"]
    assert api.on("/transaction")[0].query["from"] == ["2026-11-22T00:00:00Z"]
    [recorded] = rows(sessions, "paystack", success["reference"])
    assert recorded.event_id == f"charge.success:{success['id']}"  # as its webhook's
    apply_all(sessions, [recorded.id])
    assert credits(sessions, topup_id) == 1


def test_a_refused_key_is_explained(run, monkeypatch):
    with fake_api({"/v1/events": lambda query: (401, {"error": {"message": "bad key"}})}) as api:
        monkeypatch.setenv("STRIPE_API_BASE", api.url)
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_wrong")
        refused = CliRunner().invoke(cli, ["catch-up", "stripe", "--since", "1h"])

    assert refused.exit_code == 1
    assert "answered 401: check the secret API key" in refused.output


def test_without_a_key_catch_up_says_which_to_set(run, monkeypatch):
    monkeypatch.delenv("PAYSTACK_SECRET_KEY", raising=False)
    refused = CliRunner().invoke(cli, ["catch-up", "paystack", "--since", "1h"])
    assert refused.exit_code == 1
    assert "PAYSTACK_SECRET_KEY is not set" in refused.output


def test_a_periodic_duty_runs_when_due_and_survives_its_failure():
    calls = []

    def flaky():
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("gateway down")

    duty = Periodic("catch-up stripe", 60, flaky)
    duty.run_if_due(1000.0)  # fails, logged
    duty.run_if_due(1030.0)  # not due
    duty.run_if_due(1061.0)

    assert calls == [0, 1]
