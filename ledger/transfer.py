"""Transfers: post, hold, and resolve holds, each exactly once per idempotency key.

The database does the bookkeeping (a trigger updates the cached totals in the same statement,
refusing any debit a wallet cannot cover); this module builds the rows and turns refusals
into domain errors.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.db import refusals_as_domain_errors
from ledger.errors import IdempotencyConflict, PendingAlreadyResolved, PendingNotFound
from ledger.models import Category, Transfer, TransferKind
from ledger.money import validate_amount_minor, validate_currency

# The fields that make two requests "the same" for one idempotency key. A hold's expiry is left
# out: a retried request recomputes it from its own clock.
_PAYLOAD_FIELDS = (
    "kind",
    "category",
    "debit_account_id",
    "credit_account_id",
    "amount_minor",
    "currency",
    "pending_id",
    "forced",
    "grant_id",
)


KEY_CHARS_MAX = 255


def bounded_key(key: str) -> str:
    """`key` if it fits an idempotency key column, else its start and its SHA-256: the same
    long key always gives the same short one, and two long keys never share one."""
    if len(key) <= KEY_CHARS_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: KEY_CHARS_MAX - len(digest) - 1]}~{digest}"


@dataclass(frozen=True, slots=True)
class TransferRequest:
    """A request to move money; `expires_at` makes it a hold (a pending transfer).

    `forced` lets a fact that already happened (a gateway refund, consumed usage) take a
    wallet below its overdraft limit; the database accepts it only for those categories.
    """

    idempotency_key: str
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount_minor: int
    currency: str
    category: Category
    expires_at: datetime | None = None
    forced: bool = False
    memo: str | None = None
    # The credit grant a grant or grant_expiry transfer funds or expires (ledger.grant).
    grant_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """The transfer a request produced, and whether it already existed (a replay)."""

    transfer: Transfer
    replayed: bool


def transfer(session: Session, request: TransferRequest) -> Applied:
    """Post a transfer, or place a hold when the request has an expiry.

    Idempotent: a repeated key with the same payload returns the original transfer; with a
    different payload it raises IdempotencyConflict. Raises InsufficientFunds,
    AccountNotFound, CurrencyMismatch. On a raised error the caller's transaction is aborted.
    """
    return _insert(session, [_row(request)])[0]


def transfer_many(session: Session, requests: Sequence[TransferRequest]) -> list[Applied]:
    """Apply several transfers in one statement, in order; the cure for a hot wallet.

    All or nothing: if the database refuses any of them (InsufficientFunds, ...), it raises
    and the caller's transaction is aborted; apply them one by one to learn which. Replays and
    conflicts are judged per request as in `transfer`.
    """
    if not requests:
        return []
    return _insert(session, [_row(request) for request in requests])


def _row(request: TransferRequest) -> dict[str, Any]:
    if request.expires_at is not None and request.expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    return {
        "idempotency_key": request.idempotency_key,
        "kind": TransferKind.PENDING if request.expires_at else TransferKind.POSTED,
        "category": request.category,
        "debit_account_id": request.debit_account_id,
        "credit_account_id": request.credit_account_id,
        "amount_minor": validate_amount_minor(request.amount_minor),
        "currency": validate_currency(request.currency),
        "pending_id": None,
        "expires_at": request.expires_at,
        "forced": request.forced,
        "memo": request.memo,
        "grant_id": request.grant_id,
    }


def post_pending(
    session: Session,
    pending_id: int,
    *,
    idempotency_key: str,
    amount_minor: int | None = None,
    memo: str | None = None,
) -> Applied:
    """Post a hold in full, or partially with `amount_minor`; the rest is released.

    Raises PendingNotFound, PendingAlreadyResolved (posted or voided before, under another
    key), PendingExpired, PostExceedsPending, IdempotencyConflict.
    """
    pending = _pending(session, pending_id)
    amount = pending.amount_minor if amount_minor is None else validate_amount_minor(amount_minor)
    return _resolve(session, pending, TransferKind.POST_PENDING, idempotency_key, amount, memo)


def void_pending(
    session: Session, pending_id: int, *, idempotency_key: str, memo: str | None = None
) -> Applied:
    """Release a hold in full. Raises PendingNotFound, PendingAlreadyResolved."""
    pending = _pending(session, pending_id)
    return _resolve(
        session, pending, TransferKind.VOID_PENDING, idempotency_key, pending.amount_minor, memo
    )


def void_expired(session: Session, now: datetime, *, limit: int = 500) -> list[Transfer]:
    """Void up to `limit` holds whose expiry has passed; returns the voiding transfers.

    Safe to run from several processes: rows another process is voiding are skipped.
    """
    resolution = Transfer.__table__.alias("resolution")
    expired = session.scalars(
        select(Transfer)
        .where(
            Transfer.kind == TransferKind.PENDING,
            Transfer.expires_at <= now,
            ~select(resolution.c.id).where(resolution.c.pending_id == Transfer.id).exists(),
        )
        .order_by(Transfer.expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    voided = []
    for pending in expired:
        try:
            with session.begin_nested():  # a hold posted meanwhile must not undo the others
                voided.append(
                    _resolve(
                        session,
                        pending,
                        TransferKind.VOID_PENDING,
                        f"expire:{pending.id}",
                        pending.amount_minor,
                        "hold expired",
                    ).transfer
                )
        except PendingAlreadyResolved:
            continue
    return voided


def _pending(session: Session, pending_id: int) -> Transfer:
    pending = session.get(Transfer, pending_id)
    if pending is None or pending.kind != TransferKind.PENDING:
        raise PendingNotFound(f"no pending transfer with id {pending_id}")
    return pending


def _resolve(
    session: Session,
    pending: Transfer,
    kind: TransferKind,
    idempotency_key: str,
    amount_minor: int,
    memo: str | None,
) -> Applied:
    row = {
        "idempotency_key": idempotency_key,
        "kind": kind,
        "category": pending.category,
        "debit_account_id": pending.debit_account_id,
        "credit_account_id": pending.credit_account_id,
        "amount_minor": amount_minor,
        "currency": pending.currency,
        "pending_id": pending.id,
        "expires_at": None,
        "forced": False,
        "memo": memo,
        "grant_id": None,
    }
    return _insert(session, [row])[0]


_TRANSFERS = cast(Table, Transfer.__table__)
# Built once: SQLAlchemy caches its compiled form, and sends several rows as one multi-row
# INSERT, so a transfer or a batch costs one round trip. Rows whose key exists return nothing.
_INSERT = (
    insert(_TRANSFERS)
    .on_conflict_do_nothing(index_elements=[_TRANSFERS.c.idempotency_key])
    .returning(*_TRANSFERS.c)
)


def _insert(session: Session, rows: list[dict[str, Any]]) -> list[Applied]:
    keys = [row["idempotency_key"] for row in rows]
    if not all(isinstance(key, str) and 1 <= len(key) <= 255 for key in keys):
        raise ValueError("idempotency key must be 1 to 255 characters")
    if len(set(keys)) != len(keys):
        raise ValueError("a batch names the same idempotency key twice")
    # Core execution on the session's connection skips the ORM's statement machinery, the
    # largest cost of a transfer on the client; the flush keeps objects the caller added first.
    session.flush()
    with refusals_as_domain_errors():
        result = session.connection().execute(_INSERT, rows if len(rows) > 1 else rows[0])
        created = {r.idempotency_key: Transfer(**r._mapping) for r in result}
    missing = [row["idempotency_key"] for row in rows if row["idempotency_key"] not in created]
    existing = {}
    if missing:
        existing = {
            t.idempotency_key: t
            for t in session.scalars(select(Transfer).where(Transfer.idempotency_key.in_(missing)))
        }
    applied = []
    for row in rows:
        key = row["idempotency_key"]
        if key in created:
            applied.append(Applied(created.pop(key), replayed=False))
            continue
        original = existing[key]
        if any(getattr(original, field) != row[field] for field in _PAYLOAD_FIELDS):
            raise IdempotencyConflict(
                f'idempotency key "{key}" was already used for a different transfer ({original.id})'
            )
        applied.append(Applied(original, replayed=True))
    return applied
