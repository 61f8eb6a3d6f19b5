"""A wallet's history: statements over a period and the balance at any moment.

Both read `wallet_entries`, which the transfer trigger writes in the statement that moves the
money, one row per wallet leg with the balance, held and paid amounts after it. A statement
reads the entries in its range and the one entry before it (the opening balance) through the
(wallet_id, at, id) index; a balance at a time reads one entry. Neither reads the wallet's
history before the range, so their cost follows the entries in range, not the wallet's age.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.account import get_wallet

# A statement covers at most this long and lists at most this many entries; beyond either,
# the caller asks for a shorter period.
PERIOD_MAX = timedelta(days=366)
ENTRIES_MAX = 200_000

_LAST = """
    SELECT balance_after_minor, held_after_minor, paid_after_minor
    FROM wallet_entries
    WHERE wallet_id = :wallet_id AND at {op} :at
    ORDER BY at DESC, id DESC
    LIMIT 1
"""
_LAST_BEFORE = text(_LAST.format(op="<"))
_LAST_AT = text(_LAST.format(op="<="))
_IN_RANGE = text(
    """
    SELECT e.at, e.transfer_id, t.kind, t.category, t.idempotency_key, t.memo,
           e.balance_delta_minor, e.held_delta_minor, e.paid_delta_minor,
           e.granted_delta_minor, e.balance_after_minor, e.held_after_minor,
           e.paid_after_minor
    FROM wallet_entries e JOIN transfers t ON t.id = e.transfer_id
    WHERE e.wallet_id = :wallet_id AND e.at >= :start AND e.at < :end
    ORDER BY e.at, e.id
    LIMIT :limit
    """
)


class StatementTooLong(ValueError):
    """The period holds more entries than one statement lists; ask for a shorter one."""


@dataclass(frozen=True, slots=True)
class BalanceAt:
    """A wallet's amounts at a moment, in minor units: those after its last earlier entry."""

    at: datetime
    balance_minor: int
    available_minor: int
    held_minor: int
    paid_minor: int
    granted_minor: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One movement in a statement: what it was, what it changed, and the amounts after it."""

    at: datetime
    transfer_id: int
    type: str
    category: str
    memo: str | None
    amount_minor: int
    held_change_minor: int
    paid_change_minor: int
    granted_change_minor: int
    balance_minor: int
    available_minor: int
    held_minor: int


@dataclass(frozen=True, slots=True)
class Statement:
    """Opening amounts, every entry of [start, end) in order, closing amounts."""

    wallet_id: uuid.UUID
    owner_id: str
    currency: str
    start: datetime
    end: datetime
    opening: BalanceAt
    entries: list[Entry]
    closing: BalanceAt


def balance_at(session: Session, wallet_id: uuid.UUID, at: datetime) -> BalanceAt:
    """The wallet's balance, available and held amounts at `at`, its entries at that time
    included.

    Raises AccountNotFound. A time before the wallet's first entry gives zeros.
    """
    get_wallet(session, wallet_id)
    return _last(session, _LAST_AT, wallet_id, _aware(at))


def statement(session: Session, wallet_id: uuid.UUID, start: datetime, end: datetime) -> Statement:
    """The wallet's statement for [start, end).

    Raises AccountNotFound; ValueError for an empty, reversed or over-long period;
    StatementTooLong when the period holds more than ENTRIES_MAX entries.
    """
    start, end = _aware(start), _aware(end)
    if end <= start:
        raise ValueError("the period must end after it starts")
    if end - start > PERIOD_MAX:
        raise ValueError(f"a statement covers at most {PERIOD_MAX.days} days")
    wallet = get_wallet(session, wallet_id)
    assert wallet.owner_id is not None
    opening = _last(session, _LAST_BEFORE, wallet_id, start)
    rows = session.execute(
        _IN_RANGE, {"wallet_id": wallet_id, "start": start, "end": end, "limit": ENTRIES_MAX + 1}
    ).all()
    if len(rows) > ENTRIES_MAX:
        raise StatementTooLong(
            f"the period holds more than {ENTRIES_MAX} entries: ask for a shorter one"
        )
    entries = [
        Entry(
            at,
            transfer_id,
            entry_type(category, kind, key),
            category,
            memo,
            balance_delta,
            held_delta,
            paid_delta,
            granted_delta,
            balance_after,
            balance_after - held_after,
            held_after,
        )
        for (
            at,
            transfer_id,
            kind,
            category,
            key,
            memo,
            balance_delta,
            held_delta,
            paid_delta,
            granted_delta,
            balance_after,
            held_after,
            _,
        ) in rows
    ]
    closing = (
        _amounts(
            end, rows[-1].balance_after_minor, rows[-1].held_after_minor, rows[-1].paid_after_minor
        )
        if rows
        else BalanceAt(end, *_tail(opening))
    )
    return Statement(
        wallet.id, wallet.owner_id, wallet.currency, start, end, opening, entries, closing
    )


def entry_type(category: str, kind: str, idempotency_key: str) -> str:
    """What an entry was, in a statement's words."""
    if category == "hold":
        return {"pending": "hold", "void_pending": "hold_released"}.get(kind, "resource_hour")
    if category == "usage" and idempotency_key.startswith("resource-hour:"):
        return "resource_hour"
    return _TYPES.get(category, category)


