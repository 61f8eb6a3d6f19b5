"""The transactional outbox: facts for the world outside, written with the change they report.

An event commits or rolls back with the ledger effect it describes, so nothing is announced
that did not happen and nothing that happened goes unannounced. The workers deliver it after
commit, to every channel at least once: a channel that took it is recorded and never sent it
again; one that failed is retried with backoff, the others untouched.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.account import current_balance
from ledger.models import Account, OutboxDelivery, OutboxEvent, OwnerContact
from ledger.transfer import bounded_key

# A channel that keeps failing is tried again later, each wait twice the last, within bounds;
# after the last attempt the event is marked failed, for operators to see, and left alone.
ATTEMPTS_MAX = 20
BACKOFF_MIN = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
ERROR_CHARS_MAX = 2000

# Where this transaction's new event ids gather, for the caller to send once it commits.
_EMITTED = "walletpipe.outbox_emitted"

# The wallet's owner and balance joined to the event's data in the statement that writes it:
# one round trip, and the balance is the one this transaction's transfers left.
_INSERT_FOR_WALLET = text(
    """
    INSERT INTO outbox_events (event_type, key, wallet_id, payload)
    SELECT :event_type, :key, a.id,
           jsonb_build_object(
               'wallet_id', a.id::text,
               'owner_id', a.owner_id,
               'currency', a.currency,
               'balance_minor', a.credits_posted - a.debits_posted,
               'available_minor', a.credits_posted - a.debits_posted - a.debits_pending
           ) || CAST(:data AS jsonb)
    FROM accounts a
    WHERE a.id = :wallet_id AND a.kind = 'wallet'
    ON CONFLICT (key) DO NOTHING
    RETURNING id
    """
)


def emit_for_wallet(
    session: Session, event_type: str, *, key: str, wallet_id: uuid.UUID, data: dict[str, Any]
) -> int | None:
    """Write an event about a wallet in the caller's transaction; its id, or None if `key`
    exists already.

    `key` names the business fact (one event per fact, however often the code that finds it
    runs). `data` must be JSON (ids as strings, money as integer minor units); the wallet's
    `owner_id`, `currency`, `balance_minor` and `available_minor` are joined to it.
    """
    event_id: int | None = (
        session.connection()
        .execute(
            _INSERT_FOR_WALLET,
            {
                "event_type": event_type,
                "key": bounded_key(key),
                "wallet_id": wallet_id,
                "data": json.dumps(data),
            },
        )
        .scalar_one_or_none()
    )
    if event_id is not None:
        session.info.setdefault(_EMITTED, []).append(event_id)
    return event_id


# Several events of one type in one statement, each joined to its wallet's balance as it stood
# right after the change it reports: the balance now, less what later events of the same
# wallet in the batch changed (`delta` is each event's change of the balance).
_INSERT_MANY_FOR_WALLETS = text(
    """
    INSERT INTO outbox_events (event_type, key, wallet_id, payload)
    SELECT :event_type, b.key, a.id,
           jsonb_build_object(
               'wallet_id', a.id::text,
               'owner_id', a.owner_id,
               'currency', a.currency,
               'balance_minor', a.credits_posted - a.debits_posted - b.later_minor,
               'available_minor',
                   a.credits_posted - a.debits_posted - a.debits_pending - b.later_minor
           ) || b.data
    FROM (
        SELECT u.key, u.wallet_id, u.data, u.ordinal,
               coalesce(sum(u.delta) OVER (
                   PARTITION BY u.wallet_id ORDER BY u.ordinal
                   ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0) AS later_minor
        FROM unnest(CAST(:keys AS text[]), CAST(:wallet_ids AS uuid[]),
                    CAST(:datas AS jsonb[]), CAST(:deltas AS bigint[]))
             WITH ORDINALITY AS u(key, wallet_id, data, delta, ordinal)
    ) b
    JOIN accounts a ON a.id = b.wallet_id AND a.kind = 'wallet'
    ORDER BY b.ordinal
    ON CONFLICT (key) DO NOTHING
    RETURNING id
    """
)


@dataclass(frozen=True, slots=True)
class WalletFact:
    """One event of a batch for `emit_many_for_wallets`; `delta_minor` is what the reported
    change did to the wallet's balance (a credit positive)."""

    key: str
    wallet_id: uuid.UUID
    data: dict[str, Any]
    delta_minor: int


def emit_many_for_wallets(session: Session, event_type: str, facts: list[WalletFact]) -> list[int]:
    """`emit_for_wallet` for a batch of facts, in one statement; the ids of the new events.

    Facts of one wallet are in the order their changes were made, so each event carries the
    balance its own change left.
    """
    if not facts:
        return []
    ids = [
        int(id_)
        for (id_,) in session.connection().execute(
            _INSERT_MANY_FOR_WALLETS,
            {
                "event_type": event_type,
                "keys": [bounded_key(fact.key) for fact in facts],
                "wallet_ids": [fact.wallet_id for fact in facts],
                "datas": [json.dumps(fact.data) for fact in facts],
                "deltas": [fact.delta_minor for fact in facts],
            },
        )
    ]
    session.info.setdefault(_EMITTED, []).extend(ids)
    return ids


def emit_if_now_negative(
    session: Session, wallet_id: uuid.UUID, debited_minor: int, *, cause: str
) -> int | None:
    """`wallet.negative` when a debit of `debited_minor` has just taken the wallet into debt.

    Only a fact that already happened can do that (a gateway refund, consumed usage); the
    wallet then blocks spending until a top-up covers the debt.
    """
    balance = current_balance(session, wallet_id)
    if not balance.balance_minor < 0 <= balance.balance_minor + debited_minor:
        return None
    return emit_for_wallet(
        session,
        "wallet.negative",
        key=f"wallet.negative:{cause}",
        wallet_id=wallet_id,
        data={"debt_minor": -balance.balance_minor, "cause": cause},
    )


def emitted(session: Session) -> list[int]:
    """Ids of the events this session's transaction wrote; send them after it commits."""
    return list(session.info.get(_EMITTED, ()))


@dataclass(frozen=True, slots=True)
class Notice:
    """An outbox event as the channels see it, with where its wallet's owner hears of it."""

    id: int
    event_type: str
    key: str
    created_at: datetime
    data: dict[str, Any]
    owner_id: str | None
    whatsapp_to: str | None


def lock_for_delivery(session: Session, event_id: int) -> tuple[Notice, frozenset[str]] | None:
    """The undelivered event, locked, and the channels that have it already.

    None when it is delivered, failed for good, unknown, or locked by a worker delivering it
    now (that worker finishes it; the relay re-sends it if that worker dies).
    """
    row = session.execute(
        select(OutboxEvent, Account.owner_id, OwnerContact.whatsapp_to)
        .outerjoin(Account, Account.id == OutboxEvent.wallet_id)
        .outerjoin(OwnerContact, OwnerContact.owner_id == Account.owner_id)
        .where(
            OutboxEvent.id == event_id,
            OutboxEvent.delivered_at.is_(None),
            OutboxEvent.failed_at.is_(None),
        )
        .with_for_update(of=OutboxEvent, skip_locked=True)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        return None
    event, owner_id, whatsapp_to = row
    # Deliveries are recorded only by an attempt that failed somewhere: before one, none.
    done = (
        session.scalars(
            select(OutboxDelivery.channel).where(OutboxDelivery.event_id == event_id)
        ).all()
        if event.attempts
        else ()
    )
    notice = Notice(
        id=event.id,
        event_type=event.event_type,
        key=event.key,
        created_at=event.created_at,
        data=event.payload,
        owner_id=owner_id,
        whatsapp_to=whatsapp_to,
    )
    return notice, frozenset(done)


def finish_attempt(
    session: Session,
    event_id: int,
    *,
    now: datetime,
    delivered: list[str],
    errors: dict[str, str],
) -> str:
    """Close a delivery attempt of a locked event; returns delivered, retrying or failed.

    `delivered` names the channels that took the event in this attempt, `errors` the ones
    that did not. With no errors the event is done. Otherwise the channels that took it are
    recorded, so the next attempt skips them; it waits twice as long as before, and after
    ATTEMPTS_MAX attempts it is failed for good.
    """
    event = session.get(OutboxEvent, event_id)
    assert event is not None, "finish_attempt needs the event lock_for_delivery returned"
    event.attempts += 1
    if not errors:
        event.delivered_at, event.last_error, event.next_attempt_at = now, None, None
        return "delivered"
    if delivered:
        session.execute(
            insert(OutboxDelivery)
            .values([{"event_id": event_id, "channel": channel} for channel in delivered])
            .on_conflict_do_nothing(index_elements=["event_id", "channel"])
        )
    event.last_error = "; ".join(f"{name}: {error}" for name, error in sorted(errors.items()))[
        :ERROR_CHARS_MAX
    ]
    if event.attempts >= ATTEMPTS_MAX:
        event.failed_at, event.next_attempt_at = now, None
        return "failed"
    event.next_attempt_at = now + backoff(event.attempts)
    return "retrying"


def backoff(attempts: int) -> timedelta:
    """The wait after `attempts` failed attempts: BACKOFF_MIN doubling, at most BACKOFF_MAX."""
    assert attempts >= 1
    wait: timedelta = BACKOFF_MIN * 2 ** min(attempts - 1, 20)
    return min(wait, BACKOFF_MAX)
