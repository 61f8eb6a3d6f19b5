"""The whole pipeline as `make run` starts it: gunicorn, a Dramatiq worker and the scheduler as
processes; signed webhooks from `walletctl webhook send`; balances read over the API."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from .conftest import BIN

GATEWAYS = ["stripe", "paystack", "yoco", "razorpay", "adyen", "payfast"]


@pytest.fixture(scope="module")
def pipeline(web, tmp_path_factory):
    """The web process plus a worker and a scheduler, started as the Procfile starts them."""
    logs = tmp_path_factory.mktemp("pipeline")
    processes = [
        subprocess.Popen(
            command,
            env=web.env,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for name, command in (
            (
                "worker",
                [str(BIN / "dramatiq"), "workers.actors", "--processes", "1", "--threads", "2"],
            ),
            (
                "scheduler",
                [
                    str(BIN / "walletctl"),
                    "scheduler",
                    "--interval-s",
                    "0.5",
                    "--resend-after-s",
                    "2",
                ],
            ),
        )
    ]
    yield web
    for process in processes:
        process.send_signal(signal.SIGTERM)  # graceful: in-flight work finishes
    for process in processes:
        assert process.wait(timeout=30) == 0


def api(web, method, path, body=None):
    token = subprocess.run(
        [str(BIN / "walletctl"), "token", "--sub", "e2e", "--scope", "admin"],
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
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.load(answer)


@pytest.mark.slow
def test_signed_webhooks_of_every_gateway_credit_their_wallets(pipeline):
    expected = {}
    for index, gateway in enumerate(GATEWAYS):
        wallet = api(
            pipeline, "POST", "/wallets", {"owner_id": f"e2e-{uuid.uuid4()}", "currency": "ZAR"}
        )["id"]
        amount = 1000 + index
        topup = api(
            pipeline,
            "POST",
            "/topups",
            {"wallet_id": wallet, "amount_minor": amount, "gateway": gateway},
        )["id"]
        for _ in range(2):  # the gateway delivers twice
            sent = subprocess.run(
                [
                    str(BIN / "walletctl"),
                    "webhook",
                    "send",
                    gateway,
                    "--amount-minor",
                    str(amount),
                    "--currency",
                    "ZAR",
                    "--reference",
                    topup,
                    "--event-id",
                    f"evt{topup.replace('-', '')[:20]}",
                    "--url",
                    f"{pipeline.url}/webhooks/{gateway}",
                ],
                env=pipeline.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert sent.returncode == 0, sent.stderr
        expected[wallet] = amount

    deadline = time.monotonic() + 60
    balances = {}
    while time.monotonic() < deadline:
        balances = {w: api(pipeline, "GET", f"/wallets/{w}")["balance_minor"] for w in expected}
        if balances == expected:
            break
        time.sleep(0.5)
    assert balances == expected
    verified = subprocess.run(
        [str(BIN / "walletctl"), "verify"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout
