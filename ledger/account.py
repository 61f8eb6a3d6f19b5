"""Wallets and system accounts, and reading their balances."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger import totals
from ledger.db import constraint_name
from ledger.errors import AccountNotFound, InvariantViolation, WalletExists
from ledger.models import Account, AccountKind
from ledger.money import AMOUNT_MINOR_MAX, validate_currency

# Fixed namespace: a system account's id is derived from its code and currency, so every
# process knows it without a lookup.
_SYSTEM_NAMESPACE = uuid.UUID("5d3c3c0e-8d0b-4c55-9a53-8e3f3a1f6b10")
_ensured: set[tuple[str, uuid.UUID]] = set()


@dataclass(frozen=True, slots=True)
class Totals:
    """An account's four running totals, in minor units."""

    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


@dataclass(frozen=True, slots=True)
class WalletBalance:
    """A wallet as its owner sees it; negative `balance_minor` is debt."""

    wallet_id: uuid.UUID
    owner_id: str
    currency: str
    balance_minor: int
    available_minor: int
    held_minor: int
    overdraft_limit_minor: int
    paid_minor: int
    granted_minor: int


def open_wallet(
    session: Session, owner_id: str, currency: str, *, overdraft_limit_minor: int = 0
) -> Account:
    """Create the owner's wallet in `currency`.

    Raises WalletExists (carrying the existing id) when the owner already has one.
    """
    validate_currency(currency)
    if not owner_id or len(owner_id) > 255:
        raise ValueError("owner_id must be 1 to 255 characters")
    if not 0 <= overdraft_limit_minor <= AMOUNT_MINOR_MAX:
        raise ValueError(f"overdraft limit must be between 0 and {AMOUNT_MINOR_MAX} minor units")
    wallet = Account(
        kind=AccountKind.WALLET,
        owner_id=owner_id,
        currency=currency,
        overdraft_limit_minor=overdraft_limit_minor,
    )
    try:
        with session.begin_nested():
            session.add(wallet)
    except IntegrityError as exc:
        if constraint_name(exc) != "uq_accounts_owner_id_currency":
            raise InvariantViolation(str(exc.orig)) from exc
        existing = session.scalar(
            select(Account.id).where(Account.owner_id == owner_id, Account.currency == currency)
        )
        assert existing is not None
        raise WalletExists(existing) from exc
    return wallet


def get_wallet(session: Session, wallet_id: uuid.UUID) -> Account:
    """The wallet with that id; raises AccountNotFound for anything else."""
    wallet = session.get(Account, wallet_id)
    if wallet is None or wallet.kind != AccountKind.WALLET:
        raise AccountNotFound(f"no wallet with id {wallet_id}")
    return wallet


def wallet_balance(wallet: Account) -> WalletBalance:
    """Balance, available and held amounts of a loaded wallet row."""
    balance = wallet.credits_posted - wallet.debits_posted
    assert wallet.owner_id is not None
    return WalletBalance(
        wallet_id=wallet.id,
        owner_id=wallet.owner_id,
        currency=wallet.currency,
        balance_minor=balance,
        available_minor=balance - wallet.debits_pending,
        held_minor=wallet.debits_pending,
        overdraft_limit_minor=wallet.overdraft_limit_minor,
        paid_minor=wallet.paid_minor,
        granted_minor=wallet.granted_minor,
    )


def current_balance(session: Session, wallet_id: uuid.UUID) -> WalletBalance:
    """The wallet's balance as the database has it now, after this transaction's transfers.

    Reloads the row: the totals are kept by a trigger, behind the session's back.
    """
    wallet = session.get(Account, wallet_id, populate_existing=True)
    if wallet is None or wallet.kind != AccountKind.WALLET:
        raise AccountNotFound(f"no wallet with id {wallet_id}")
    return wallet_balance(wallet)


def system_account_id(session: Session, code: str, currency: str) -> uuid.UUID:
    """The id of the system account `code` in `currency`, creating it on first use.

    The account is created in a transaction of its own, so it exists even when the caller's
    transaction rolls back; after that, each process knows it exists without asking.
    """
    account_id = uuid.uuid5(_SYSTEM_NAMESPACE, f"{code}/{validate_currency(currency)}")
    engine = session.get_bind().engine
    cache_key = (engine.url.render_as_string(hide_password=True), account_id)
    if cache_key not in _ensured:
        with engine.begin() as connection:
            connection.execute(
                insert(Account)
                .values(id=account_id, kind=AccountKind.SYSTEM, code=code, currency=currency)
                .on_conflict_do_nothing(index_elements=["id"])
            )
        _ensured.add(cache_key)
    return account_id


def account_totals(session: Session, account_id: uuid.UUID) -> Totals:
    """The account's totals: cached on a wallet's row, derived from the transfers otherwise.

    A system account's totals are an aggregate over all its transfers: for reports and
    reconciliation, not for a hot path.
    """
    account = session.get(Account, account_id)
    if account is None:
        raise AccountNotFound(f"no account with id {account_id}")
    if account.kind == AccountKind.WALLET:
        return Totals(
            account.debits_posted,
            account.credits_posted,
            account.debits_pending,
            account.credits_pending,
        )
    row = session.execute(text(totals.ONE_ACCOUNT), {"account_id": account_id}).one()
    return Totals(*(int(value) for value in row))
