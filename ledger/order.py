"""Orders: paid from a wallet exactly once, refunded up to what was paid and never beyond.

Every change of an order's money is a ledger transfer whose idempotency key names the order,
in the same transaction as the change of the order row.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.account import get_wallet, system_account_id
from ledger.db import constraint_name
from ledger.errors import (
    InsufficientFunds,
    InvariantViolation,
    NotFound,
    OrderExists,
    OrderNotRefundable,
    RefundExceedsPaid,
)
from ledger.models import Category, Order, OrderStatus, SystemAccount, Transfer
from ledger.money import validate_amount_minor
from ledger.transfer import TransferRequest, transfer

REJECTED_FOR_FUNDS = "insufficient_funds"


def create_order(
    session: Session, *, wallet_id: uuid.UUID, amount_minor: int, reference: str
) -> Order:
    """Record a pending order; raises OrderExists when the wallet has one with that reference."""
    wallet = get_wallet(session, wallet_id)
    order = Order(
        wallet_id=wallet.id,
        amount_minor=validate_amount_minor(amount_minor),
        currency=wallet.currency,
        reference=reference,
    )
    try:
        with session.begin_nested():
            session.add(order)
    except IntegrityError as exc:
        if constraint_name(exc) != "uq_orders_wallet_id_reference":
            raise InvariantViolation(str(exc.orig)) from exc
        existing = session.scalar(
            select(Order.id).where(Order.wallet_id == wallet_id, Order.reference == reference)
        )
        assert existing is not None
        raise OrderExists(existing) from exc
    return order


def get_order(session: Session, order_id: uuid.UUID, *, lock: bool = False) -> Order:
    """The order; with `lock`, its row is locked until the transaction ends. Raises NotFound."""
    statement = select(Order).where(Order.id == order_id)
    if lock:
        # Refreshed: an unlocked read earlier in the transaction must not decide for it.
        statement = statement.with_for_update().execution_options(populate_existing=True)
    order = session.scalar(statement)
    if order is None:
        raise NotFound(f"no order with id {order_id}")
    return order


def pay_order(session: Session, order_id: uuid.UUID) -> Order:
    """Pay a pending order from its wallet, or reject it for insufficient funds.

    A rejection moves no money and is recorded with its reason, not raised; it is an answer,
    not the end of the order: paying a rejected order again tries again (after a top-up, it
    pays). Idempotent: an order already paid (or refunded) is returned as it is, and the
    payment's transfer key names the order, so however often it is paid it is paid once.
    """
    order = get_order(session, order_id, lock=True)
    if order.status not in (OrderStatus.PENDING, OrderStatus.REJECTED):
        return order
    revenue = system_account_id(session, SystemAccount.REVENUE, order.currency)
    try:
        with session.begin_nested():
            transfer(
                session,
                TransferRequest(
                    idempotency_key=f"order:{order.id}:pay",
                    debit_account_id=order.wallet_id,
                    credit_account_id=revenue,
                    amount_minor=order.amount_minor,
                    currency=order.currency,
                    category=Category.ORDER_PAYMENT,
                    memo=order.reference[:255],
                ),
            )
    except InsufficientFunds:
        order.status = OrderStatus.REJECTED
        order.reason = REJECTED_FOR_FUNDS
        return order
    order.status = OrderStatus.PAID
    order.reason = None
    order.paid_minor = order.amount_minor
    outbox.emit_for_wallet(
        session,
        "order.paid",
        key=f"order.paid:{order.id}",
        wallet_id=order.wallet_id,
        data={
            "order_id": str(order.id),
            "reference": order.reference,
            "amount_minor": order.amount_minor,
        },
    )
    return order


def refund_order(
    session: Session, order_id: uuid.UUID, *, amount_minor: int, refund_key: str
) -> Order:
    """Refund part or all of a paid order to its wallet.

    `refund_key` identifies this refund: a repeat with the same key refunds nothing more.
    Racing refunds are serialized on the order row, and the database refuses any total above
    what was paid. Raises OrderNotRefundable, RefundExceedsPaid, IdempotencyConflict.
    """
    validate_amount_minor(amount_minor)
    order = get_order(session, order_id, lock=True)
    revenue = system_account_id(session, SystemAccount.REVENUE, order.currency)
    request = TransferRequest(
        idempotency_key=f"order:{order.id}:refund:{refund_key}",
        debit_account_id=revenue,
        credit_account_id=order.wallet_id,
        amount_minor=amount_minor,
        currency=order.currency,
        category=Category.ORDER_REFUND,
        memo=order.reference[:255],
    )
    done_before = session.scalar(
        select(Transfer.id).where(Transfer.idempotency_key == request.idempotency_key)
    )
    if done_before is not None:
        transfer(session, request)  # the original, or IdempotencyConflict for another amount
        return order
    if order.status not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
        raise OrderNotRefundable(f"order {order.id} is {order.status}; only a paid order refunds")
    if order.refunded_minor + amount_minor > order.paid_minor:
        raise RefundExceedsPaid(
            f"order {order.id}: refunds would total {order.refunded_minor + amount_minor},"
            f" more than the {order.paid_minor} paid"
        )
    refund = transfer(session, request).transfer
    order.refunded_minor += amount_minor
    order.status = (
        OrderStatus.REFUNDED
        if order.refunded_minor == order.paid_minor
        else OrderStatus.PARTIALLY_REFUNDED
    )
    outbox.emit_for_wallet(
        session,
        "order.refunded",
        key=f"order.refunded:{refund.id}",
        wallet_id=order.wallet_id,
        data={
            "order_id": str(order.id),
            "reference": order.reference,
            "amount_minor": amount_minor,
            "refunded_minor": order.refunded_minor,
        },
    )
    return order
