"""The receiver's group commit: concurrent requests share a COMMIT, each hears its own outcome
only once its rows are durable, and one request the database refuses holds back no other."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from ledger.inbox import IncomingEvent, Outcome
from ledger.models import InboxEvent
from webhook_receiver.inbox_writer import InboxWriter, StorageUnavailable


def event(event_id=None, gateway="stripe", amount_minor=100, actionable=True):
    return IncomingEvent(
        gateway=gateway,
        event_id=event_id or f"evt_{uuid.uuid4().hex}",
        kind="payment_succeeded" if actionable else "other",
        actionable=actionable,
        payment_id=f"pi_{uuid.uuid4().hex[:12]}",
        amount_minor=amount_minor,
        currency="ZAR",
        reference=str(uuid.uuid4()),
        payment_method=None,
        occurred_at=None,
        payload={"id": str(uuid.uuid4()), "amount": amount_minor},
        body=b"{}",
        headers={},
    )


class Recorder:
    """The writer's callbacks: commits and their rows, doorbell rings."""

    def __init__(self):
        self.commits: list[int] = []
        self.rings = 0
        self._lock = threading.Lock()

    def on_commit(self, rows):
        with self._lock:
            self.commits.append(rows)

    def ring(self):
        with self._lock:
            self.rings += 1


def writer_for(url, recorder, **overrides):
    settings = dict(rows_max=64, wait_ms=2, doorbell_interval_ms=0, idle_s=2.0)
    settings.update(overrides)
    return InboxWriter(url, ring=recorder.ring, on_commit=recorder.on_commit, **settings)


def stored(sessions, events):
    with sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(InboxEvent)
            .where(InboxEvent.event_id.in_([e.event_id for e in events]))
        )


def test_concurrent_requests_share_commits_and_each_hears_its_own_outcome(database_url, sessions):
    recorder = Recorder()
    writer = writer_for(database_url, recorder, wait_ms=20)
    events = [event() for _ in range(64)]
    start = threading.Barrier(16)

    def request(mine):
        start.wait()
        return [writer.store([e]) for e in mine]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(request, [events[i::16] for i in range(16)]))
    outcomes = [recorded.outcome for answer in answers for [recorded] in answer]
    assert outcomes == [Outcome.NEW] * 64
    assert stored(sessions, events) == 64
    assert sum(recorder.commits) == 64
    assert len(recorder.commits) < 64  # requests that waited together shared a commit
    assert recorder.rings >= 1


def test_repeats_in_one_batch_and_across_batches_are_told_apart(database_url, sessions):
    recorder = Recorder()
    writer = writer_for(database_url, recorder)
    first = event()
    changed = dataclasses.replace(first, payload={"tampered": True})
    ignored = event(actionable=False)
    answer = writer.store([first, first, ignored])
    assert [r.outcome for r in answer] == [Outcome.NEW, Outcome.DUPLICATE, Outcome.IGNORED]
    assert answer[0].inbox_id == answer[1].inbox_id
    again = writer.store([first, changed])
    assert [r.outcome for r in again] == [Outcome.DUPLICATE, Outcome.CONFLICT]
    assert {r.inbox_id for r in again} == {answer[0].inbox_id}
    assert stored(sessions, [first, ignored]) == 2
    assert recorder.rings == 1  # only the commit that stored something new rang


def test_a_request_the_database_refuses_holds_back_no_other(database_url, sessions):
    recorder = Recorder()
    writer = writer_for(database_url, recorder, wait_ms=50)
    good = [event() for _ in range(8)]
    bad = event(event_id="x" * 300)  # longer than the inbox's check constraint allows
    start = threading.Barrier(9)

    def request(events):
        start.wait()
        try:
            return writer.store(events)
        except StorageUnavailable:
            return "refused"

    with ThreadPoolExecutor(max_workers=9) as pool:
        answers = list(pool.map(request, [[e] for e in good] + [[bad]]))
    assert answers[-1] == "refused"
    assert all(a != "refused" and a[0].outcome is Outcome.NEW for a in answers[:-1])
    assert stored(sessions, good) == 8
    assert stored(sessions, [bad]) == 0


def test_with_the_database_down_nothing_is_stored_and_every_request_hears_it():
    recorder = Recorder()
    writer = writer_for("postgresql://127.0.0.1:1/walletpipe", recorder)
    with pytest.raises(StorageUnavailable):
        writer.store([event()])
    assert recorder.commits == []
    assert recorder.rings == 0


def test_the_writer_goes_idle_and_comes_back(database_url, sessions):
    recorder = Recorder()
    writer = writer_for(database_url, recorder, idle_s=0.2)
    first = event()
    writer.store([first])
    deadline = time.monotonic() + 10
    while writer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer._thread is None
    assert writer._connection is None
    second = event()
    assert writer.store([second])[0].outcome is Outcome.NEW
    assert stored(sessions, [first, second]) == 2


def test_rings_are_held_back_within_the_interval_and_sent_when_it_ends(database_url):
    recorder = Recorder()
    writer = writer_for(database_url, recorder, doorbell_interval_ms=3000)
    writer.store([event()])
    assert recorder.rings == 1  # the first ring goes out before the answer
    for _ in range(5):
        writer.store([event()])
    assert recorder.rings == 1  # held back: the interval has not ended
    deadline = time.monotonic() + 15
    while recorder.rings < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recorder.rings == 2  # one ring for the five held back


def test_a_failing_callback_neither_loses_an_answer_nor_stops_the_writer(database_url, sessions):
    def broken(*_):
        raise RuntimeError("a defect in a callback")

    writer = InboxWriter(
        database_url,
        rows_max=64,
        wait_ms=0,
        doorbell_interval_ms=0,
        ring=broken,
        on_commit=broken,
        idle_s=2.0,
    )
    first, second = event(), event()
    # Stored and committed before the callback failed: the request hears its outcome.
    assert writer.store([first])[0].outcome is Outcome.NEW
    assert writer.store([second])[0].outcome is Outcome.NEW
    assert stored(sessions, [first, second]) == 2
