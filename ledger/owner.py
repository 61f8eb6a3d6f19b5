"""Owner trees: a reseller and the customer owners under it, at any depth (bounded).

A reseller's token sees and funds every wallet in its tree. A customer has one reseller; a
link that would make an owner its own ancestor is refused, under a lock, so two links made at
once cannot close a cycle either.
"""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.errors import OwnerTreeError
from ledger.models import OwnerParent

DEPTH_MAX = 16
# Serializes changes to the trees: links are rare, and a cycle check must see them all.
_TREE_LOCK_KEY = 0x6F776E657273  # "owners"

_ANCESTORS = text(
    """
    WITH RECURSIVE up(owner_id, depth) AS (
        SELECT parent_id, 1 FROM owner_parents WHERE owner_id = :owner_id
        UNION ALL
        SELECT p.parent_id, up.depth + 1
        FROM owner_parents p JOIN up ON p.owner_id = up.owner_id
        WHERE up.depth < :depth_max
    )
    SELECT owner_id FROM up
    """
)


def ancestors(session: Session, owner_id: str) -> list[str]:
    """The owner's reseller, its reseller, and so on up (at most DEPTH_MAX)."""
    return list(session.scalars(_ANCESTORS, {"owner_id": owner_id, "depth_max": DEPTH_MAX}))


def within(session: Session, owner_id: str, reseller_id: str) -> bool:
    """Whether `owner_id` is `reseller_id` itself or in its tree."""
    return owner_id == reseller_id or reseller_id in ancestors(session, owner_id)


def set_reseller(session: Session, owner_id: str, reseller_id: str) -> OwnerParent:
    """Put `owner_id` under `reseller_id`. Idempotent for the same reseller.

    Raises OwnerTreeError when the owner has another reseller, or the link would close a
    cycle or make the tree deeper than DEPTH_MAX.
    """
    for value in (owner_id, reseller_id):
        if not value or len(value) > 255:
            raise ValueError("owner ids must be 1 to 255 characters")
    if owner_id == reseller_id:
        raise OwnerTreeError("an owner cannot be its own reseller")
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TREE_LOCK_KEY})
    current = session.get(OwnerParent, owner_id, populate_existing=True)
    if current is not None:
        if current.parent_id == reseller_id:
            return current
        raise OwnerTreeError(f'owner "{owner_id}" is a customer of "{current.parent_id}" already')
    above = ancestors(session, reseller_id)
    if owner_id in above:
        raise OwnerTreeError(f'"{reseller_id}" is in the tree of "{owner_id}": a cycle')
    if len(above) + 1 >= DEPTH_MAX:
        raise OwnerTreeError(f"owner trees are at most {DEPTH_MAX} levels deep")
    session.execute(insert(OwnerParent).values(owner_id=owner_id, parent_id=reseller_id))
    link = session.get(OwnerParent, owner_id)
    assert link is not None
    return link


def customers(session: Session, reseller_id: str) -> list[str]:
    """The reseller's direct customers."""
    return list(
        session.scalars(
            select(OwnerParent.owner_id)
            .where(OwnerParent.parent_id == reseller_id)
            .order_by(OwnerParent.owner_id)
        )
    )
