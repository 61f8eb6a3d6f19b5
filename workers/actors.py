"""The workers' jobs. Actors are plain callables that take ids and own one transaction each.

Run them with `dramatiq workers.actors` (the Procfile's worker). A business outcome is recorded
and the actor returns; a database error raises, and Dramatiq retries it with a bound.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime

import dramatiq
from sqlalchemy.orm import Session, sessionmaker

import workers.broker  # noqa: F401  (sets the broker the actors bind to)
from ledger import settlement
from ledger.db import make_engine, make_session_factory
from ledger.errors import NotFound
from ledger.settings import LedgerSettings
from workers.jobs import APPLY_GATEWAY_EVENT

logger = logging.getLogger(__name__)


@functools.cache
def sessions() -> sessionmaker[Session]:
    """This process's sessions, created on first use: after the fork, never shared across one."""
    settings = LedgerSettings.from_env()
    return make_session_factory(make_engine(settings.database_url, pool_size=settings.pool_size))


@dramatiq.actor(
    actor_name=APPLY_GATEWAY_EVENT.actor_name, queue_name=APPLY_GATEWAY_EVENT.queue_name
)
def apply_gateway_event(inbox_id: int) -> None:
    """Apply a stored gateway event to the ledger, once, however often it is delivered."""
    try:
        with sessions().begin() as session:
            status = settlement.apply_gateway_event(session, inbox_id, now=datetime.now(UTC))
    except NotFound:
        logger.error("Inbox event %s does not exist; nothing to apply.", inbox_id)
        return
    logger.info("Inbox event %s: %s.", inbox_id, status, extra={"inbox_id": inbox_id})
