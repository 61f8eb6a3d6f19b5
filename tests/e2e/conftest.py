"""Processes started the way the Procfile starts them, for tests over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import empty_test_redis, require_service
from tests.rabbitmq import RabbitmqMissing, rabbitmq_vhost

BIN = Path(sys.executable).parent
SECRETS = {
    "STRIPE_WEBHOOK_SECRET": "whsec_e2e",
    "PAYSTACK_WEBHOOK_SECRET": "sk_test_e2e",
    "YOCO_WEBHOOK_SECRET": "whsec_ZTJlLXlvY28tc2VjcmV0LWtleQ==",
    "RAZORPAY_WEBHOOK_SECRET": "rzp_e2e",
    "ADYEN_HMAC_KEY": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
    "PAYFAST_PASSPHRASE": "payfast-e2e",
    "PAYFAST_ALLOWED_NETWORKS": "127.0.0.1/32",
    "WALLETPIPE_JWT_SECRET": "e2e-jwt-secret-long-enough-for-hs256-0123",
}


@pytest.fixture(scope="session")
def rabbitmq_url() -> Iterator[str]:
    """A vhost of the session's own on the local RabbitMQ (skips locally, fails in CI)."""
    try:
        with rabbitmq_vhost() as url:
            yield url
    except RabbitmqMissing as exc:
        require_service("RabbitMQ", exc)


# The brokers the suite runs on, comma-separated: `make test` runs it on Redis, and
# `make test-scale` again on RabbitMQ (TEST_E2E_BROKERS=rabbitmq).
E2E_BROKERS = os.environ.get("TEST_E2E_BROKERS", "redis").split(",")
if not set(E2E_BROKERS) <= {"redis", "rabbitmq"}:
    raise ValueError(f"TEST_E2E_BROKERS names redis and/or rabbitmq, not {E2E_BROKERS}")


@pytest.fixture(scope="session", params=E2E_BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str:
    """Every end-to-end test that uses the broker, on each broker of TEST_E2E_BROKERS."""
    if request.param == "rabbitmq":
        url: str = request.getfixturevalue("rabbitmq_url")
        return url
    return empty_test_redis()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    """Whether the web process at `url` answers /healthz."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 (local http)
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Web:
    url: str
    env: dict[str, str]


def process_env(database_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """The environment every process of one test pipeline shares."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "LOG_FORMAT": "text",
        **SECRETS,
        **extra,
    }


def start_web(
    env: dict[str, str],
    log_path: Path,
    *,
    ready: Callable[[subprocess.Popen[bytes]], bool] = lambda _: True,
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn serving create_app() with the production config on a free port, once it answers
    /healthz and `ready(process)` holds."""
    port = free_port()
    env = {**env, "PORT": str(port), "HOST": "127.0.0.1"}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                str(BIN / "gunicorn"),
                "--config",
                "python:webhook_receiver.gunicorn_conf",
                "webhook_receiver:create_app()",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not (answers(url) and ready(process)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"gunicorn did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return process, url


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A pipeline process (worker, scheduler) in a process group of its own, logging to a file."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def worker_command(processes: int = 1, threads: int = 2) -> list[str]:
    return [
        str(BIN / "dramatiq"),
        "workers.actors",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
    ]


def scheduler_command(*options: str) -> list[str]:
    return [str(BIN / "walletctl"), "scheduler", *options]


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    """SIGTERM, as a platform stops a process, and its exit code once it has finished."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout_s)


def api_call(
    web: Web, method: str, path: str, body: object = None, scope: str = "admin"
) -> tuple[int, object]:
    """Call /api/v1 with a token `walletctl token` mints; the status and the JSON answer."""
    token = subprocess.run(
        [str(BIN / "walletctl"), "token", "--sub", "e2e", "--scope", scope],
        env=web.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    request = urllib.request.Request(  # noqa: S310 (the local test server)
        f"{web.url}/api/v1{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def web(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Web]:
    """gunicorn serving create_app() with the production config, on a free port."""
    env = process_env(database_url, broker_url, WEB_CONCURRENCY="1")
    process, url = start_web(env, tmp_path_factory.mktemp("web") / "gunicorn.log")
    yield Web(url, env)
    stop(process)
