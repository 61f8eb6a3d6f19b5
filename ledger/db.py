"""Engines and sessions; the caller owns each transaction (`with Session.begin() as s:`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ledger.connection import ConnectionTimeouts
from ledger.errors import LedgerError, error_for_constraint


def normalise_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` URLs and point them at the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername == "postgres":
        parsed = parsed.set(drivername="postgresql")
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"DATABASE_URL must be a PostgreSQL URL, not {parsed.drivername!r}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """`url` as libpq and psycopg.connect() take it: `postgresql://`, no driver name."""
    return (
        make_url(normalise_url(url))
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    timeouts: ConnectionTimeouts | None = None,
    **kwargs: Any,
) -> Engine:
    """Create an engine for `url`; create one per process (after fork), never share it across.

    No pre-ping: it would add a round trip to every transaction. A connection found dead fails
    its transaction with an OperationalError that callers retry, and SQLAlchemy then discards
    the whole pool's stale connections. `timeouts` bound how long a lost peer holds locks.
    """
    kwargs.setdefault("pool_recycle", 1800)
    kwargs.setdefault("connect_args", (timeouts or ConnectionTimeouts()).connect_args())
    return create_engine(normalise_url(url), pool_size=pool_size, max_overflow=pool_size, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def constraint_name(exc: IntegrityError) -> str | None:
    """The name of the constraint that refused a write, as PostgreSQL reported it."""
    diag = getattr(exc.orig, "diag", None)
    return getattr(diag, "constraint_name", None)


@contextmanager
def refusals_as_domain_errors() -> Iterator[None]:
    """Turn a database refusal (IntegrityError) into the LedgerError its constraint means."""
    try:
        yield
    except IntegrityError as exc:
        diag = getattr(exc.orig, "diag", None)
        message = getattr(diag, "message_primary", None) or str(exc.orig)
        error: LedgerError = error_for_constraint(constraint_name(exc), message)
        raise error from exc
