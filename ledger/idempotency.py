"""The stored outcome of API requests by their Idempotency-Key (kept; nothing prunes them yet).

A request claims its key in the same transaction as its effect, and stores its response
there too: the effect and the record of it commit together or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.errors import IdempotencyConflict
from ledger.models import ApiIdempotencyKey

# Written with the claim and replaced before commit: a committed row always holds a response.
_CLAIMED = 0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


def claim(session: Session, *, subject: str, key: str, fingerprint: bytes) -> StoredResponse | None:
    """Claim `key` for this request: None if it is new, the stored response if it is a repeat.

    A concurrent request with the same key waits here until the first one commits (then gets
    its response) or rolls back (then claims the key). Raises IdempotencyConflict when the key
    was used for a different request.
    """
    claimed = session.execute(
        insert(ApiIdempotencyKey)
        .values(
            subject=subject,
            key=key,
            fingerprint=fingerprint,
            status_code=_CLAIMED,
            response={},
        )
        .on_conflict_do_nothing()
        .returning(ApiIdempotencyKey.key)
    ).scalar_one_or_none()
    if claimed is not None:
        return None
    stored = session.execute(
        select(ApiIdempotencyKey).where(
            ApiIdempotencyKey.subject == subject, ApiIdempotencyKey.key == key
        )
    ).scalar_one()
    if stored.fingerprint != fingerprint:
        raise IdempotencyConflict(
            f'Idempotency-Key "{key}" was used for a different request; use a new key'
        )
    return StoredResponse(stored.status_code, stored.response)


def remember(
    session: Session, *, subject: str, key: str, status_code: int, body: dict[str, Any]
) -> None:
    """Store the response of the request that claimed `key`, before its transaction commits."""
    stored = session.get(ApiIdempotencyKey, (subject, key))
    assert stored is not None
    assert stored.status_code == _CLAIMED
    stored.status_code = status_code
    stored.response = body