_TYPES = {
    "topup": "topup",
    "topup_reversal": "refund",
    "order_payment": "order",
    "order_refund": "order_refund",
    "usage": "usage",
    "transfer": "transfer",
    "adjustment": "adjustment",
    "grant": "grant",
    "grant_expiry": "expiry",
}

CSV_COLUMNS = (
    "at",
    "transfer_id",
    "type",
    "category",
    "memo",
    "amount_minor",
    "held_change_minor",
    "paid_change_minor",
    "granted_change_minor",
    "balance_minor",
    "available_minor",
    "held_minor",
)


def as_csv(found: Statement) -> Iterator[str]:
    """The statement as CSV lines: an opening row, one row per entry, a closing row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def line(values: list[object]) -> str:
        writer.writerow(values)
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return value

    yield line(list(CSV_COLUMNS))
    yield line(_edge_row(found.opening, "opening", found.start))
    for entry in found.entries:
        row = _entry_dict(entry)
        # A memo is free text: keep a spreadsheet from reading it as a formula.
        memo = entry.memo or ""
        row["memo"] = f"'{memo}" if memo[:1] in ("=", "+", "-", "@") else memo
        yield line([row[column] for column in CSV_COLUMNS])
    yield line(_edge_row(found.closing, "closing", found.end))


def as_json(found: Statement) -> dict[str, object]:
    """The statement as JSON data: money in minor units, times in ISO 8601."""
    return {
        "wallet_id": str(found.wallet_id),
        "owner_id": found.owner_id,
        "currency": found.currency,
        "from": found.start.isoformat(),
        "to": found.end.isoformat(),
        "opening": balance_view(found.opening),
        "entries": [_entry_dict(entry) for entry in found.entries],
        "closing": balance_view(found.closing),
    }


_ENTRY_FIELDS = tuple(field.name for field in fields(Entry))


def _entry_dict(entry: Entry) -> dict[str, object]:
    row: dict[str, object] = {name: getattr(entry, name) for name in _ENTRY_FIELDS}
    row["at"] = entry.at.isoformat()
    return row


def balance_view(amounts: BalanceAt) -> dict[str, object]:
    return {**asdict(amounts), "at": amounts.at.isoformat()}


def _edge_row(amounts: BalanceAt, label: str, at: datetime) -> list[object]:
    values: dict[str, object] = dict.fromkeys(CSV_COLUMNS, "")
    values.update(
        at=at.isoformat(),
        type=label,
        balance_minor=amounts.balance_minor,
        available_minor=amounts.available_minor,
        held_minor=amounts.held_minor,
    )
    return [values[column] for column in CSV_COLUMNS]


def _last(session: Session, query: Any, wallet_id: uuid.UUID, at: datetime) -> BalanceAt:
    row = session.execute(query, {"wallet_id": wallet_id, "at": at}).one_or_none()
    if row is None:
        return BalanceAt(at, 0, 0, 0, 0, 0)
    return _amounts(at, *row)


def _amounts(at: datetime, balance: int, held: int, paid: int) -> BalanceAt:
    return BalanceAt(at, balance, balance - held, held, paid, balance - paid)


def _tail(amounts: BalanceAt) -> tuple[int, int, int, int, int]:
    return (
        amounts.balance_minor,
        amounts.available_minor,
        amounts.held_minor,
        amounts.paid_minor,
        amounts.granted_minor,
    )


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("times must carry a UTC offset, like 2026-11-01T00:00:00Z")
    return value
