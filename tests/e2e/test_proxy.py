"""The buffering proxy of compose.yaml, for real: nginx with the repository's configuration in
front of gunicorn with the production settings, while clients send their headers slowly."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.request

import pytest

from tests.conftest import TEST_BROKER_URL, require_service

from .conftest import free_port, process_env, start_web, stop
from .nginx import (
    NginxMissing,
    check_config,
    healthz,
    nginx_binary,
    running_nginx,
    slow_clients,
    write_config,
)

SLOW_CLIENTS = 48


@pytest.fixture
def proxied_web(database_url, tmp_path):
    """gunicorn (production defaults: two processes a core, four threads each) behind nginx."""
    try:
        nginx_binary()
    except NginxMissing as exc:
        require_service("nginx", exc)
    env = process_env(database_url, TEST_BROKER_URL)
    env.pop("WEB_CONCURRENCY", None)
    web, web_url = start_web(env, tmp_path / "gunicorn.log")
    proxy_port = free_port()
    config = write_config(
        tmp_path, upstream=web_url.removeprefix("http://"), listen=f"127.0.0.1:{proxy_port}"
    )
    checked = check_config(config)
    assert checked.returncode == 0, checked.stderr
    proxy_url = f"http://127.0.0.1:{proxy_port}"
    try:
        with running_nginx(config, proxy_url, tmp_path / "nginx.log"):
            yield proxy_url, proxy_port
    finally:
        stop(web)


@pytest.mark.slow
def test_healthz_answers_through_the_proxy_while_48_clients_send_headers_slowly(proxied_web):
    proxy_url, proxy_port = proxied_web
    with slow_clients("127.0.0.1", proxy_port, SLOW_CLIENTS, duration_s=8) as clients:
        status = healthz(proxy_url, timeout_s=5)
        still_open = clients.still_open()
    assert status == 200
    # The slow clients were all still connected, headers unfinished, when /healthz answered.
    assert still_open == SLOW_CLIENTS


@pytest.mark.slow
def test_the_proxy_answers_its_own_errors_as_problem_documents(proxied_web):
    proxy_url, proxy_port = proxied_web
    for path, status in (("/metrics", 404),):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{proxy_url}{path}", timeout=5)  # noqa: S310
        assert refused.value.code == status
        assert refused.value.headers["Content-Type"] == "application/problem+json"
        assert json.load(refused.value)["status"] == status
    # Announced too large: nginx refuses it from the headers, before any body is read.
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as connection:
        connection.sendall(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: walletpipe\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"
        )
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == 413
    assert answer.getheader("Content-Type") == "application/problem+json"
    assert body == {"type": "about:blank", "title": "Content Too Large", "status": 413}
