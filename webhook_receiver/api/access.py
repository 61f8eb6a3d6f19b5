"""What a token may see: a tenant-bound token sees its own owner's wallets and, when that owner
is a reseller, the wallets of every owner in its tree; nothing else.

Everything outside a token's reach answers 404, never 403, so ids cannot be probed.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from ledger import owner
from ledger.account import get_wallet
from ledger.errors import AccountNotFound
from ledger.models import Account
from webhook_receiver.auth import current_principal, sees_owner
from webhook_receiver.errors import NotFound


def visible_wallet(session: Session, wallet_id: uuid.UUID) -> Account:
    """The wallet, if this request's token may see it; raises NotFound otherwise."""
    try:
        account = get_wallet(session, wallet_id)
    except AccountNotFound:
        account = None
    if account is None or not sees(session, account.owner_id or ""):
        raise NotFound(f"no wallet with id {wallet_id}")
    return account


def sees(session: Session, owner_id: str) -> bool:
    """Whether this request's token may act for `owner_id`: its own owner or its tree."""
    principal = current_principal()
    if sees_owner(principal, owner_id):
        return True
    assert principal.owner_id is not None  # an unbound token sees every owner
    return owner.within(session, owner_id, principal.owner_id)


def check_visible(session: Session, wallet_id: uuid.UUID, what: str, what_id: object) -> None:
    """Raise NotFound naming `what` when its wallet is out of this token's reach."""
    try:
        visible_wallet(session, wallet_id)
    except NotFound:
        raise NotFound(f"no {what} with id {what_id}") from None
