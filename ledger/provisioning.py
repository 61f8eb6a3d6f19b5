"""Provisioning: no resource runs without funds to cover it, and every hour it runs is paid.

A request is decided once, by the workers: approved iff the wallet's available balance covers
a reserve of the plan's first hours, and then a hold for the reserve is placed in the same
transaction as the check, so no race between the check and the money exists on any number of
workers (the database refuses a hold the wallet cannot cover). The platform then confirms
(active: the hold is posted as the first hour's charge and the rest released) or releases
(the hold voided); a hold nobody confirms expires and the scheduler voids it.

An active resource is billed per hour of its life, each hour once, keyed by (request, hour):
an hour is charged when it ends, and at release the hour under way counts as a whole one.
Hours already consumed are facts, so their charges are forced: a wallet that cannot pay goes
into debt, the resource gets a grace period, then its suspension is requested; a top-up that
covers the debt allows it to resume.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.account import current_balance, get_wallet, system_account_id
from ledger.db import constraint_name
from ledger.errors import (
    InsufficientFunds,
    InvariantViolation,
    NotFound,
    PendingAlreadyResolved,
    ProvisioningStateError,
    ResourceBusy,
)
from ledger.models import (
    Account,
    Category,
    LowBalanceAlert,
    Plan,
    ProvisioningRequest,
    ProvisioningStatus,
    SystemAccount,
    Transfer,
)
from ledger.plan import HOURS_PER_MONTH, price_of_hour, price_of_hours
from ledger.settings import BillingSettings
from ledger.transfer import TransferRequest, post_pending, transfer, transfer_many, void_pending

HOUR = timedelta(hours=1)
REJECTED_FOR_FUNDS = "insufficient_funds"
# Hours one tick bills a resource at most: two months of catch-up after an outage, bounded.
CATCH_UP_HOURS_MAX = 2 * HOURS_PER_MONTH
# Wallets with a standing low-balance alert re-checked per call at most (for a top-up).
LOW_BALANCE_REVIEW_MAX = 500


def request_provisioning(
    session: Session, *, wallet_id: uuid.UUID, resource_id: str, plan: str
) -> ProvisioningRequest:
    """Record a pending request to run `resource_id` on `plan`, paid from the wallet.

    Raises ResourceBusy when the wallet has a request for the resource pending, approved or
    active.
    """
    wallet = get_wallet(session, wallet_id)
    request = ProvisioningRequest(wallet_id=wallet.id, resource_id=resource_id, plan=plan)
    try:
        with session.begin_nested():
            session.add(request)
    except IntegrityError as exc:
        if constraint_name(exc) != "uq_provisioning_requests_live_resource_id":
            raise InvariantViolation(str(exc.orig)) from exc
        raise ResourceBusy(
            f'resource "{resource_id}" already has a pending, approved or active request'
            " for this wallet; release it first"
        ) from exc
    return request


def get_provisioning_request(
    session: Session, request_id: uuid.UUID, *, lock: bool = False
) -> ProvisioningRequest:
    """The request; with `lock`, its row is locked until the transaction ends. Raises NotFound."""
    statement = select(ProvisioningRequest).where(ProvisioningRequest.id == request_id)
    if lock:
        # Refreshed: an unlocked read earlier in the transaction must not decide for it.
        statement = statement.with_for_update().execution_options(populate_existing=True)
    request = session.scalar(statement)
    if request is None:
        raise NotFound(f"no provisioning request with id {request_id}")
    return request


def reserve_for(monthly_price_minor: int, settings: BillingSettings) -> int:
    """The hold an approval places: the price of the plan's first `reserve_hours` hours."""
    return max(1, price_of_hours(monthly_price_minor, 1, settings.reserve_hours))


