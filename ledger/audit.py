"""The audit log: who did what, when, written in the transaction of the change itself."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ledger.models import AuditEntry


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> AuditEntry:
    """Append an audit entry; it commits or rolls back with the change it describes."""
    entry = AuditEntry(
        actor=actor, action=action, subject=subject, details=details or {}, request_id=request_id
    )
    session.add(entry)
    return entry
