"""The webhook receiver against the real PostgreSQL and Redis."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import time
import uuid

import pytest
import redis
from sqlalchemy import func, select

from ledger.models import InboxConflict, InboxEvent
from webhook_receiver import create_app
from webhook_receiver.event import EventKind
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings

STRIPE_SECRET = "whsec_test_receiver"
ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
PAYSTACK_SECRET = "sk_test_receiver"


def settings_for(database_url, broker_url, **overrides):
    values = dict(
        database_url=database_url,
        broker_url=broker_url,
        stripe_webhook_secrets=("whsec_old_rotated_out", STRIPE_SECRET),
        adyen_hmac_keys=(ADYEN_KEY,),
        paystack_webhook_secrets=(PAYSTACK_SECRET,),
        max_content_length=64 * 1024,
    )
    return ReceiverSettings(**{**values, **overrides})


@pytest.fixture
def client(database_url, broker_url, redis_client):
    return create_app(settings_for(database_url, broker_url)).test_client()


def post(client, gateway, sample):
    return client.post(
        f"/webhooks/{gateway}",
        data=sample.body,
        headers=sample.headers,
        content_type=sample.content_type,
    )


def stripe_sample(
    reference=None, amount_minor=5000, event_id=None, kind=EventKind.PAYMENT_SUCCEEDED
):
    return ADAPTERS["stripe"].sample(
        STRIPE_SECRET,
        amount_minor=amount_minor,
        currency="ZAR",
        reference=reference or f"topup-{uuid.uuid4()}",
        event_id=event_id or f"evt_{uuid.uuid4().hex}",
        kind=kind,
    )


def inbox_rows(sessions, gateway, event_id):
    with sessions() as session:
        return session.scalars(
            select(InboxEvent).where(InboxEvent.gateway == gateway, InboxEvent.event_id == event_id)
        ).all()


def doorbells(redis_client):
    """How many times the workers' doorbell was rung (it names no event)."""
    messages = [json.loads(m) for m in redis_client.hvals("dramatiq:ledger.msgs")]
    assert all((m["actor_name"], m["args"]) == ("apply_inbox_batch", []) for m in messages)
    return len(messages)


def test_a_verified_event_is_stored_then_the_workers_are_rung(client, sessions, redis_client):
    sample = stripe_sample(reference="topup-42", amount_minor=5000)
    event_id = json.loads(sample.body)["id"]
    response = post(client, "stripe", sample)
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted"}
    [row] = inbox_rows(sessions, "stripe", event_id)
    assert (row.kind, row.amount_minor, row.currency, row.reference, row.status) == (
        "payment_succeeded",
        5000,
        "ZAR",
        "topup-42",
        "received",
    )
    assert row.body == sample.body
    assert "stripe-signature" in row.headers
    assert doorbells(redis_client) == 1


def test_a_repeat_delivery_is_a_duplicate_and_rings_no_more(client, sessions, redis_client):
    sample = stripe_sample()
    assert post(client, "stripe", sample).get_json() == {"status": "accepted"}
    again = post(client, "stripe", sample)
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate"}
    event_id = json.loads(sample.body)["id"]
    assert len(inbox_rows(sessions, "stripe", event_id)) == 1
    assert doorbells(redis_client) == 1


def test_a_repeat_with_another_payload_is_kept_for_review(client, sessions):
    event_id = f"evt_{uuid.uuid4().hex}"
    post(client, "stripe", stripe_sample(event_id=event_id, amount_minor=5000))
    changed = post(client, "stripe", stripe_sample(event_id=event_id, amount_minor=9000))
    assert changed.get_json() == {"status": "duplicate"}
    [row] = inbox_rows(sessions, "stripe", event_id)
    assert row.amount_minor == 5000
    with sessions() as session:
        conflicts = session.scalars(
            select(InboxConflict).where(InboxConflict.inbox_event_id == row.id)
        ).all()
    assert len(conflicts) == 1
    assert conflicts[0].payload["data"]["object"]["amount_received"] == 9000


def test_an_event_we_do_not_act_on_is_stored_as_ignored(client, sessions, redis_client):
    sample = stripe_sample(kind=EventKind.OTHER)
    response = post(client, "stripe", sample)
    assert response.get_json() == {"status": "ignored"}
    [row] = inbox_rows(sessions, "stripe", json.loads(sample.body)["id"])
    assert row.status == "ignored"
    assert doorbells(redis_client) == 0


