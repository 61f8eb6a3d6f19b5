"""Batched delivery: one doorbell, workers claiming due outbox events in batches that skip each
other's rows, every channel given each event once, a failing channel retried on its own.

Each test has a database of its own: the doorbell delivers whatever is due, so counting what
a channel received is exact only where every event is the test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, update
from standardwebhooks import Webhook

from ledger import contact, outbox, relay
from ledger.account import open_wallet
from ledger.db import make_engine, make_session_factory
from ledger.models import OutboxDelivery, OutboxEvent
from tests.http_recorder import recording_server
from workers.jobs import JobSender
from workers.scheduler import Scheduler

HOOK_SECRET = "whsec_" + "b3V0Ym91bmQtd2ViaG9vay1zZWNyZXQ="  # base64 of a test key
WAIT = timedelta(seconds=30)


@pytest.fixture
def own_sessions(fresh_database_url):
    engine = make_engine(fresh_database_url, pool_size=5)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def receivers():
    """A WhatsApp Cloud API stand-in and two subscribers, each recording requests."""
    with (
        recording_server() as whatsapp,
        recording_server() as subscriber,
        recording_server() as second,
    ):
        yield whatsapp, subscriber, second


@pytest.fixture
def workers(receivers, fresh_database_url, broker_url, monkeypatch):
    """The workers' process state on the test's database, every channel configured."""
    whatsapp, subscriber, second = receivers
    for name, value in {
        "DATABASE_URL": fresh_database_url,
        "BROKER_URL": broker_url,
        "NOTIFY_CHANNELS": "log,whatsapp,webhooks",
        "WHATSAPP_API_URL": f"{whatsapp.url}/v21.0",
        "WHATSAPP_TOKEN": "wa-test-token",
        "WHATSAPP_PHONE_NUMBER_ID": "1098765",
        "NOTIFY_WEBHOOK_URLS": f"{subscriber.url}/hooks/walletpipe,{second.url}/in",
        "NOTIFY_WEBHOOK_SECRET": HOOK_SECRET,
        "NOTIFY_BATCH_MAX": "8",
    }.items():
        monkeypatch.setenv(name, value)
    from workers import actors, process

    process.reset()
    yield actors
    process.reset()


def credited(sessions, *, count=1, whatsapp="+27 82 123 4567", amount_minor=5000):
    """`count` wallet.credited events, each for a wallet of its own; their ids."""
    ids = []
    with sessions.begin() as session:
        for _ in range(count):
            wallet = open_wallet(session, f"owner-{uuid.uuid4()}", "ZAR")
            session.flush()
            if whatsapp:
                contact.set_whatsapp(session, wallet.owner_id, whatsapp)
            ids.append(
                outbox.emit_for_wallet(
                    session,
                    "wallet.credited",
                    key=f"credited:{uuid.uuid4()}",
                    wallet_id=wallet.id,
                    data={"amount_minor": amount_minor},
                )
            )
    return ids


def hook_ids(recorder):
    return Counter(request.headers["webhook-id"] for request in recorder.received)


def test_a_notification_reaches_whatsapp_and_signed_webhooks_once(own_sessions, workers, receivers):
    whatsapp, subscriber, second = receivers
    [event_id] = credited(own_sessions)
    workers.deliver_notifications()
    workers.deliver_notifications()  # a repeated doorbell: everything has it already

    [message] = whatsapp.received
    assert message.path == "/v21.0/1098765/messages"
    assert message.headers["authorization"] == "Bearer wa-test-token"
    assert message.json()["to"] == "27821234567"
    assert message.json()["template"]["name"] == "topup_confirmation"
    [hook] = subscriber.on("/hooks/walletpipe")
    # The Standard Webhooks reference library accepts our signature.
    verified = Webhook(HOOK_SECRET).verify(hook.body, hook.headers)
    assert verified["type"] == "wallet.credited"
    assert verified["data"]["amount_minor"] == 5000
    assert hook.headers["webhook-id"] == f"evt_{event_id}"
    assert len(second.on("/in")) == 1
    with own_sessions() as session:
        delivered = session.get(OutboxEvent, event_id)
        assert delivered.delivered_at is not None
        assert delivered.attempts == 1


def test_an_owner_without_a_number_gets_no_whatsapp_but_subscribers_hear(
    own_sessions, workers, receivers
):
    whatsapp, subscriber, _ = receivers
    credited(own_sessions, whatsapp=None)
    workers.deliver_notifications()
    assert whatsapp.received == []
    assert len(subscriber.received) == 1


def test_a_failing_channel_among_good_ones_is_retried_alone_after_its_backoff(
    own_sessions, workers, receivers
):
    whatsapp, subscriber, second = receivers
    events = credited(own_sessions, count=5)
    second.status = 503
    before = datetime.now(UTC)
    workers.deliver_notifications()

    assert hook_ids(subscriber) == {f"evt_{e}": 1 for e in events}
    assert len(whatsapp.received) == 5
    with own_sessions() as session:
        for event_id in events:
            waiting = session.get(OutboxEvent, event_id)
            assert waiting.delivered_at is None
            assert waiting.attempts == 1
            assert "HTTP 503" in waiting.last_error
            assert waiting.next_attempt_at >= before + outbox.BACKOFF_MIN
        taken = session.execute(
            select(OutboxDelivery.channel, func.count())
            .where(OutboxDelivery.event_id.in_(events))
            .group_by(OutboxDelivery.channel)
        ).all()
    assert dict(taken) == {"log": 5, "whatsapp": 5, f"webhook:{subscriber.url}/hooks/walletpipe": 5}

    second.status = 200
    workers.deliver_notifications()  # still waiting out the backoff: nothing is claimed
    assert len(second.received) == 5
    with own_sessions.begin() as session:  # the backoff has run out
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(events))
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    workers.deliver_notifications()
    assert len(whatsapp.received) == 5  # not sent again
    assert hook_ids(subscriber) == {f"evt_{e}": 1 for e in events}  # not sent again
    assert hook_ids(second) == {f"evt_{e}": 2 for e in events}  # the failed try, then this one
    with own_sessions() as session:
        assert all(session.get(OutboxEvent, e).delivered_at is not None for e in events)
        assert {session.get(OutboxEvent, e).attempts for e in events} == {2}


def test_delivery_gives_up_after_the_last_attempt(own_sessions, workers, receivers):
    _, subscriber, _ = receivers
    [event_id] = credited(own_sessions)
    subscriber.status = 500
    with own_sessions.begin() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id)
            .values(attempts=outbox.ATTEMPTS_MAX - 1)
        )
    workers.deliver_notifications()
    with own_sessions.begin() as session:
        failed = session.get(OutboxEvent, event_id)
        assert failed.failed_at is not None
        assert failed.next_attempt_at is None
        far_later = datetime.now(UTC) + timedelta(days=30)
        assert not relay.undelivered_waiting(session, now=far_later, resend_after=WAIT)
        assert outbox.claim_due(session, now=far_later) == []
    workers.deliver_notifications()
    assert len(subscriber.received) == 1  # failed for good: not tried again


def test_racing_workers_deliver_every_event_once_to_every_channel(own_sessions, workers, receivers):
    whatsapp, subscriber, second = receivers
    events = credited(own_sessions, count=120)
    errors = []

    def worker_thread():
        try:
            for _ in range(40):  # each a separate doorbell, as several workers would get
                workers.deliver_notifications()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    expected = {f"evt_{e}": 1 for e in events}
    assert hook_ids(subscriber) == expected
    assert hook_ids(second) == expected
    assert len(whatsapp.received) == len(events)
    with own_sessions() as session:
        undelivered = session.scalar(
            select(func.count())
            .select_from(OutboxEvent)
            .where(OutboxEvent.id.in_(events), OutboxEvent.delivered_at.is_(None))
        )
    assert undelivered == 0


def count_statements(engine):
    """The statements `engine` runs while the block runs, as a list the block can read."""
    statements = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    return statements, lambda: event.remove(engine, "before_cursor_execute", seen)


def test_a_batch_costs_the_same_statements_whatever_its_size(own_sessions, workers, monkeypatch):
    from workers import process
    from workers.delivery import deliver_due

    counts = {}
    for size in (2, 8):
        monkeypatch.setenv("NOTIFY_BATCH_MAX", str(size))
        process.reset()
        credited(own_sessions, count=size)
        statements, stop = count_statements(process.sessions().kw["bind"])
        try:
            done = deliver_due(
                process.sessions(), process.channels(), process.send_pool(), limit=size
            )
        finally:
            stop()
        assert done.claimed == size
        assert done.outcomes == {"delivered": size}
        counts[size] = len(statements)
    # The claim (owner and contact joined in) and the closing UPDATE: no reload, no per-row.
    assert counts == {2: 2, 8: 2}


def test_the_relay_rings_once_for_a_backlog(own_sessions, fresh_database_url, broker_url):
    events = credited(own_sessions, count=30, whatsapp=None)
    now = datetime.now(UTC)
    with own_sessions.begin() as session:
        assert not relay.undelivered_waiting(session, now=now, resend_after=WAIT)
        session.execute(  # their doorbell was lost a while ago
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(events))
            .values(created_at=func.now() - 2 * WAIT)
        )
    engine = make_engine(fresh_database_url)
    try:
        scheduler = Scheduler(engine, JobSender(broker_url), resend_after_s=WAIT.total_seconds())
        assert scheduler.tick() == 1  # one doorbell for thirty events
        assert scheduler.tick() == 0  # rung already: not again within resend_after
        later = datetime.now(UTC) + WAIT + timedelta(seconds=1)
        assert scheduler.tick(later) == 1  # still waiting (no worker ran): rung again
    finally:
        engine.dispose()


def test_the_relay_rings_when_a_backoff_runs_out_and_never_for_a_failed_event(own_sessions):
    [event_id] = credited(own_sessions, whatsapp=None)
    now = datetime.now(UTC)

    def waiting(**values):
        with own_sessions.begin() as session:
            if values:
                session.execute(
                    update(OutboxEvent).where(OutboxEvent.id == event_id).values(**values)
                )
            return relay.undelivered_waiting(session, now=now, resend_after=WAIT)

    assert not waiting()  # fresh: its own doorbell is on its way
    assert not waiting(next_attempt_at=now + timedelta(seconds=5))  # backing off
    assert waiting(next_attempt_at=now - timedelta(seconds=5))  # backoff over: nobody else rings
    assert not waiting(next_attempt_at=None, failed_at=now)  # given up on


DELIVER_ONCE = """
from workers import actors
actors.deliver_notifications()
"""


def test_a_worker_killed_mid_batch_leaves_its_batch_to_be_sent_again_and_nothing_lost(
    own_sessions, workers, receivers, monkeypatch
):
    _, subscriber, _ = receivers
    events = credited(own_sessions, count=20, whatsapp=None)
    subscriber.delay_s = 0.3  # the batch is still sending when the worker dies
    monkeypatch.setenv("NOTIFY_CHANNELS", "webhooks")
    monkeypatch.setenv("NOTIFY_WEBHOOK_URLS", f"{subscriber.url}/hooks/walletpipe")
    worker = subprocess.Popen([sys.executable, "-c", DELIVER_ONCE], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while not subscriber.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert subscriber.received, "the worker never sent anything"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    sent_before_the_kill = hook_ids(subscriber)
    with own_sessions() as session:  # nothing the dead worker sent was recorded
        assert (
            session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.id.in_(events), OutboxEvent.attempts > 0)
            )
            == 0
        )

    subscriber.delay_s = 0.0
    from workers import process

    process.reset()
    workers.deliver_notifications()  # the next doorbell: the dead worker's locks are gone
    received = hook_ids(subscriber)
    assert set(received) == {f"evt_{e}" for e in events}  # nothing lost
    # The at-least-once window: what the dead worker had sent comes again, with the same id,
    # and that is at most its one batch (NOTIFY_BATCH_MAX, 8 here).
    twice = {hook for hook, times in received.items() if times > 1}
    assert set(sent_before_the_kill) <= twice
    assert len(twice) <= 8
    assert all(times <= 2 for times in received.values())
    with own_sessions() as session:
        assert all(session.get(OutboxEvent, e).delivered_at is not None for e in events)
