"""Top-up intents: created before the customer pays, settled by the gateway's verified event."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from ledger.account import get_wallet
from ledger.errors import NotFound
from ledger.models import Topup
from ledger.money import validate_amount_minor


def create_topup(
    session: Session, *, wallet_id: uuid.UUID, amount_minor: int, gateway: str
) -> Topup:
    """A pending top-up of `amount_minor` in the wallet's currency, to be paid via `gateway`.

    The amount is what the customer intends to pay; the captured amount of the verified
    gateway event is what is credited.
    """
    wallet = get_wallet(session, wallet_id)
    topup = Topup(
        wallet_id=wallet.id,
        amount_minor=validate_amount_minor(amount_minor),
        currency=wallet.currency,
        gateway=gateway,
    )
    session.add(topup)
    session.flush()
    return topup


def get_topup(session: Session, topup_id: uuid.UUID) -> Topup:
    """The top-up; raises NotFound."""
    topup = session.get(Topup, topup_id)
    if topup is None:
        raise NotFound(f"no top-up with id {topup_id}")
    return topup
