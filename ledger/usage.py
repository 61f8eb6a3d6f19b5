"""Usage records: metered charges that services report, each stored and billed once under the
id they chose within a wallet.

Both halves work in batches. `record_many` stores up to RECORDS_MAX records with one
multi-row INSERT and answers for each (recorded, duplicate, conflict). `bill_pending` claims
up to K pending records, skipping rows other billers hold, and bills them in a handful of
statements whatever K is: the wallets locked in id order (so two batches never deadlock),
the transfers by one multi-row INSERT whose idempotency keys make a second billing
impossible, the records marked by one UPDATE. Every guard stays in the database (the
transfer trigger, the keys' unique index); a batch the database refuses is billed record by
record instead, each in its own savepoint, so one bad record stops no other.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.account import get_wallet, system_account_id
from ledger.errors import IdempotencyConflict, LedgerError, NotFound
from ledger.models import Category, SystemAccount, UsageRecord
from ledger.money import validate_amount_minor
from ledger.transfer import TransferRequest, bounded_key, transfer, transfer_many

logger = logging.getLogger(__name__)

RECORDS_MAX = 1000
BATCH_MAX_DEFAULT = 500


@dataclass(frozen=True, slots=True)
class UsageInput:
    """A usage record as a service reports it; `usage_id` is its key within the wallet."""

    usage_id: str
    wallet_id: uuid.UUID
    resource_id: str
    description: str
    amount_minor: int
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """A stored usage record, as the API shows it."""

    id: str
    wallet_id: uuid.UUID
    resource_id: str
    description: str
    amount_minor: int
    currency: str
    occurred_at: datetime
    status: str


class Outcome(enum.StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one reported record: its outcome and the record now stored."""

    outcome: Outcome
    entry: UsageEntry


@dataclass(frozen=True, slots=True)
class WalletRef:
    owner_id: str
    currency: str


def wallets_of(session: Session, wallet_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, WalletRef]:
    """The owner and currency of each of these ids that is a wallet, in one statement."""
    rows = session.connection().execute(
        text(
            "SELECT id, owner_id, currency FROM accounts"
            " WHERE id = ANY(CAST(:ids AS uuid[])) AND kind = 'wallet'"
        ),
        {"ids": list(set(wallet_ids))},
    )
    return {row.id: WalletRef(row.owner_id, row.currency) for row in rows}


_PAYLOAD = ("wallet_id", "resource_id", "description", "amount_minor", "occurred_at")

_INSERT_MANY = text(
    """
    INSERT INTO usage_records
        (wallet_id, id, resource_id, description, amount_minor, currency, occurred_at)
    SELECT * FROM unnest(
        CAST(:wallet_ids AS uuid[]), CAST(:ids AS text[]), CAST(:resource_ids AS text[]),
        CAST(:descriptions AS text[]), CAST(:amounts AS bigint[]), CAST(:currencies AS text[]),
        CAST(:occurred_at AS timestamptz[]))
    ON CONFLICT DO NOTHING
    RETURNING wallet_id, id
    """
)

_SELECT_MANY = text(
    """
    SELECT u.wallet_id, u.id, u.resource_id, u.description, u.amount_minor, u.currency,
           u.occurred_at, u.status
    FROM usage_records u
    JOIN unnest(CAST(:wallet_ids AS uuid[]), CAST(:ids AS text[])) AS k(wallet_id, id)
      ON u.wallet_id = k.wallet_id AND u.id = k.id
    """
)


