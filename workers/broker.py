"""The Dramatiq broker of a worker process: the one module with import-time side effects.

`dramatiq workers.actors` imports this first. The broker comes from BROKER_URL (redis:// or
amqp://) with its middleware chosen explicitly: bounded retries with exponential backoff for
transient database failures only (anything else is a bug or a refusal: it goes to the dead
letters at once), a time limit per job, an age limit, the current message for logs.
"""

from __future__ import annotations

import os

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

from workers.jobs import connect_broker

RETRIES_MAX = 8
BACKOFF_MS_MIN = 500
BACKOFF_MS_MAX = 60_000
JOB_TIME_LIMIT_MS = 60_000
# A job older than a day is stale: the relay re-sends what still matters from the database.
JOB_AGE_LIMIT_MS = 24 * 3600 * 1000


def is_transient(error: BaseException) -> bool:
    """A failure that may pass on its own: connection loss, serialization failure, deadlock."""
    if isinstance(error, OperationalError):
        return True
    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None) or ""
    return isinstance(error, DBAPIError) and sqlstate.startswith("40")


broker = connect_broker(
    os.environ.get("BROKER_URL", "redis://localhost:6379/0"),
    timeout_s=10.0,
    middleware=[
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
    ],
)
dramatiq.set_broker(broker)
