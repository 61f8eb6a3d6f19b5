"""Recovery: what a broker outage or a lost job left waiting reaches the workers again, sent
by exactly one scheduler however many run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import update

from ledger import relay
from ledger.db import make_engine, make_session_factory
from ledger.models import InboxEvent
from ledger.topup import create_topup
from webhook_receiver import create_app
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings
from workers.jobs import JobSender
from workers.scheduler import LEADER_LOCK_KEY, Scheduler

from .test_settlement import stored_event

SECRET = "whsec_relay_tests"
WAIT = timedelta(seconds=30)


@pytest.fixture
def own_sessions(fresh_database_url):
    """Sessions of a database of the test's own: the backlog question is about every row."""
    engine = make_engine(fresh_database_url)
    yield make_session_factory(engine)
    engine.dispose()


def test_events_left_waiting_past_the_resend_interval_ring_the_doorbell(own_sessions):
    received = stored_event(own_sessions, reference="x")
    now = datetime.now(UTC)
    with own_sessions() as session:
        assert not relay.inbox_backlog(session, now=now, resend_after=WAIT)
    later = now + WAIT + timedelta(seconds=1)
    with own_sessions() as session:
        assert relay.inbox_backlog(session, now=later, resend_after=WAIT)
    with own_sessions.begin() as session:
        session.execute(
            update(InboxEvent).where(InboxEvent.id == received).values(status="applied")
        )
    with own_sessions() as session:
        assert not relay.inbox_backlog(session, now=later, resend_after=WAIT)


def test_a_parked_event_rings_when_its_retry_time_comes(own_sessions):
    parked = stored_event(own_sessions, reference="x")
    now = datetime.now(UTC)
    with own_sessions.begin() as session:
        session.execute(
            update(InboxEvent)
            .where(InboxEvent.id == parked)
            .values(status="parked", retry_at=now + timedelta(minutes=1))
        )
    with own_sessions() as session:
        assert not relay.inbox_backlog(session, now=now + WAIT, resend_after=WAIT * 100)
        assert relay.inbox_backlog(session, now=now + timedelta(minutes=2), resend_after=WAIT * 100)


def test_events_accepted_while_the_broker_was_down_reach_the_workers(
    worker, database_url, broker_url, engine, make_wallet, sessions, balance_of
):
    wallet = make_wallet()
    with sessions.begin() as session:
        topup = create_topup(session, wallet_id=wallet, amount_minor=700, gateway="stripe").id
    down = create_app(
        ReceiverSettings(
            database_url=database_url,
            broker_url="redis://127.0.0.1:1/0",
            stripe_webhook_secrets=(SECRET,),
        )
    )
    sample = ADAPTERS["stripe"].sample(
        SECRET, amount_minor=700, currency="ZAR", reference=str(topup)
    )
    answer = down.test_client().post(
        "/webhooks/stripe",
        data=sample.body,
        headers=sample.headers,
        content_type=sample.content_type,
    )
    assert answer.get_json() == {"status": "accepted"}
    time.sleep(0.5)
    assert balance_of(wallet).balance_minor == 0  # nothing reached a worker

    scheduler = Scheduler(engine, JobSender(broker_url), resend_after_s=0.1)
    assert scheduler.tick() >= 1
    worker.join("ledger", timeout=20_000)
    assert balance_of(wallet).balance_minor == 700


def test_only_one_scheduler_leads_and_a_standby_takes_over(database_url, broker_url):
    engines = [make_engine(database_url), make_engine(database_url)]
    first, second = (Scheduler(e, JobSender(broker_url)) for e in engines)
    try:
        assert first.try_to_lead()
        assert not second.try_to_lead()
        assert first.try_to_lead()  # still leading
        first._release()
        # The server frees the lock when the dropped connection's backend has exited: soon,
        # but not always before the next statement of another session.
        deadline = time.monotonic() + 10
        while not second.try_to_lead() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert second.leading
    finally:
        first._release()
        second._release()
        for engine in engines:
            engine.dispose()


def leader_locks(database_url):
    """How many sessions hold the scheduler's leader lock in this database.

    Advisory locks are per database, and other databases on the server (other tests', other
    trees') have schedulers of their own: count only this database's lock on the full key.
    """
    with psycopg.connect(database_url) as connection:
        found = connection.execute(
            "SELECT count(*) FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            (LEADER_LOCK_KEY >> 32, LEADER_LOCK_KEY & 0xFFFFFFFF),
        ).fetchone()
    return found[0]


@pytest.mark.slow
def test_two_scheduler_processes_one_leader(fresh_database_url, broker_url, tmp_path):
    walletctl = Path(sys.executable).with_name("walletctl")
    env = {
        **os.environ,
        "DATABASE_URL": fresh_database_url,
        "BROKER_URL": broker_url,
        "LOG_FORMAT": "text",
    }
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    processes = [
        subprocess.Popen(
            [str(walletctl), "scheduler", "--interval-s", "0.2"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        for log in logs
    ]
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and leader_locks(fresh_database_url) == 0:
            time.sleep(0.2)
        time.sleep(1.0)  # both have had several ticks to try
        leading = [i for i, log in enumerate(logs) if "This scheduler leads" in log.read_text()]
        assert len(leading) == 1
        assert leader_locks(fresh_database_url) == 1
        processes[leading[0]].send_signal(signal.SIGKILL)
        processes[leading[0]].wait(timeout=10)
        standby = 1 - leading[0]
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline and "This scheduler leads" not in logs[standby].read_text()
        ):
            time.sleep(0.2)
        assert "This scheduler leads" in logs[standby].read_text()
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10)


def test_undecided_requests_and_unbilled_usage_are_sent_again(
    worker, engine, broker_url, make_wallet, sessions, balance_of
):
    from ledger.provisioning import get_provisioning_request, request_provisioning
    from ledger.usage import record_usage

    wallet = make_wallet(funded_minor=100_000)
    with sessions.begin() as session:  # stored, but their jobs never reached the broker
        request_id = request_provisioning(
            session, wallet_id=wallet, resource_id=f"vm-{uuid.uuid4()}", plan="small"
        ).id
        record_usage(
            session,
            usage_id="u-1",
            wallet_id=wallet,
            resource_id="vm-x",
            description="storage",
            amount_minor=300,
            occurred_at=datetime.now(UTC),
        )
    scheduler = Scheduler(engine, JobSender(broker_url), resend_after_s=0.1)
    time.sleep(0.2)
    assert scheduler.tick() >= 2
    worker.join("provisioning", timeout=20_000)
    worker.join("billing", timeout=20_000)
    with sessions() as session:
        assert get_provisioning_request(session, request_id).status == "approved"
    assert balance_of(wallet).balance_minor == 100_000 - 300
