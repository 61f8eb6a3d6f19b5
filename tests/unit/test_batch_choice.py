"""A worker batches a hot wallet's captures only behind a queue: a job that waited says others
wait too, and without one a search for companions would cost every event a query for none."""

from __future__ import annotations

import time

import pytest
from dramatiq import Message
from dramatiq.middleware import CurrentMessage

from ledger import settlement
from workers import actors


def job(waited_ms):
    return Message(
        queue_name="ledger",
        actor_name="apply_gateway_event",
        args=(1,),
        kwargs={},
        options={},
        message_timestamp=int(time.time() * 1000 - waited_ms),
    )


@pytest.fixture
def current():
    middleware = CurrentMessage()

    def run(message):
        middleware.before_process_message(None, message)
        try:
            return actors._batch_max()
        finally:
            middleware.after_process_message(None, message)

    return run


def test_a_job_that_queued_brings_companions(current):
    assert current(job(waited_ms=5 * actors.BATCH_AFTER_WAIT_MS)) == settlement.BATCH_MAX_DEFAULT


def test_a_job_picked_up_at_once_goes_alone(current):
    assert current(job(waited_ms=0)) == 1


def test_a_direct_call_goes_alone():
    assert actors._batch_max() == 1