def count_inbox(sessions):
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(InboxEvent))


def test_a_tampered_body_is_refused_as_a_problem_and_stores_nothing(client, sessions):
    sample = stripe_sample()
    before = count_inbox(sessions)
    tampered = sample.body.replace(b'"amount_received": 5000', b'"amount_received": 9999999')
    assert tampered != sample.body
    response = client.post(
        "/webhooks/stripe", data=tampered, headers=sample.headers, content_type=sample.content_type
    )
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == 401
    assert count_inbox(sessions) == before


@pytest.mark.parametrize("gateway", ["nope", "razorpay", "yoco", "paypal", "payfast"])
def test_unknown_and_unconfigured_gateways_answer_404(client, gateway):
    response = client.post(f"/webhooks/{gateway}", data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.get_json()["title"] == "Unknown gateway"


def test_a_body_over_the_limit_answers_413(client):
    response = client.post(
        "/webhooks/stripe", data=b"x" * (65 * 1024), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.mimetype == "application/problem+json"


def test_a_signed_but_broken_body_answers_400(client):
    body = b'{"id": "evt_1", "type": '
    timestamp = int(time.time())

    signature = hmac.new(
        STRIPE_SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    response = client.post(
        "/webhooks/stripe",
        data=body,
        headers={"Stripe-Signature": f"t={timestamp},v1={signature}"},
        content_type="application/json",
    )
    assert response.status_code == 400


def test_adyen_batches_store_every_item_and_answer_accepted(client, sessions, redis_client):
    samples = [
        ADAPTERS["adyen"].sample(
            ADYEN_KEY,
            amount_minor=1000 + i,
            currency="ZAR",
            reference=f"topup-{uuid.uuid4()}",
            event_id=f"psp{uuid.uuid4().hex[:12]}",
        )
        for i in range(3)
    ]
    items = [item for s in samples for item in json.loads(s.body)["notificationItems"]]
    body = json.dumps({"live": "false", "notificationItems": items}).encode()
    response = client.post("/webhooks/adyen", data=body, content_type="application/json")
    assert response.status_code == 200
    assert response.data == b"[accepted]"
    references = [item["NotificationRequestItem"]["merchantReference"] for item in items]
    with sessions() as session:
        stored = session.scalars(
            select(InboxEvent.reference).where(InboxEvent.reference.in_(references))
        ).all()
    assert sorted(stored) == sorted(references)
    assert doorbells(redis_client) == 1  # one ring for the three events of one commit


def test_with_the_broker_down_the_event_is_still_accepted(database_url, sessions):
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            redis_server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    private = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                private.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client = create_app(settings_for(database_url, f"redis://127.0.0.1:{port}/0")).test_client()
        assert post(client, "stripe", stripe_sample()).status_code == 200
        assert private.hlen("dramatiq:ledger.msgs") == 1  # queued while the broker was up
        server.terminate()
        server.wait(timeout=10)
        sample = stripe_sample()
        response = post(client, "stripe", sample)
        assert response.status_code == 200
        assert response.get_json() == {"status": "accepted"}
        [row] = inbox_rows(sessions, "stripe", json.loads(sample.body)["id"])
        assert row.status == "received"  # waiting for the relay
    finally:
        server.kill()
        server.wait(timeout=10)


def test_a_signed_event_with_nul_and_lone_surrogates_is_stored(client, sessions):
    body = json.loads(stripe_sample().body)
    body["data"]["object"]["description"] = "tea\u0000 for two \ud800"
    raw = json.dumps(body).encode()  # ASCII escapes, as gateways send them
    timestamp = int(time.time())
    signature = hmac.new(
        STRIPE_SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256
    ).hexdigest()
    response = client.post(
        "/webhooks/stripe",
        data=raw,
        headers={"Stripe-Signature": f"t={timestamp},v1={signature}"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.get_json()
    [row] = inbox_rows(sessions, "stripe", body["id"])
    assert row.body == raw  # the exact bytes are kept
    assert "\x00" not in row.payload["data"]["object"]["description"]


def test_with_the_database_down_it_answers_503_and_not_ready(broker_url):
    settings = settings_for("postgresql://127.0.0.1:1/walletpipe", broker_url)
    client = create_app(settings).test_client()
    response = post(client, "stripe", stripe_sample())
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_ready_when_the_database_answers(client):
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_every_answer_carries_a_request_id(client):
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id!"}).headers["X-Request-ID"]
    assert len(generated) == 32
