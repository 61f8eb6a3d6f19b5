"""Balance monitors: thresholds on a wallet's available balance, announced once per crossing.

The transfer trigger (`ledger_watch_wallet`, migration 0012) judges every monitor of a wallet
after each change of its available balance, in the statement that changes it: when available
passes a threshold (`below`: under it; `above`: over it) the monitor turns `crossed` and
`wallet.balance_crossed` goes into the outbox, once; when available comes back, the monitor
re-arms without an event. This module sets, lists and removes monitors.
"""

from __future__ import annotations

import enum
import uuid

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger.account import current_balance, get_wallet
from ledger.db import constraint_name
from ledger.errors import InvariantViolation, MonitorExists, NotFound
from ledger.models import BalanceMonitor
from ledger.money import AMOUNT_MINOR_MAX

MONITORS_PER_WALLET_MAX = 50


class Direction(enum.StrEnum):
    BELOW = "below"
    ABOVE = "above"


def crossed(direction: Direction, available_minor: int, threshold_minor: int) -> bool:
    """Whether `available_minor` is past the threshold, as the trigger judges it."""
    if direction is Direction.BELOW:
        return available_minor < threshold_minor
    return available_minor > threshold_minor


def add_monitor(
    session: Session, wallet_id: uuid.UUID, direction: Direction, threshold_minor: int
) -> BalanceMonitor:
    """Watch the wallet's available balance against a threshold.

    A monitor starts in the state the balance is in now: it announces the next crossing, not
    one that happened before it existed. Raises MonitorExists for the same threshold twice,
    ValueError beyond MONITORS_PER_WALLET_MAX or for a threshold out of range.
    """
    if not -AMOUNT_MINOR_MAX <= threshold_minor <= AMOUNT_MINOR_MAX:
        raise ValueError(f"threshold_minor must be within ±{AMOUNT_MINOR_MAX}")
    wallet = get_wallet(session, wallet_id)
    # The wallet's lock: the state read here is the one no transfer changes before commit.
    session.refresh(wallet, with_for_update=True)
    count = len(list_monitors(session, wallet.id))
    if count >= MONITORS_PER_WALLET_MAX:
        raise ValueError(f"a wallet has at most {MONITORS_PER_WALLET_MAX} monitors")
    available = current_balance(session, wallet.id).available_minor
    monitor = BalanceMonitor(
        wallet_id=wallet.id,
        direction=direction,
        threshold_minor=threshold_minor,
        crossed=crossed(direction, available, threshold_minor),
    )
    try:
        with session.begin_nested():
            session.add(monitor)
    except IntegrityError as exc:
        if constraint_name(exc) == "uq_balance_monitors_wallet_id_direction_threshold_minor":
            raise MonitorExists(
                f"wallet {wallet.id} has a monitor {direction} {threshold_minor} already"
            ) from exc
        raise InvariantViolation(str(exc.orig)) from exc
    return monitor


def list_monitors(session: Session, wallet_id: uuid.UUID) -> list[BalanceMonitor]:
    """The wallet's monitors, lowest threshold first."""
    return list(
        session.scalars(
            select(BalanceMonitor)
            .where(BalanceMonitor.wallet_id == wallet_id)
            .order_by(BalanceMonitor.threshold_minor, BalanceMonitor.direction)
            .execution_options(populate_existing=True)
        )
    )


def remove_monitor(session: Session, wallet_id: uuid.UUID, monitor_id: uuid.UUID) -> None:
    """Stop watching; raises NotFound for a monitor the wallet does not have."""
    removed = session.execute(
        delete(BalanceMonitor)
        .where(BalanceMonitor.id == monitor_id, BalanceMonitor.wallet_id == wallet_id)
        .returning(BalanceMonitor.id)
    ).first()
    if removed is None:
        raise NotFound(f"wallet {wallet_id} has no monitor {monitor_id}")


def monitor_view(monitor: BalanceMonitor) -> dict[str, object]:
    return {
        "id": str(monitor.id),
        "wallet_id": str(monitor.wallet_id),
        "direction": monitor.direction,
        "threshold_minor": monitor.threshold_minor,
        "crossed": monitor.crossed,
        "crossings": monitor.crossings,
    }