def record_many(
    session: Session, records: Sequence[UsageInput], currencies: Mapping[uuid.UUID, str]
) -> list[Stored]:
    """Store usage records to be billed; one outcome per record, in order.

    `currencies` holds each record's wallet currency (see `wallets_of`). The `usage_id` is the
    idempotency key within its wallet: a repeat with the same payload, in this batch or an
    earlier one, is a duplicate of the stored record; with another payload, a conflict.
    """
    if len(records) > RECORDS_MAX:
        raise ValueError(f"at most {RECORDS_MAX} usage records at once")
    first: dict[tuple[uuid.UUID, str], UsageInput] = {}
    for record in records:
        validate_amount_minor(record.amount_minor)
        first.setdefault((record.wallet_id, record.usage_id), record)
    connection = session.connection()
    unique = list(first.values())
    inserted = (
        {
            (row.wallet_id, row.id)
            for row in connection.execute(
                _INSERT_MANY,
                {
                    "wallet_ids": [r.wallet_id for r in unique],
                    "ids": [r.usage_id for r in unique],
                    "resource_ids": [r.resource_id for r in unique],
                    "descriptions": [r.description for r in unique],
                    "amounts": [r.amount_minor for r in unique],
                    "currencies": [currencies[r.wallet_id] for r in unique],
                    "occurred_at": [r.occurred_at for r in unique],
                },
            )
        }
        if unique
        else set()
    )
    missing = [key for key in first if key not in inserted]
    stored: dict[tuple[uuid.UUID, str], UsageEntry] = {}
    if missing:
        # ON CONFLICT waited for any concurrent writer of these keys, so they are committed.
        stored = {
            (row.wallet_id, row.id): UsageEntry(
                id=row.id,
                wallet_id=row.wallet_id,
                resource_id=row.resource_id,
                description=row.description,
                amount_minor=row.amount_minor,
                currency=row.currency,
                occurred_at=row.occurred_at,
                status=row.status,
            )
            for row in connection.execute(
                _SELECT_MANY,
                {"wallet_ids": [w for w, _ in missing], "ids": [i for _, i in missing]},
            )
        }
    results = []
    for record in records:
        key = (record.wallet_id, record.usage_id)
        if key in inserted:
            original = first[key]
            entry = UsageEntry(
                id=original.usage_id,
                wallet_id=original.wallet_id,
                resource_id=original.resource_id,
                description=original.description,
                amount_minor=original.amount_minor,
                currency=currencies[original.wallet_id],
                occurred_at=original.occurred_at,
                status="pending",
            )
            if record is original:
                results.append(Stored(Outcome.RECORDED, entry))
                continue
        else:
            entry = stored[key]
        same = all(getattr(entry, f) == getattr(record, f) for f in _PAYLOAD)
        results.append(Stored(Outcome.DUPLICATE if same else Outcome.CONFLICT, entry))
    return results


def record_usage(
    session: Session,
    *,
    usage_id: str,
    wallet_id: uuid.UUID,
    resource_id: str,
    description: str,
    amount_minor: int,
    occurred_at: datetime,
) -> tuple[UsageEntry, bool]:
    """Store one usage record to be billed; returns it and whether it is new.

    A repeat with the same payload returns the stored record, with a different one raises
    IdempotencyConflict. Raises AccountNotFound.
    """
    wallet = get_wallet(session, wallet_id)
    [stored] = record_many(
        session,
        [
            UsageInput(
                usage_id=usage_id,
                wallet_id=wallet.id,
                resource_id=resource_id,
                description=description,
                amount_minor=amount_minor,
                occurred_at=occurred_at,
            )
        ],
        {wallet.id: wallet.currency},
    )
    if stored.outcome is Outcome.CONFLICT:
        raise IdempotencyConflict(f'usage id "{usage_id}" was already used for another record')
    return stored.entry, stored.outcome is Outcome.RECORDED


@dataclass(frozen=True, slots=True)
class BillingRound:
    """What one `bill_pending` did: records claimed, and how many of them it billed."""

    claimed: int
    billed: int


_CLAIM_PENDING = text(
    """
    SELECT wallet_id, id, amount_minor, currency, resource_id, description
    FROM usage_records
    WHERE status = 'pending'
    ORDER BY created_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
    """
)

# The balances before the batch, read under the lock the transfers' trigger would take anyway:
# taken here in id order, so batches sharing wallets queue instead of deadlocking.
_LOCK_WALLETS = text(
    """
    SELECT id, credits_posted - debits_posted AS balance_minor
    FROM accounts
    WHERE id = ANY(CAST(:ids AS uuid[]))
    ORDER BY id
    FOR NO KEY UPDATE
    """
)

_MARK_BILLED = text(
    """
    UPDATE usage_records u
    SET status = 'billed', billed_at = now()
    FROM unnest(CAST(:wallet_ids AS uuid[]), CAST(:ids AS text[])) AS v(wallet_id, id)
    WHERE u.wallet_id = v.wallet_id AND u.id = v.id
    """
)


@dataclass(frozen=True, slots=True)
class _Pending:
    wallet_id: uuid.UUID
    id: str
    amount_minor: int
    currency: str
    resource_id: str
    description: str


def _cause(wallet_id: uuid.UUID, usage_id: str) -> str:
    return f"usage-record:{wallet_id}:{usage_id}"


