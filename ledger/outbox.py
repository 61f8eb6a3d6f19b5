"""The transactional outbox: facts for the world outside, written with the change they report.

An event commits or rolls back with the ledger effect it describes, so nothing is announced
that did not happen and nothing that happened goes unannounced. The workers deliver it after
commit, to every channel at least once, claiming due events in batches (`claim_due`, rows
other workers hold skipped) and closing each batch's attempts in two statements
(`finish_attempts`): a channel that took an event is recorded and never sent it again; one
that failed is retried with backoff, the others untouched.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.account import current_balance
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


@dataclass(frozen=True, slots=True)
class Claimed:
    """A locked, undelivered event: what to send, how often it was tried, who has it."""

    notice: Notice
    attempts: int
    done: frozenset[str]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one delivery attempt of a claimed event achieved, channel by channel."""

    claimed: Claimed
    delivered: tuple[str, ...]
    errors: dict[str, str]


BATCH_MAX_DEFAULT = 32

# Everything the channels need in the statement that locks the rows: the owner and the
# contact by join, the channels that took an earlier attempt by subquery (an event never
# tried has none, so the subquery is skipped). Rows another worker holds are skipped, so any
# number of workers share a backlog; a fresh row (no next attempt set) is always due, so a
# clock behind the database's cannot hold it back.
_CLAIM = text(
    """
    SELECT o.id, o.event_type, o.key, o.created_at, o.payload, o.attempts,
           a.owner_id, c.whatsapp_to,
           CASE WHEN o.attempts > 0
                THEN ARRAY(SELECT d.channel FROM outbox_deliveries d WHERE d.event_id = o.id)
           END AS done
    FROM outbox_events o
    LEFT JOIN accounts a ON a.id = o.wallet_id
    LEFT JOIN owner_contacts c ON c.owner_id = a.owner_id
    WHERE o.delivered_at IS NULL AND o.failed_at IS NULL
      AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= :now)
    ORDER BY o.created_at
    LIMIT :limit
    FOR UPDATE OF o SKIP LOCKED
    """
)

_RECORD_DELIVERIES = text(
    """
    INSERT INTO outbox_deliveries (event_id, channel)
    SELECT * FROM unnest(CAST(:event_ids AS bigint[]), CAST(:channels AS text[]))
    ON CONFLICT (event_id, channel) DO NOTHING
    """
)

_CLOSE_ATTEMPTS = text(
    """
    UPDATE outbox_events o
    SET attempts = o.attempts + 1,
        delivered_at = v.delivered_at,
        failed_at = v.failed_at,
        next_attempt_at = v.next_attempt_at,
        last_error = v.last_error
    FROM unnest(CAST(:ids AS bigint[]), CAST(:delivered_at AS timestamptz[]),
                CAST(:failed_at AS timestamptz[]), CAST(:next_attempt_at AS timestamptz[]),
                CAST(:last_error AS text[]))
         AS v(id, delivered_at, failed_at, next_attempt_at, last_error)
    WHERE o.id = v.id
    """
)


def claim_due(session: Session, *, now: datetime, limit: int = BATCH_MAX_DEFAULT) -> list[Claimed]:
    """Lock up to `limit` undelivered events whose attempt is due, oldest first.

    Locked until the caller's transaction ends, so no other worker claims them meanwhile;
    delivered ones, ones failed for good, and ones waiting out a backoff are not claimed.
    """
    assert limit >= 1
    rows = session.connection().execute(_CLAIM, {"now": now, "limit": limit})
    return [
        Claimed(
            notice=Notice(
                id=row.id,
                event_type=row.event_type,
                key=row.key,
                created_at=row.created_at,
                data=row.payload,
                owner_id=row.owner_id,
                whatsapp_to=row.whatsapp_to,
            ),
            attempts=row.attempts,
            done=frozenset(row.done or ()),
        )
        for row in rows
    ]


def finish_attempts(
    session: Session, attempts: Sequence[Attempt], *, now: datetime
) -> Counter[str]:
    """Close the delivery attempts of claimed events in two statements; counts by outcome.

    An event with no errors is delivered. Otherwise the channels that took it are recorded,
    so the next attempt skips them; it waits twice as long as before, and after ATTEMPTS_MAX
    attempts it is failed for good. Either way the event's attempts grow by one.
    """
    outcomes: Counter[str] = Counter()
    if not attempts:
        return outcomes
    recorded: list[tuple[int, str]] = []
    ids: list[int] = []
    delivered_at: list[datetime | None] = []
    failed_at: list[datetime | None] = []
    next_attempt_at: list[datetime | None] = []
    last_error: list[str | None] = []
    for attempt in attempts:
        event_id, tried = attempt.claimed.notice.id, attempt.claimed.attempts + 1
        ids.append(event_id)
        if not attempt.errors:
            outcomes["delivered"] += 1
            delivered_at.append(now)
            failed_at.append(None)
            next_attempt_at.append(None)
            last_error.append(None)
            continue
        # Deliveries are recorded only by an attempt that failed somewhere: a delivered
        # event needs no record of who has it, since nobody is sent it again.
        recorded.extend((event_id, channel) for channel in attempt.delivered)
        delivered_at.append(None)
        last_error.append(
            "; ".join(f"{name}: {error}" for name, error in sorted(attempt.errors.items()))[
                :ERROR_CHARS_MAX
            ]
        )
        if tried >= ATTEMPTS_MAX:
            outcomes["failed"] += 1
            failed_at.append(now)
            next_attempt_at.append(None)
        else:
            outcomes["retrying"] += 1
            failed_at.append(None)
            next_attempt_at.append(now + backoff(tried))
    connection = session.connection()
    if recorded:
        connection.execute(
            _RECORD_DELIVERIES,
            {"event_ids": [e for e, _ in recorded], "channels": [c for _, c in recorded]},
        )
    connection.execute(
        _CLOSE_ATTEMPTS,
        {
            "ids": ids,
            "delivered_at": delivered_at,
            "failed_at": failed_at,
            "next_attempt_at": next_attempt_at,
            "last_error": last_error,
        },
    )
    return outcomes


def backoff(attempts: int) -> timedelta:
    """The wait after `attempts` failed attempts: BACKOFF_MIN doubling, at most BACKOFF_MAX."""
    assert attempts >= 1
    wait: timedelta = BACKOFF_MIN * 2 ** min(attempts - 1, 20)
    return min(wait, BACKOFF_MAX)
