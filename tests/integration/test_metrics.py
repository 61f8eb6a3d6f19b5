"""GET /metrics against the real PostgreSQL: counters, backlog gauges, a database that is down."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from webhook_receiver import create_app, metrics
from webhook_receiver.event import EventKind

from .test_receiver import post, settings_for, stripe_sample

DEAD_DATABASE_URL = "postgresql://127.0.0.1:1/walletpipe"


def scrape(client):
    """The samples of one scrape, by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def names(samples):
    return {name for name, _ in samples}


def webhooks(samples, outcome, gateway="stripe"):
    return value(samples, "walletpipe_webhooks_total", gateway=gateway, outcome=outcome)


@pytest.fixture
def app(database_url, broker_url, redis_client):
    return create_app(settings_for(database_url, broker_url))


def test_each_recorded_webhook_is_counted_by_gateway_and_outcome(app):
    client = app.test_client()
    sample = stripe_sample()

    post(client, "stripe", sample)
    post(client, "stripe", sample)
    post(client, "stripe", stripe_sample(kind=EventKind.OTHER))
    samples = scrape(client)

    assert webhooks(samples, "new") == 1
    assert webhooks(samples, "duplicate") == 1
    assert webhooks(samples, "ignored") == 1
    assert value(samples, "walletpipe_webhooks_total", gateway="paystack", outcome="new") is None


def test_a_refused_webhook_is_counted_by_its_status(app):
    client = app.test_client()
    forged = stripe_sample()
    forged.headers["Stripe-Signature"] = f"t={int(time.time())},v1={'0' * 64}"

    assert post(client, "stripe", forged).status_code == 401
    assert client.post("/webhooks/stripe", data=b"{", content_type="text/plain").status_code == 401
    assert client.post(f"/webhooks/made-up-{uuid.uuid4().hex}", data=b"{}").status_code == 404
    samples = scrape(client)

    assert webhooks(samples, "401") == 2
    assert webhooks(samples, "new") is None
    # An unconfigured name is a 404 of the route, never a gateway label.
    gateways = {
        dict(labels)["gateway"] for name, labels in samples if name == "walletpipe_webhooks_total"
    }
    assert gateways == {"stripe"}
    status_404 = value(
        samples,
        "walletpipe_http_requests_total",
        method="POST",
        endpoint=metrics.WEBHOOK_ENDPOINT,
        status="404",
    )
    assert status_404 == 1


def test_requests_are_counted_and_timed_by_route_never_by_path(app):
    client = app.test_client()
    wallet_id = str(uuid.uuid4())

    post(client, "stripe", stripe_sample())
    client.get(f"/api/v1/wallets/{wallet_id}")  # 401 without a token
    client.get(f"/no/such/{wallet_id}")
    client.open("/healthz", method="PROPFIND")
    response = client.get("/metrics")
    samples = scrape(client)

    assert wallet_id not in response.get_data(as_text=True)
    requests = "walletpipe_http_requests_total"
    assert value(samples, requests, method="POST", endpoint="webhooks.receive", status="200") == 1
    assert value(samples, requests, method="GET", endpoint="api.show_wallet", status="401") == 1
    assert value(samples, requests, method="GET", endpoint="unmatched", status="404") == 1
    assert value(samples, requests, method="other", endpoint="unmatched", status="405") == 1
    assert value(samples, requests, method="GET", endpoint="metrics.scrape", status="200") == 1
    timed = value(
        samples,
        "walletpipe_http_request_duration_seconds_count",
        method="POST",
        endpoint="webhooks.receive",
    )
    assert timed == 1


def test_several_apps_in_one_process_count_apart(database_url, broker_url, redis_client):
    first = create_app(settings_for(database_url, broker_url)).test_client()
    second = create_app(settings_for(database_url, broker_url)).test_client()

    post(first, "stripe", stripe_sample())

    assert webhooks(scrape(first), "new") == 1
    assert webhooks(scrape(second), "new") is None


def test_the_inbox_gauges_count_open_rows_by_status_and_age_the_oldest_waiting(
    fresh_database_url, broker_url, redis_client
):
    app = create_app(settings_for(fresh_database_url, broker_url))
    client = app.test_client()
    empty = scrape(client)
    assert value(empty, "walletpipe_inbox_events", status="received") == 0
    assert value(empty, "walletpipe_inbox_oldest_waiting_seconds") == 0

    post(client, "stripe", stripe_sample())
    post(client, "stripe", stripe_sample())
    post(client, "stripe", stripe_sample(kind=EventKind.OTHER))
    with app.extensions["walletpipe"].sessions.begin() as session:
        session.execute(
            text(
                "UPDATE inbox_events SET received_at = now() - interval '1 hour'"
                " WHERE id = (SELECT min(id) FROM inbox_events WHERE status = 'received')"
            )
        )
    samples = scrape(client)

    assert value(samples, "walletpipe_database_up") == 1
    assert value(samples, "walletpipe_inbox_events", status="received") == 2
    assert value(samples, "walletpipe_inbox_events", status="needs_review") == 0
    # Settled events are history: not counted, so a scrape never reads the whole table.
    assert value(samples, "walletpipe_inbox_events", status="ignored") is None
    assert 3600 <= value(samples, "walletpipe_inbox_oldest_waiting_seconds") < 3600 + 60


def test_every_backlog_gauge_reads_from_the_migrated_schema(app):
    samples = scrape(app.test_client())

    assert value(samples, "walletpipe_database_up") == 1
    assert {gauge.name for gauge in metrics.BACKLOG_GAUGES} <= names(samples)


def test_with_the_database_down_the_scrape_answers_with_the_process_metrics(broker_url):
    client = create_app(settings_for(DEAD_DATABASE_URL, broker_url)).test_client()

    client.get("/healthz")
    samples = scrape(client)

    assert value(samples, "walletpipe_database_up") == 0
    healthz = value(
        samples,
        "walletpipe_http_requests_total",
        method="GET",
        endpoint="health.healthz",
        status="200",
    )
    assert healthz == 1
    assert "process_cpu_seconds_total" in names(samples)
    assert not {gauge.name for gauge in metrics.BACKLOG_GAUGES} & names(samples)


def test_a_backlog_query_that_outlasts_its_timeout_is_cut_off(
    fresh_database_url, broker_url, redis_client, monkeypatch
):
    monkeypatch.setattr(metrics, "STATEMENT_TIMEOUT_MS", 200)
    client = create_app(settings_for(fresh_database_url, broker_url)).test_client()
    with psycopg.connect(fresh_database_url) as locker:
        # Held until the block ends: the backlog query waits on it.
        locker.execute("LOCK TABLE inbox_events IN ACCESS EXCLUSIVE MODE")
        started_s = time.monotonic()
        samples = scrape(client)
        waited_s = time.monotonic() - started_s

    assert value(samples, "walletpipe_database_up") == 0
    assert waited_s < 5
    assert value(scrape(client), "walletpipe_database_up") == 1  # the lock is gone


def test_scrapes_are_never_rate_limited(database_url, broker_url, redis_client):
    settings = settings_for(database_url, broker_url, api_rate_limit="1/minute")
    client = create_app(settings).test_client()

    api = [client.get(f"/api/v1/wallets/{uuid.uuid4()}").status_code for _ in range(2)]
    scrapes = [client.get("/metrics").status_code for _ in range(3)]

    assert api == [401, 429]
    assert scrapes == [200, 200, 200]
