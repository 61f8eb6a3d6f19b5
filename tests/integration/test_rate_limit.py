"""The service API's rate limit on a real Redis: per token subject, never on webhooks, fail open."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from tests.conftest import TEST_BROKER_URL, require_service
from tests.unit.api.support import SECRET, bearer, hs256, make_app
from webhook_receiver.problem import problem
from webhook_receiver.ratelimit import init_rate_limiting
from webhook_receiver.settings import ReceiverSettings

LIMIT = "3/minute"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def storage_url() -> str:
    """The test Redis; not flushed: a unique key prefix per app keeps the counters apart."""
    client = redis.Redis.from_url(TEST_BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        require_service("Redis", exc)
    finally:
        client.close()
    return TEST_BROKER_URL


def limited_app(storage_url: str) -> Flask:
    """The tiny API app, plus /healthz and the real app's catch-all HTTPException handler."""
    settings = ReceiverSettings(
        jwt_secrets=(SECRET,), api_rate_limit=LIMIT, rate_limit_storage_url=storage_url
    )
    app = make_app(settings)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return problem(error.code or 500, error.name, error.description)

    init_rate_limiting(app, settings, key_prefix=f"test-{uuid.uuid4().hex}")
    return app


def test_the_fourth_call_of_a_subject_is_refused_with_retry_after(storage_url):
    client = limited_app(storage_url).test_client()
    shop = bearer(hs256(sub="shop"))
    assert [client.get("/api/v1/ping", headers=shop).status_code for _ in range(3)] == [200] * 3

    refused = client.get("/api/v1/ping", headers=shop)

    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    body = refused.get_json()
    assert body["title"] == "Too many requests"
    assert body["status"] == 429
    assert "3 per 1 minute" in body["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_another_subject_keeps_its_own_budget(storage_url):
    client = limited_app(storage_url).test_client()
    for _ in range(4):
        client.get("/api/v1/ping", headers=bearer(hs256(sub="noisy")))

    assert client.get("/api/v1/ping", headers=bearer(hs256(sub="quiet"))).status_code == 200


def test_a_new_token_of_the_same_subject_shares_the_budget(storage_url):
    client = limited_app(storage_url).test_client()
    for _ in range(3):
        client.get("/api/v1/ping", headers=bearer(hs256(sub="shop")))

    fresh = bearer(hs256(sub="shop", iat=None, jti=uuid.uuid4().hex))
    assert client.get("/api/v1/ping", headers=fresh).status_code == 429


def test_unauthenticated_calls_are_limited_by_address(storage_url):
    client = limited_app(storage_url).test_client()
    statuses = [client.get("/api/v1/ping", headers=bearer("junk")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_webhooks_and_health_are_never_limited(storage_url):
    client = limited_app(storage_url).test_client()
    assert [client.post("/webhooks/x").status_code for _ in range(10)] == [200] * 10
    assert [client.get("/healthz").status_code for _ in range(10)] == [200] * 10


def test_an_unreachable_storage_fails_open(caplog):
    client = limited_app(CLOSED_PORT_URL).test_client()
    token = bearer(hs256(sub="shop"))

    with caplog.at_level(logging.WARNING):
        statuses = [client.get("/api/v1/ping", headers=token).status_code for _ in range(3)]

    assert statuses == [200] * 3
    assert any("unreachable" in record.getMessage() for record in caplog.records)
    # The limit still holds within this process, counted in memory until Redis answers.
    assert client.get("/api/v1/ping", headers=token).status_code == 429
