"""Batched delivery: claim due outbox events, send them to every channel, close the attempts.

One transaction per batch. The claim locks up to K events (skipping rows other workers hold)
and brings everything the channels need, so nothing is read twice; the sends of the batch
overlap on a bounded pool; two statements record the outcome. A channel that took an event
is never sent it again, unless the worker dies between that send and the commit: then the
lock is released with nothing recorded and the batch is sent again, which is the
at-least-once window (from a batch's first send to its commit). Subscribers deduplicate by
`webhook-id`, which stays the same on every attempt.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from ledger import outbox
from workers.channels import Channel
from workers.errors import DeliveryFailed

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Round:
    """What one batch did: how many events it claimed, and their outcomes."""

    claimed: int
    outcomes: Counter[str]


def deliver_due(
    sessions: sessionmaker[Session],
    channels: Sequence[Channel],
    pool: Executor,
    *,
    limit: int,
    now: datetime | None = None,
) -> Round:
    """Deliver up to `limit` due events in one transaction; see the module's docstring."""
    now = now or datetime.now(UTC)
    with sessions.begin() as session:
        claimed = outbox.claim_due(session, now=now, limit=limit)
        if not claimed:
            return Round(0, Counter())
        attempts = _send_all(claimed, channels, pool)
        outcomes = outbox.finish_attempts(session, attempts, now=now)
    for attempt in attempts:
        if attempt.errors:
            notice = attempt.claimed.notice
            logger.warning(
                "Notification %s %s not delivered everywhere: %s.",
                notice.event_type,
                notice.id,
                "; ".join(attempt.errors.values()),
                extra={"outbox_id": notice.id, "event_type": notice.event_type},
            )
    return Round(len(claimed), outcomes)


def _send_all(
    claimed: Sequence[outbox.Claimed], channels: Sequence[Channel], pool: Executor
) -> list[outbox.Attempt]:
    """Every (event, channel) send the batch owes; network sends overlap on `pool`."""
    pending: list[tuple[int, str, Future[str | None]]] = []
    inline: dict[tuple[int, str], str | None] = {}
    for index, event in enumerate(claimed):
        for channel in channels:
            if channel.name in event.done or not channel.accepts(event.notice):
                continue
            if channel.waits_on_network:
                pending.append((index, channel.name, pool.submit(_send, channel, event.notice)))
            else:
                inline[index, channel.name] = _send(channel, event.notice)
    results = dict(inline)
    for index, name, future in pending:
        results[index, name] = future.result()
    delivered: dict[int, list[str]] = {}
    errors: dict[int, dict[str, str]] = {}
    for (index, name), error in results.items():
        if error is None:
            delivered.setdefault(index, []).append(name)
        else:
            errors.setdefault(index, {})[name] = error
    return [
        outbox.Attempt(
            claimed=event,
            delivered=tuple(delivered.get(index, ())),
            errors=errors.get(index, {}),
        )
        for index, event in enumerate(claimed)
    ]


def _send(channel: Channel, notice: outbox.Notice) -> str | None:
    """Send one notice; None when the channel took it, else why not."""
    try:
        channel.send(notice)
    except DeliveryFailed as exc:
        return str(exc)
    except Exception as exc:  # a channel's bug counts as a failed attempt, bounded
        logger.exception("Channel %s failed on %s.", channel.name, notice.id)
        return f"{type(exc).__name__}: {exc}"
    return None
