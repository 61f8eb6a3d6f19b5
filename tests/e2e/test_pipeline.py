"""The whole pipeline as `make run` starts it: gunicorn, a Dramatiq worker and the scheduler as
processes; signed webhooks from `walletctl webhook send`; balances read over the API."""

from __future__ import annotations

import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass

import pytest
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

from tests.http_recorder import Recorder, recording_server

from .conftest import (
    BIN,
    api_call,
    free_port,
    scheduler_command,
    start,
    stop,
    worker_command,
)

GATEWAYS = ["stripe", "paystack", "yoco", "razorpay", "adyen", "payfast"]


HOOK_SECRET = "whsec_ZTJlLXN1YnNjcmliZXItc2VjcmV0"


@dataclass(frozen=True)
class Pipeline:
    url: str
    env: dict[str, str]
    subscriber: Recorder
    worker_metrics_url: str


@pytest.fixture(scope="module")
def pipeline(web, tmp_path_factory):
    """The web process plus a worker and a scheduler, started as the Procfile starts them; the
    worker notifies a local subscriber by signed webhook and exports its metrics."""
    logs = tmp_path_factory.mktemp("pipeline")
    metrics_port = free_port()
    with recording_server() as subscriber:
        env = {
            **web.env,
            "NOTIFY_CHANNELS": "log,webhooks",
            "NOTIFY_WEBHOOK_URLS": f"{subscriber.url}/walletpipe",
            "NOTIFY_WEBHOOK_SECRET": HOOK_SECRET,
            # Dramatiq's own exporter settings, read by the process it forks for them.
            "dramatiq_prom_port": str(metrics_port),
            "dramatiq_prom_host": "127.0.0.1",
            "dramatiq_prom_db": str(logs / "prometheus"),
        }
        processes = [
            start(worker_command(), env, logs / "worker.log"),
            start(
                scheduler_command("--interval-s", "0.5", "--resend-after-s", "2"),
                env,
                logs / "scheduler.log",
            ),
        ]
        yield Pipeline(web.url, web.env, subscriber, f"http://127.0.0.1:{metrics_port}/metrics")
        # Graceful: in-flight work finishes, and both exit cleanly.
        assert [stop(process) for process in processes] == [0, 0]


def api(web, method, path, body=None):
    status, answer = api_call(web, method, path, body)
    assert status < 300, answer
    return answer


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

    # Each credit reached the subscriber, signed, once (the gateway's repeat announces nothing).
    deadline = time.monotonic() + 30
    credited = {}
    while time.monotonic() < deadline and set(credited) != set(expected):
        credited = {}
        for hook in pipeline.subscriber.on("/walletpipe"):
            event = Webhook(HOOK_SECRET).verify(hook.body, hook.headers)
            if event["type"] == "wallet.credited":
                credited.setdefault(event["data"]["wallet_id"], []).append(
                    event["data"]["amount_minor"]
                )
        time.sleep(0.2)
    assert credited == {wallet: [amount] for wallet, amount in expected.items()}

    # The worker's own Prometheus exporter counted the jobs.
    with urllib.request.urlopen(pipeline.worker_metrics_url, timeout=10) as answer:  # noqa: S310
        families = {f.name: f for f in text_string_to_metric_families(answer.read().decode())}
    processed = {
        sample.labels["actor_name"]: sample.value
        for sample in families["dramatiq_messages"].samples
        if sample.name == "dramatiq_messages_total"
    }
    assert processed["apply_inbox_batch"] >= 1
    assert processed["deliver_notifications"] >= 1  # a doorbell: one may serve every event