def decide(
    session: Session, request_id: uuid.UUID, *, now: datetime, settings: BillingSettings
) -> ProvisioningRequest:
    """Approve the request with a hold, or reject it; once, however often it is called.

    The decision goes out as `provisioning.decided`. A rejection is recorded, not raised:
    `insufficient_funds` with the shortfall, `unknown_plan` or `currency_mismatch`.
    """
    request = get_provisioning_request(session, request_id, lock=True)
    if request.status != ProvisioningStatus.PENDING:
        return request
    wallet = get_wallet(session, request.wallet_id)
    plan = session.get(Plan, request.plan)
    expires_at: datetime | None = None
    if plan is None or not plan.active:
        _reject(request, "unknown_plan")
    elif plan.currency != wallet.currency:
        _reject(request, "currency_mismatch")
    else:
        expires_at = _hold_reserve(session, request, plan, now=now, settings=settings)
    request.decided_at = now
    outbox.emit_for_wallet(
        session,
        "provisioning.decided",
        key=f"provisioning.decided:{request.id}",
        wallet_id=request.wallet_id,
        data={
            "request_id": str(request.id),
            "resource_id": request.resource_id,
            "plan": request.plan,
            "status": request.status,
            "reason": request.reason,
            "reserve_minor": request.reserve_minor,
            "shortfall_minor": request.shortfall_minor,
            "hold_expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return request


def _hold_reserve(
    session: Session,
    request: ProvisioningRequest,
    plan: Plan,
    *,
    now: datetime,
    settings: BillingSettings,
) -> datetime | None:
    """Approve with a hold of the reserve, or reject for funds; the hold's expiry, if any."""
    reserve = reserve_for(plan.monthly_price_minor, settings)
    expires_at = now + timedelta(seconds=settings.confirm_timeout_s)
    revenue = system_account_id(session, SystemAccount.REVENUE, plan.currency)
    try:
        with session.begin_nested():
            hold = transfer(
                session,
                TransferRequest(
                    idempotency_key=f"provisioning:{request.id}:hold",
                    debit_account_id=request.wallet_id,
                    credit_account_id=revenue,
                    amount_minor=reserve,
                    currency=plan.currency,
                    category=Category.HOLD,
                    expires_at=expires_at,
                    memo=f"reserve for {request.resource_id[:200]} on {plan.id}",
                ),
            ).transfer
    except InsufficientFunds:
        balance = current_balance(session, request.wallet_id)
        spendable = balance.available_minor + balance.overdraft_limit_minor
        _reject(request, REJECTED_FOR_FUNDS)
        request.reserve_minor = reserve
        request.shortfall_minor = max(1, reserve - spendable)
        return None
    request.status = ProvisioningStatus.APPROVED
    request.hold_id = hold.id
    request.reserve_minor = reserve
    request.monthly_price_minor = plan.monthly_price_minor
    return expires_at


def _reject(request: ProvisioningRequest, reason: str) -> None:
    request.status = ProvisioningStatus.REJECTED
    request.reason = reason


def confirm(session: Session, request_id: uuid.UUID, *, now: datetime) -> ProvisioningRequest:
    """The platform runs the resource: the hold pays its first hour, the rest is released.

    Idempotent for an active request. Raises ProvisioningStateError unless it is approved,
    PendingExpired when the hold expired (the scheduler then releases the request), and
    PendingAlreadyResolved when the scheduler voided it first.
    """
    request = _lock_with_hold(session, request_id)
    if request.status == ProvisioningStatus.ACTIVE:
        return request
    if request.status != ProvisioningStatus.APPROVED:
        raise ProvisioningStateError(
            f"provisioning request {request.id} is {request.status}; only an approved one"
            " can be confirmed"
        )
    assert request.hold_id is not None
    assert request.monthly_price_minor is not None
    first_hour = price_of_hour(request.monthly_price_minor, 1)
    key = _hour_key(request, 1)
    if first_hour > 0:
        post_pending(session, request.hold_id, idempotency_key=key, amount_minor=first_hour)
    else:
        void_pending(session, request.hold_id, idempotency_key=key, memo="first hour is free")
    request.status = ProvisioningStatus.ACTIVE
    request.activated_at = now
    request.billed_hours = 1
    request.next_bill_at = now + 2 * HOUR
    return request


def release(session: Session, request_id: uuid.UUID, *, now: datetime) -> ProvisioningRequest:
    """The resource failed to start or was deleted: the hold is voided, or billing stops.

    An active resource is billed up to now first, the hour under way as a whole hour.
    Idempotent for a released request; raises ProvisioningStateError for a rejected one.
    """
    request = _lock_with_hold(session, request_id)
    if request.status == ProvisioningStatus.RELEASED:
        return request
    if request.status == ProvisioningStatus.REJECTED:
        raise ProvisioningStateError(f"provisioning request {request.id} was rejected")
    if request.status == ProvisioningStatus.APPROVED:
        assert request.hold_id is not None
        try:
            with session.begin_nested():
                void_pending(
                    session,
                    request.hold_id,
                    idempotency_key=f"provisioning:{request.id}:release",
                    memo="released before it ran",
                )
        except PendingAlreadyResolved:
            pass  # expired and voided by the scheduler meanwhile: nothing is held
    elif request.status == ProvisioningStatus.ACTIVE:
        assert request.activated_at is not None
        started = math.ceil((now - request.activated_at) / HOUR)
        _bill(session, request, through_hour=max(1, started))
    request.status = ProvisioningStatus.RELEASED
    request.reason = request.reason or "released"
    request.released_at = now
    return request


def _lock_with_hold(session: Session, request_id: uuid.UUID) -> ProvisioningRequest:
    """Lock the request's hold, then the request: the order the scheduler's expiry takes them
    in (void_expired locks expired holds, release_expired their requests), so a confirm or a
    release racing the expiry waits for it instead of deadlocking with it."""
    hold_id = session.scalar(
        select(ProvisioningRequest.hold_id).where(ProvisioningRequest.id == request_id)
    )
    if hold_id is not None:
        session.execute(select(Transfer.id).where(Transfer.id == hold_id).with_for_update())
    return get_provisioning_request(session, request_id, lock=True)


def release_expired(session: Session, voided: list[Transfer], *, now: datetime) -> int:
    """Release the approved requests whose holds `voided` (expired holds) just voided."""
    holds = [void.pending_id for void in voided if void.pending_id is not None]
    if not holds:
        return 0
    expired = session.scalars(
        select(ProvisioningRequest)
        .where(
            ProvisioningRequest.hold_id.in_(holds),
            ProvisioningRequest.status == ProvisioningStatus.APPROVED,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for request in expired:
        request.status = ProvisioningStatus.RELEASED
        request.reason = "confirmation_timeout"
        request.released_at = now
    return len(expired)


def bill_due(session: Session, *, now: datetime, limit: int = 200) -> list[uuid.UUID]:
    """Charge every active resource for each whole hour it has run and not paid yet.

    Catches up after downtime (bounded by CATCH_UP_HOURS_MAX a call); a repeated or late
    tick bills nothing twice. Rows another scheduler bills are skipped. Returns the wallets
    charged.
    """
    due = session.scalars(
        select(ProvisioningRequest)
        .where(
            ProvisioningRequest.status == ProvisioningStatus.ACTIVE,
            ProvisioningRequest.next_bill_at <= now,
        )
        # Wallet by wallet, as the locks of their rows are then taken in one order.
        .order_by(ProvisioningRequest.wallet_id, ProvisioningRequest.next_bill_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    charged = []
    for request in due:
        assert request.activated_at is not None
        ended = (now - request.activated_at) // HOUR
        _bill(session, request, through_hour=min(ended, request.billed_hours + CATCH_UP_HOURS_MAX))
        charged.append(request.wallet_id)
    return charged


def _bill(session: Session, request: ProvisioningRequest, *, through_hour: int) -> None:
    """Charge hours billed_hours + 1 to `through_hour` of a locked active request, each once."""
    assert request.monthly_price_minor is not None
    first = request.billed_hours + 1
    if through_hour < first:
        return
    wallet = session.get(Account, request.wallet_id)
    assert wallet is not None
    revenue = system_account_id(session, SystemAccount.REVENUE, wallet.currency)
    charges = [
        TransferRequest(
            idempotency_key=_hour_key(request, hour),
            debit_account_id=request.wallet_id,
            credit_account_id=revenue,
            amount_minor=amount,
            currency=wallet.currency,
            category=Category.USAGE,
            forced=True,  # consumed already: it may take the wallet into debt
            memo=f"{request.resource_id[:200]} hour {hour}",
        )
        for hour in range(first, through_hour + 1)
        if (amount := price_of_hour(request.monthly_price_minor, hour)) > 0
    ]
    transfer_many(session, charges)
    request.billed_hours = through_hour
    assert request.activated_at is not None
    request.next_bill_at = request.activated_at + (through_hour + 1) * HOUR
    total = sum(charge.amount_minor for charge in charges)
    if total:
        outbox.emit_if_now_negative(
            session,
            request.wallet_id,
            total,
            cause=f"resource-hours:{request.id}:{first}-{through_hour}",
        )


def _hour_key(request: ProvisioningRequest, hour: int) -> str:
    return f"resource-hour:{request.id}:{hour}"


def review_debts(
    session: Session,
    *,
    now: datetime,
    settings: BillingSettings,
    charged: set[uuid.UUID] | frozenset[uuid.UUID] = frozenset(),
) -> int:
    """Start grace periods, request suspensions and allow resumes as wallets' debts change.

    Looks at the resources of the wallets just `charged` and at those already in a grace
    period. A resource whose wallet is in debt starts a grace period (a debt that arose
    otherwise, by a refund or metered usage, is noticed at its next hourly charge); when the
    period has run out, `resource.suspend_requested` goes out, once. When the balance is back
    at `resume_balance_minor` or above, `resource.resume_allowed` goes out, once. Returns how
    many resources changed.
    """
    balance = Account.credits_posted - Account.debits_posted
    grace_over = now - timedelta(seconds=settings.grace_s)
    rows = session.execute(
        select(ProvisioningRequest, balance)
        .join(Account, Account.id == ProvisioningRequest.wallet_id)
        .where(
            ProvisioningRequest.status == ProvisioningStatus.ACTIVE,
            or_(
                ProvisioningRequest.wallet_id.in_(charged),
                ProvisioningRequest.grace_started_at.is_not(None),
            ),
            or_(
                and_(
                    balance < 0,
                    or_(
                        ProvisioningRequest.grace_started_at.is_(None),
                        and_(
                            ProvisioningRequest.suspend_requested_at.is_(None),
                            ProvisioningRequest.grace_started_at <= grace_over,
                        ),
                    ),
                ),
                and_(
                    balance >= settings.resume_balance_minor,
                    ProvisioningRequest.grace_started_at.is_not(None),
                ),
            ),
        )
        .limit(500)
        .with_for_update(of=ProvisioningRequest, skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    for request, balance_minor in rows:
        if balance_minor >= settings.resume_balance_minor:
            if request.suspend_requested_at is not None:
                _announce(session, request, "resource.resume_allowed", request.suspend_requested_at)
            request.grace_started_at = request.suspend_requested_at = None
        elif request.grace_started_at is None:
            request.grace_started_at = now
        else:
            request.suspend_requested_at = now
            _announce(
                session,
                request,
                "resource.suspend_requested",
                request.grace_started_at,
                debt_minor=-balance_minor,
            )
    return len(rows)


def _announce(
    session: Session,
    request: ProvisioningRequest,
    event_type: str,
    since: datetime,
    **data: Any,
) -> None:
    outbox.emit_for_wallet(
        session,
        event_type,
        key=f"{event_type}:{request.id}:{since.isoformat()}",
        wallet_id=request.wallet_id,
        data={"request_id": str(request.id), "resource_id": request.resource_id, **data},
    )


@dataclass(frozen=True, slots=True)
class Burn:
    """How fast a wallet's active resources spend it, and how long its money lasts."""

    wallet_id: uuid.UUID
    currency: str
    available_minor: int
    burn_minor_per_month: int  # the sum of the active resources' monthly prices
    hours_to_zero: int | None  # None while nothing burns

    def as_dict(self) -> dict[str, Any]:
        """As JSON: ids as strings, money in minor units."""
        return {
            "wallet_id": str(self.wallet_id),
            "currency": self.currency,
            "available_minor": self.available_minor,
            "burn_minor_per_month": self.burn_minor_per_month,
            "hours_to_zero": self.hours_to_zero,
        }


def burn_rate(session: Session, wallet_id: uuid.UUID) -> Burn:
    """The wallet's burn rate and time to zero at it (whole hours, rounded down)."""
    balance = current_balance(session, wallet_id)
    monthly = session.scalar(
        select(func.coalesce(func.sum(ProvisioningRequest.monthly_price_minor), 0)).where(
            ProvisioningRequest.wallet_id == wallet_id,
            ProvisioningRequest.status == ProvisioningStatus.ACTIVE,
        )
    )
    monthly = int(monthly or 0)
    hours = None
    if monthly:
        hours = max(0, balance.available_minor) * HOURS_PER_MONTH // monthly
    return Burn(wallet_id, balance.currency, balance.available_minor, monthly, hours)


def review_low_balance(
    session: Session, wallet_ids: set[uuid.UUID], *, settings: BillingSettings
) -> int:
    """`wallet.low_balance` for each threshold a wallet's time to zero has newly dropped below.

    Checks `wallet_ids` and every wallet with an alert standing (it may have been topped up):
    a threshold crossed is recorded, so it alerts once; one the wallet is above again is
    forgotten, so the next crossing alerts again. Returns how many alerts went out.
    """
    # The longest-standing first; the rest are re-checked at their next hourly charge anyway.
    standing = set(
        session.scalars(
            select(LowBalanceAlert.wallet_id)
            .group_by(LowBalanceAlert.wallet_id)
            .order_by(func.min(LowBalanceAlert.crossed_at))
            .limit(LOW_BALANCE_REVIEW_MAX)
        )
    )
    sent = 0
    for wallet_id in sorted(wallet_ids | standing):
        burn = burn_rate(session, wallet_id)
        for threshold in settings.low_balance_hours:
            below = burn.hours_to_zero is not None and burn.hours_to_zero < threshold
            if not below:
                session.execute(
                    delete(LowBalanceAlert).where(
                        LowBalanceAlert.wallet_id == wallet_id,
                        LowBalanceAlert.threshold_h == threshold,
                    )
                )
                continue
            crossed = session.execute(
                insert(LowBalanceAlert)
                .values(wallet_id=wallet_id, threshold_h=threshold)
                .on_conflict_do_nothing()
                .returning(LowBalanceAlert.crossed_at)
            ).scalar_one_or_none()
            if crossed is None:
                continue  # alerted already for this crossing
            outbox.emit_for_wallet(
                session,
                "wallet.low_balance",
                key=f"wallet.low_balance:{wallet_id}:{threshold}:{crossed.isoformat()}",
                wallet_id=wallet_id,
                data={
                    "threshold_hours": threshold,
                    "hours_to_zero": burn.hours_to_zero,
                    "burn_minor_per_month": burn.burn_minor_per_month,
                },
            )
            sent += 1
    return sent
