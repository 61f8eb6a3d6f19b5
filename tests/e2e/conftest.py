"""Processes started the way the Procfile starts them, for tests over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Web:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def web(
    database_url: str, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Web]:
    """gunicorn serving create_app() with the production config, on a free port."""
    tmp_path = tmp_path_factory.mktemp("web")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        "STRIPE_WEBHOOK_SECRET": "whsec_e2e",
        "PAYSTACK_WEBHOOK_SECRET": "sk_test_e2e",
        "YOCO_WEBHOOK_SECRET": "whsec_ZTJlLXlvY28tc2VjcmV0LWtleQ==",
        "RAZORPAY_WEBHOOK_SECRET": "rzp_e2e",
        "ADYEN_HMAC_KEY": "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        "PAYFAST_PASSPHRASE": "payfast-e2e",
        "PAYFAST_ALLOWED_NETWORKS": "127.0.0.1/32",
        "WALLETPIPE_JWT_SECRET": "e2e-jwt-secret-long-enough-for-hs256-0123",
        "LOG_FORMAT": "text",
    }
    log = (tmp_path / "gunicorn.log").open("w")
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
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310 (local http)
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start:\n{(tmp_path / 'gunicorn.log').read_text()}")
            time.sleep(0.1)
    yield Web(url, env)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log.close()