def bill_pending(session: Session, *, limit: int = BATCH_MAX_DEFAULT) -> BillingRound:
    """Charge up to `limit` pending usage records to their wallets, once each.

    Safe from any number of processes at once: records another biller holds are skipped.
    Usage happened already, so each charge is forced: a wallet that cannot pay goes into debt,
    and `wallet.negative` is written where a charge of this batch took it there.
    """
    assert limit >= 1
    connection = session.connection()
    claimed = sorted(
        (_Pending(*row) for row in connection.execute(_CLAIM_PENDING, {"limit": limit})),
        key=lambda row: (row.wallet_id, row.id),
    )
    if not claimed:
        return BillingRound(0, 0)
    balances = {
        row.id: row.balance_minor
        for row in connection.execute(
            _LOCK_WALLETS, {"ids": sorted({row.wallet_id for row in claimed})}
        )
    }
    revenue = {
        currency: system_account_id(session, SystemAccount.REVENUE, currency)
        for currency in {row.currency for row in claimed}
    }
    requests = [
        TransferRequest(
            idempotency_key=bounded_key(_cause(row.wallet_id, row.id)),
            debit_account_id=row.wallet_id,
            credit_account_id=revenue[row.currency],
            amount_minor=row.amount_minor,
            currency=row.currency,
            category=Category.USAGE,
            forced=True,
            memo=f"{row.resource_id[:100]}: {row.description[:140]}",
        )
        for row in claimed
    ]
    try:
        with session.begin_nested():
            applied = transfer_many(session, requests)
    except LedgerError as exc:
        logger.warning("A usage batch was refused (%s); billing it record by record.", exc)
        return BillingRound(len(claimed), _bill_one_by_one(session, claimed))
    connection.execute(
        _MARK_BILLED,
        {"wallet_ids": [row.wallet_id for row in claimed], "ids": [row.id for row in claimed]},
    )
    _announce_debts(session, claimed, [a.replayed for a in applied], balances)
    return BillingRound(len(claimed), len(claimed))


def _announce_debts(
    session: Session,
    claimed: Sequence[_Pending],
    replayed: Sequence[bool],
    balances: Mapping[uuid.UUID, int],
) -> None:
    """`wallet.negative` for each wallet a charge of this batch took from funds into debt,
    caused by the charge that crossed zero (the key one charge alone would have used)."""
    running = dict(balances)
    crossed: dict[uuid.UUID, str] = {}
    for row, was_replayed in zip(claimed, replayed, strict=True):
        if was_replayed:
            continue  # billed before: it moved no money now
        before = running[row.wallet_id]
        running[row.wallet_id] = before - row.amount_minor
        if before >= 0 > running[row.wallet_id]:
            crossed[row.wallet_id] = _cause(row.wallet_id, row.id)
    for wallet_id, cause in crossed.items():
        outbox.emit_for_wallet(
            session,
            "wallet.negative",
            key=f"wallet.negative:{cause}",
            wallet_id=wallet_id,
            data={"debt_minor": -running[wallet_id], "cause": cause},
        )


def _bill_one_by_one(session: Session, claimed: Sequence[_Pending]) -> int:
    billed = 0
    for row in claimed:
        wallet_id, usage_id = row.wallet_id, row.id
        try:
            with session.begin_nested():
                bill_usage_record(session, wallet_id, usage_id)
        except LedgerError:
            logger.exception(
                "Usage record %s of wallet %s was refused; it stays pending.",
                usage_id,
                wallet_id,
                extra={"usage_id": usage_id, "wallet_id": str(wallet_id)},
            )
            continue
        billed += 1
    return billed


def bill_usage_record(session: Session, wallet_id: uuid.UUID, usage_id: str) -> UsageRecord:
    """Charge one stored usage record to its wallet, once, however often it is called.

    The per-record path, for what a batch cannot take. The usage happened already, so the
    charge is forced: a wallet that cannot pay goes into debt and is blocked from spending
    until a top-up covers it. Raises NotFound.
    """
    record = session.scalar(
        select(UsageRecord)
        .where(UsageRecord.wallet_id == wallet_id, UsageRecord.id == usage_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if record is None:
        raise NotFound(f'no usage record "{usage_id}" for wallet {wallet_id}')
    if record.status == "billed":
        return record
    revenue = system_account_id(session, SystemAccount.REVENUE, record.currency)
    transfer(
        session,
        TransferRequest(
            idempotency_key=bounded_key(_cause(wallet_id, usage_id)),
            debit_account_id=wallet_id,
            credit_account_id=revenue,
            amount_minor=record.amount_minor,
            currency=record.currency,
            category=Category.USAGE,
            forced=True,
            memo=f"{record.resource_id[:100]}: {record.description[:140]}",
        ),
    )
    record.status = "billed"
    record.billed_at = func.now()
    outbox.emit_if_now_negative(
        session, wallet_id, record.amount_minor, cause=_cause(wallet_id, usage_id)
    )
    return record
