"""Owner contacts: where an owner hears of its wallets' events (a WhatsApp number for now)."""

from __future__ import annotations

import re

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.models import OwnerContact

# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)


def validate_e164(number: str) -> str:
    """`number` without spaces or dashes if it is an E.164 phone number; ValueError otherwise."""
    compact = re.sub(r"[ \-()]", "", number)
    if not _E164.fullmatch(compact):
        raise ValueError(f'not an international phone number like +27821234567: "{number}"')
    return compact


def set_whatsapp(session: Session, owner_id: str, number: str) -> OwnerContact:
    """Set (or replace) the owner's WhatsApp number; raises ValueError for a bad number."""
    if not owner_id or len(owner_id) > 255:
        raise ValueError("owner_id must be 1 to 255 characters")
    values = {"owner_id": owner_id, "whatsapp_to": validate_e164(number)}
    session.execute(
        insert(OwnerContact)
        .values(**values)
        .on_conflict_do_update(
            index_elements=["owner_id"],
            set_={"whatsapp_to": values["whatsapp_to"], "updated_at": func.now()},
        )
    )
    contact = session.get(OwnerContact, owner_id, populate_existing=True)
    assert contact is not None
    return contact


def remove(session: Session, owner_id: str) -> bool:
    """Forget the owner's contact; True if there was one."""
    result = session.execute(delete(OwnerContact).where(OwnerContact.owner_id == owner_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def get(session: Session, owner_id: str) -> OwnerContact | None:
    """The owner's contact, or None."""
    return session.get(OwnerContact, owner_id)
