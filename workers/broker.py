"""The Dramatiq broker of a worker process: the one module with import-time side effects.

`dramatiq workers.actors` imports this first. The broker comes from BROKER_URL (redis:// or
amqp://) with its middleware chosen explicitly: bounded retries with exponential backoff for
transient database failures only (anything else is a bug or a refusal: it goes to the dead
letters at once), a time limit per job, an age limit, the current message for logs, dead
letters kept in PostgreSQL, and Prometheus metrics when `dramatiq_prom_port` is set. The
worker settings are checked here too, so a misconfigured worker stops at start.

Recovery from a worker killed mid-job does not wait on the broker: its transaction rolls
back, and the scheduler re-sends whatever is still waiting in the database.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from ledger.settings import BillingSettings
from workers.deadletter import DeadLetters
from workers.jobs import connect_broker
from workers.settings import WorkerSettings

RETRIES_MAX = 8
BACKOFF_MS_MIN = 500
BACKOFF_MS_MAX = 60_000
JOB_TIME_LIMIT_MS = 60_000
# A job older than a day is stale: the relay re-sends what still matters from the database.
JOB_AGE_LIMIT_MS = 24 * 3600 * 1000


# The server ended a transaction that idled past idle_in_transaction_session_timeout: nothing
# of it was committed, and a fresh attempt may well finish in time.
IDLE_IN_TRANSACTION_TIMEOUT = "25P03"


def is_transient(error: BaseException) -> bool:
    """A failure that may pass on its own: connection loss, serialization failure, deadlock,
    a transaction the server ended for idling."""
    if isinstance(error, OperationalError):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    return isinstance(error, DBAPIError) and (
        sqlstate.startswith("40") or sqlstate == IDLE_IN_TRANSACTION_TIMEOUT
    )


def metrics_middleware(environ: Mapping[str, str] = os.environ) -> list[Any]:
    """Dramatiq's Prometheus exporter when `dramatiq_prom_port` is set, or nothing.

    The exporter runs in a process of its own, forked by Dramatiq's command line before it
    imports this module, so it reads Dramatiq's own variables from the command's environment:
    `dramatiq_prom_port`, `dramatiq_prom_host` (default 0.0.0.0) and `dramatiq_prom_db` (the
    directory the worker processes share; one per worker group on a machine).
    """
    port = environ.get("dramatiq_prom_port")
    if not port:
        return []
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"dramatiq_prom_port must be a port number, not {port!r}")
    from dramatiq.middleware.prometheus import Prometheus

    return [Prometheus()]


# Both raise ValueError naming what is missing or wrong.
WorkerSettings.from_env()
BillingSettings.from_env()
# Dramatiq's command line owns the log handlers; LOG_LEVEL tunes how much of ours they get.
for _package in ("ledger", "workers"):
    logging.getLogger(_package).setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())

broker = connect_broker(
    os.environ.get("BROKER_URL", "redis://localhost:6379/0"),
    timeout_s=10.0,
    middleware=[
        *metrics_middleware(),
        AgeLimit(max_age=JOB_AGE_LIMIT_MS),
        TimeLimit(time_limit=JOB_TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Retries(
            max_retries=RETRIES_MAX,
            min_backoff=BACKOFF_MS_MIN,
            max_backoff=BACKOFF_MS_MAX,
            retry_when=lambda retries, error: retries < RETRIES_MAX and is_transient(error),
        ),
        CurrentMessage(),
        DeadLetters(),
    ],
)
dramatiq.set_broker(broker)
