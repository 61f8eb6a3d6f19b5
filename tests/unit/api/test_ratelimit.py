"""Rate-limit wiring that needs no Redis: where counters live, what is exempt, the order of init."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from tests.unit.api.support import SECRET, bearer, hs256, make_app
from webhook_receiver.ratelimit import init_rate_limiting, storage_url
from webhook_receiver.settings import ReceiverSettings


def test_counters_live_in_the_redis_broker_by_default():
    settings = ReceiverSettings(broker_url="redis://broker:6379/0")
    assert storage_url(settings) == "redis://broker:6379/0"


def test_an_explicit_storage_wins():
    settings = ReceiverSettings(
        broker_url="redis://broker:6379/0", rate_limit_storage_url="redis://cache:6379/2"
    )
    assert storage_url(settings) == "redis://cache:6379/2"


def test_an_amqp_broker_means_per_process_counters_and_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="webhook_receiver.ratelimit"):
        assert storage_url(ReceiverSettings(broker_url="amqp://rabbit:5672")) == "memory://"
    assert "per process" in caplog.text


def test_init_needs_auth_first():
    settings = ReceiverSettings(rate_limit_storage_url="memory://")
    with pytest.raises(RuntimeError, match="init_auth"):
        init_rate_limiting(Flask(__name__), settings)


def test_in_memory_the_limit_applies_per_subject_to_api_paths_only():
    settings = ReceiverSettings(
        jwt_secrets=(SECRET,), api_rate_limit="2/minute", rate_limit_storage_url="memory://"
    )
    app = make_app(settings)
    init_rate_limiting(app, settings)
    client = app.test_client()
    token = bearer(hs256(sub="shop"))

    statuses = [client.get("/api/v1/ping", headers=token).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert [client.post("/webhooks/x").status_code for _ in range(5)] == [200] * 5
