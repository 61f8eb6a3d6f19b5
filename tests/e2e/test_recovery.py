"""Recovery without the broker's help: a worker SIGKILLed in the middle of a transaction, and
Redis stopped while webhooks arrive. Every accepted event is applied once, through the relay."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from ledger.account import open_wallet
from ledger.topup import create_topup
from webhook_receiver.gateways import ADAPTERS
from workers.scheduler import INTERVAL_S_DEFAULT, RESEND_AFTER_S_DEFAULT

from .conftest import (
    SECRETS,
    free_port,
    process_env,
    scheduler_command,
    start,
    start_web,
    stop,
    worker_command,
)

logger = logging.getLogger(__name__)
# The bound: applied within two minutes of the worker's death, at default settings.
RECOVERY_S_MAX = 120


def new_topup(sessions, amount_minor):
    with sessions.begin() as session:
        wallet = open_wallet(session, f"e2e-{uuid.uuid4()}", "ZAR")
        session.flush()
        return wallet.id, create_topup(
            session, wallet_id=wallet.id, amount_minor=amount_minor, gateway="stripe"
        ).id


def post_capture(url, topup_id, amount_minor):
    sample = ADAPTERS["stripe"].sample(
        SECRETS["STRIPE_WEBHOOK_SECRET"],
        amount_minor=amount_minor,
        currency="ZAR",
        reference=str(topup_id),
        event_id=f"evt_{uuid.uuid4().hex}",
    )
    request = urllib.request.Request(  # noqa: S310 (the local test server)
        f"{url}/webhooks/stripe",
        data=sample.body,
        headers={**sample.headers, "Content-Type": sample.content_type},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        assert answer.status == 200


def balance(database_url, wallet_id):
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT credits_posted - debits_posted FROM accounts WHERE id = %s", (wallet_id,)
        ).fetchone()
    return row[0]


def credits_to(database_url, wallet_id):
    with psycopg.connect(database_url) as connection:
        return connection.execute(
            "SELECT count(*) FROM transfers WHERE credit_account_id = %s", (wallet_id,)
        ).fetchone()[0]


def wait_until(condition, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    pytest.fail(f"{what} within {timeout_s} s")


def waiting_on_a_lock(database_url):
    """Whether a walletpipe connection is inside a transaction, blocked on a row lock."""
    with psycopg.connect(database_url) as connection:
        return (
            connection.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'walletpipe' AND wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ).fetchone()[0]
            > 0
        )


@pytest.mark.slow
def test_a_worker_killed_mid_transaction_loses_nothing_and_applies_once(
    web, database_url, sessions, tmp_path
):
    wallet, topup_id = new_topup(sessions, 4200)
    worker = start(worker_command(threads=1), web.env, tmp_path / "killed-worker.log")
    blocker = psycopg.connect(database_url)
    try:
        # The worker will lock the inbox row, then wait here, on the top-up's row: mid-transaction.
        blocker.execute("SELECT 1 FROM topups WHERE id = %s FOR UPDATE", (topup_id,))
        post_capture(web.url, topup_id, 4200)
        wait_until(lambda: waiting_on_a_lock(database_url), 30, "the worker never got to the lock")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        blocker.rollback()
        blocker.close()
    killed_at = time.monotonic()
    assert balance(database_url, wallet) == 0  # the killed transaction committed nothing

    # A fresh worker and the scheduler, at their default settings.
    survivors = [
        start(worker_command(), web.env, tmp_path / "worker.log"),
        start(scheduler_command(), web.env, tmp_path / "scheduler.log"),
    ]
    try:
        wait_until(
            lambda: balance(database_url, wallet) == 4200,
            RECOVERY_S_MAX,
            "the event was not applied after the worker's death",
        )
        recovered_s = time.monotonic() - killed_at
        logger.info("Applied %.1f s after the worker was killed.", recovered_s)
        # The relay re-sends after RESEND_AFTER_S_DEFAULT, checked every INTERVAL_S_DEFAULT.
        assert recovered_s < RESEND_AFTER_S_DEFAULT + INTERVAL_S_DEFAULT + 15
        time.sleep(2 * INTERVAL_S_DEFAULT)  # any late redelivery has had its chance
        assert balance(database_url, wallet) == 4200
        assert credits_to(database_url, wallet) == 1
    finally:
        assert [stop(process) for process in survivors] == [0, 0]


@pytest.mark.slow
def test_rabbitmq_hands_a_killed_workers_job_to_another_worker_without_the_relay(
    database_url, sessions, rabbitmq_url, tmp_path
):
    env = process_env(database_url, rabbitmq_url, WEB_CONCURRENCY="1")
    web, url = start_web(env, tmp_path / "web.log")
    wallet, topup_id = new_topup(sessions, 3100)
    worker = start(worker_command(threads=1), env, tmp_path / "killed-worker.log")
    blocker = psycopg.connect(database_url)
    try:
        blocker.execute("SELECT 1 FROM topups WHERE id = %s FOR UPDATE", (topup_id,))
        post_capture(url, topup_id, 3100)
        wait_until(lambda: waiting_on_a_lock(database_url), 30, "the worker never got to the lock")
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        blocker.rollback()
        blocker.close()
    assert balance(database_url, wallet) == 0
    # No scheduler runs, so no relay re-sends: only the broker's redelivery of the unacked job.
    survivor = start(worker_command(), env, tmp_path / "worker.log")
    try:
        wait_until(
            lambda: balance(database_url, wallet) == 3100,
            RECOVERY_S_MAX,
            "RabbitMQ did not redeliver the killed worker's job",
        )
        assert credits_to(database_url, wallet) == 1
    finally:
        codes = [stop(survivor), stop(web)]
    assert codes == [0, 0]


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of the test's own, to stop and start again; yields its URL and a restart."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    command = [
        server,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    processes = []

    def up():
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        client = redis.Redis(port=port)
        wait_until(lambda: _pings(client), 10, "Redis did not start")

    def down():
        processes[-1].terminate()
        processes[-1].wait(timeout=10)

    up()
    yield f"redis://127.0.0.1:{port}/0", down, up
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _pings(client):
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.mark.slow
def test_webhooks_accepted_while_redis_is_down_are_applied_when_it_returns(
    fresh_database_url, private_redis, tmp_path
):
    broker_url, redis_down, redis_up = private_redis
    env = process_env(fresh_database_url, broker_url, WEB_CONCURRENCY="1")
    web, url = start_web(env, tmp_path / "web.log")
    pipeline = [
        start(worker_command(), env, tmp_path / "worker.log"),
        start(
            scheduler_command("--interval-s", "0.5", "--resend-after-s", "2"),
            env,
            tmp_path / "scheduler.log",
        ),
    ]
    engine_url = make_url(fresh_database_url).set(drivername="postgresql+psycopg")
    from ledger.db import make_engine, make_session_factory

    engine = make_engine(engine_url.render_as_string(hide_password=False))
    try:
        sessions = make_session_factory(engine)
        topups = [new_topup(sessions, 1000 + i) for i in range(5)]
        redis_down()
        for i, (_, topup_id) in enumerate(topups):
            post_capture(url, topup_id, 1000 + i)  # 200: durable in the inbox
        time.sleep(3)
        assert [balance(fresh_database_url, w) for w, _ in topups] == [0] * 5
        redis_up()
        wait_until(
            lambda: (
                [balance(fresh_database_url, w) for w, _ in topups] == [1000 + i for i in range(5)]
            ),
            60,
            "the events accepted during the outage were not applied",
        )
        assert [credits_to(fresh_database_url, w) for w, _ in topups] == [1] * 5
    finally:
        engine.dispose()
        codes = [stop(process) for process in pipeline]
        stop(web)
    assert codes == [0, 0]
