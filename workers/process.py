"""What one worker process holds: settings, database sessions and notification channels.

Each is created on first use, which is after Dramatiq forks its worker processes, so no
connection is ever shared across a fork.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from ledger.db import make_engine, make_session_factory
from ledger.settings import BillingSettings, LedgerSettings
from workers.channels import Channel, build_channels
from workers.settings import WorkerSettings


@functools.cache
def settings() -> WorkerSettings:
    return WorkerSettings.from_env()


@functools.cache
def billing() -> BillingSettings:
    return BillingSettings.from_env()


@functools.cache
def sessions() -> sessionmaker[Session]:
    """This process's sessions; the pool holds one connection per worker thread and a spare.

    A notification is delivered inside its transaction, so the connections allow an idle
    pause as long as the slowest delivery the channels permit.
    """
    ledger = LedgerSettings.from_env()
    timeouts = ledger.timeouts.allowing_idle(settings().longest_delivery_s())
    return make_session_factory(
        make_engine(ledger.database_url, pool_size=ledger.pool_size, timeouts=timeouts)
    )


@functools.cache
def channels() -> tuple[Channel, ...]:
    return tuple(build_channels(settings()))


@functools.cache
def send_pool() -> ThreadPoolExecutor:
    """The threads a batch's network sends run on: at most NOTIFY_CONCURRENCY in flight per
    process, whichever worker thread's batch they belong to."""
    return ThreadPoolExecutor(
        max_workers=settings().notify_concurrency, thread_name_prefix="notify-send"
    )


def reset() -> None:
    """Forget what this process holds (tests that change the environment)."""
    if send_pool.cache_info().currsize:
        send_pool().shutdown(wait=True)
    for cached in (settings, billing, sessions, channels, send_pool):
        cached.cache_clear()
