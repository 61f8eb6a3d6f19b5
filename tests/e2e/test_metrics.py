"""/metrics under gunicorn with several worker processes, in prometheus_client multiprocess mode."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from webhook_receiver.gateways import ADAPTERS

from .conftest import start_web, stop

STRIPE_SECRET = "whsec_e2e_metrics"
WORKERS = 3
NEW = ("walletpipe_webhooks_total", frozenset({("gateway", "stripe"), ("outcome", "new")}))


@dataclass(frozen=True)
class MultiprocessWeb:
    url: str
    pid: int
    multiproc_dir: Path


@pytest.fixture(scope="module")
def multiprocess_web(database_url, broker_url, tmp_path_factory):
    """gunicorn with WORKERS processes sharing one PROMETHEUS_MULTIPROC_DIR."""
    tmp_path = tmp_path_factory.mktemp("web-metrics")
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "WEB_CONCURRENCY": str(WORKERS),
        "WEB_THREADS": "1",
        "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "LOG_FORMAT": "text",
    }
    process, url = start_web(
        env, tmp_path / "gunicorn.log", ready=lambda p: len(_children(p.pid)) == WORKERS
    )
    yield MultiprocessWeb(url, process.pid, multiproc_dir)
    stop(process)


def _children(pid):
    return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()


def scrape(url):
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # noqa: S310
        assert response.status == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.read().decode())
            for sample in family.samples
        }


def post_stripe(url):
    sample = ADAPTERS["stripe"].sample(
        STRIPE_SECRET,
        amount_minor=1500,
        currency="ZAR",
        reference=f"topup-{uuid.uuid4()}",
        event_id=f"evt_{uuid.uuid4().hex}",
    )
    request = urllib.request.Request(  # noqa: S310 (local http)
        f"{url}/webhooks/stripe",
        data=sample.body,
        headers={**sample.headers, "Content-Type": sample.content_type},
        method="POST",
    )
    # A new connection each time, so gunicorn spreads the requests over its processes.
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


def webhooks_new(url):
    return scrape(url).get(NEW)


@pytest.mark.slow
def test_every_process_counts_into_one_scrape(multiprocess_web):
    posted = 12
    for _ in range(posted):
        post_stripe(multiprocess_web.url)

    totals = {webhooks_new(multiprocess_web.url) for _ in range(WORKERS * 2)}

    # Counted by more than one process (each keeps its own file), summed by whichever answers.
    assert len(list(multiprocess_web.multiproc_dir.glob("counter_*.db"))) > 1
    assert totals == {posted}
    assert scrape(multiprocess_web.url)[("walletpipe_database_up", frozenset())] == 1


@pytest.mark.slow
def test_a_worker_that_exits_keeps_its_counts_and_gunicorn_runs_on(multiprocess_web):
    before = webhooks_new(multiprocess_web.url)
    # One worker fewer: gunicorn stops one and runs child_exit, which must not stop gunicorn.
    os.kill(multiprocess_web.pid, signal.SIGTTOU)

    deadline = time.monotonic() + 30
    while len(_children(multiprocess_web.pid)) >= WORKERS:
        assert time.monotonic() < deadline, "gunicorn did not stop a worker"
        time.sleep(0.1)
    post_stripe(multiprocess_web.url)

    assert webhooks_new(multiprocess_web.url) == before + 1
