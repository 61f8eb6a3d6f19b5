"""Dead letters: a job the workers give up on is kept in PostgreSQL with its error, listed by
`walletctl dlq list` and sent again, once, by `walletctl dlq replay`."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ledger import deadletter
from ledger.models import DeadLetter
from walletctl.cli import cli
from workers.jobs import APPLY_INBOX_BATCH, JobSender


@pytest.fixture
def walletctl(database_url, broker_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("BROKER_URL", broker_url)
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, ["--json", *args], catch_exceptions=False)
        return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None

    return run


def letters_for(sessions, message_id):
    with sessions() as session:
        return session.scalars(select(DeadLetter).where(DeadLetter.message_id == message_id)).all()


def wait_for_letter(sessions, message_id, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = letters_for(sessions, message_id)
        if found:
            return found[0]
        time.sleep(0.1)
    pytest.fail(f"message {message_id} never became a dead letter")


def send_broken_job(broker_url):
    """A job no retry can mend: the doorbell takes no argument."""
    sender = JobSender(broker_url)
    try:
        return sender.send_message(APPLY_INBOX_BATCH, "an-argument-it-does-not-take")
    finally:
        sender.close()


def test_a_job_that_fails_for_good_becomes_a_dead_letter_and_replays_once(
    worker, sessions, broker_url, walletctl
):
    message_id = send_broken_job(broker_url)
    letter = wait_for_letter(sessions, message_id)
    assert (letter.queue_name, letter.actor_name, letter.args) == (
        "ledger",
        "apply_inbox_batch",
        ["an-argument-it-does-not-take"],
    )
    assert "Error" in letter.error  # the exception the actor raised, with its traceback

    code, listed = walletctl("dlq", "list")
    assert code == 0
    [shown] = [item for item in listed["dead_letters"] if item["id"] == letter.id]
    assert shown["queue"] == "ledger"
    assert shown["actor"] == "apply_inbox_batch"
    assert shown["age"].endswith("s")

    code, replayed = walletctl("dlq", "replay", "--id", str(letter.id))
    assert (code, replayed["replayed"]) == (0, [letter.id])
    with sessions() as session:
        again = session.get(DeadLetter, letter.id)
        assert again.replayed_at is not None
    # The replay ran and failed again: a new dead letter, the old one replayed for good.
    wait_for_letter(sessions, again.replay_message_id)
    code, _ = walletctl("dlq", "replay", "--id", str(letter.id))
    assert code == 1  # replayed already: not sent a second time
    code, listed = walletctl("dlq", "list")
    assert letter.id not in [item["id"] for item in listed["dead_letters"]]


def test_only_lost_connections_and_conflicts_count_as_transient():
    from psycopg import errors
    from sqlalchemy.exc import IntegrityError, InternalError, OperationalError

    from workers.broker import is_transient

    assert is_transient(OperationalError("SELECT 1", {}, errors.AdminShutdown()))
    # The server ended a transaction that idled too long: nothing of it was committed.
    assert is_transient(InternalError("SELECT 1", {}, errors.IdleInTransactionSessionTimeout()))
    assert not is_transient(IntegrityError("INSERT", {}, errors.UniqueViolation()))
    assert not is_transient(ValueError("a bug"))


def test_replaying_an_unknown_dead_letter_says_so(walletctl):
    code, result = walletctl("dlq", "replay", "--id", "987654321")
    assert code == 1
    assert result["not_replayed"] == [987654321]


def test_a_dead_per_row_delivery_job_replays_as_the_doorbell(walletctl, sessions, redis_client):
    old_message_id = f"old-{uuid.uuid4()}"
    with sessions.begin() as session:  # left by a worker from before delivery was batched
        deadletter.record(
            session,
            deadletter.FailedJob(
                message_id=old_message_id,
                queue_name="notifications",
                actor_name="deliver_notification",
                args=[12345],
                kwargs={},
                error="OperationalError: server closed the connection",
            ),
        )
    [letter] = letters_for(sessions, old_message_id)
    letter_id = letter.id
    code, result = walletctl("dlq", "replay", "--id", str(letter_id))
    assert (code, result["replayed"]) == (0, [letter_id])
    with sessions() as session:
        message_id = session.get(DeadLetter, letter_id).replay_message_id
    queued = [json.loads(raw) for raw in redis_client.hvals("dramatiq:notifications.msgs")]
    [sent] = [message for message in queued if message["message_id"] == message_id]
    assert (sent["actor_name"], sent["args"]) == ("deliver_notifications", [])
