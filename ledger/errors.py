"""The ledger's exception hierarchy."""

from __future__ import annotations

from uuid import UUID


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class MoneyError(LedgerError, ValueError):
    """An amount or currency that is not valid money."""


class UnknownCurrency(MoneyError):
    """The code is not an ISO 4217 currency."""


class AccountNotFound(LedgerError):
    """No account has that id."""


class WalletExists(LedgerError):
    """The owner already has a wallet in that currency."""

    def __init__(self, wallet_id: UUID) -> None:
        super().__init__(f"a wallet already exists for this owner and currency: {wallet_id}")
        self.wallet_id = wallet_id


class CurrencyMismatch(LedgerError):
    """The accounts or amount of a transfer are not in one currency."""


class InsufficientFunds(LedgerError):
    """The debit would take a wallet's available balance below its overdraft limit."""


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a different request."""


class PendingNotFound(LedgerError):
    """The transfer to post or void does not exist or is not a pending transfer."""


class PendingAlreadyResolved(LedgerError):
    """The pending transfer was already posted or voided."""


class PendingExpired(LedgerError):
    """The pending transfer expired; it can only be voided."""


class PostExceedsPending(LedgerError):
    """A post asked for more than the pending transfer holds."""


class InvariantViolation(LedgerError):
    """The database refused a write that would break a ledger invariant."""


class NotFound(LedgerError):
    """No top-up, order, provisioning request or usage record has that id."""


class ReviewItemNotFound(NotFound):
    """No review item has that id (event-N or conflict-N)."""


class ReviewAlreadyResolved(LedgerError):
    """The review item was resolved before; a resolution happens once."""


class ReviewActionRefused(LedgerError):
    """The resolution asked for does not fit the item (its kind, currency or top-up)."""


class OrderExists(LedgerError):
    """The wallet already has an order with that reference."""

    def __init__(self, order_id: UUID) -> None:
        super().__init__(f"this wallet already has an order with that reference: {order_id}")
        self.order_id = order_id


class OrderNotRefundable(LedgerError):
    """Only a paid or partially refunded order can be refunded."""


class RefundExceedsPaid(LedgerError):
    """The refunds of an order would add up to more than was paid."""


class ResourceBusy(LedgerError):
    """The resource already has a provisioning request pending, approved or active."""


class ProvisioningStateError(LedgerError):
    """The provisioning request is not in a state that allows this (confirm a rejected one...)."""


class OwnerTreeError(LedgerError):
    """A reseller link that would make an owner its own ancestor, or re-parent a customer."""


class MonitorExists(LedgerError):
    """The wallet already has a monitor with that direction and threshold."""


# Constraint names (set by ledger.models' naming convention and by the ledger's triggers) and the
# domain error each one means. Anything else refused by the database is an InvariantViolation.
_BY_CONSTRAINT: dict[str, type[LedgerError]] = {
    "ck_accounts_available_covers_spend": InsufficientFunds,
    "ck_transfers_accounts_exist": AccountNotFound,
    "ck_transfers_one_currency": CurrencyMismatch,
    "uq_transfers_pending_id": PendingAlreadyResolved,
    "ck_transfers_resolves_a_pending": PendingNotFound,
    "fk_transfers_pending_id": PendingNotFound,
    "ck_transfers_post_within_pending": PostExceedsPending,
    "ck_transfers_pending_not_expired": PendingExpired,
    "ck_orders_refunds_within_paid": RefundExceedsPaid,
}


# Where PostgreSQL's own message is generic ("duplicate key value ..."), say what it means.
_MESSAGES = {
    "uq_transfers_pending_id": "the pending transfer was already posted or voided",
    "fk_transfers_pending_id": "the pending transfer does not exist",
}


def error_for_constraint(constraint: str | None, message: str) -> LedgerError:
    """The domain error for a database refusal, chosen by the refusing constraint's name."""
    name = constraint or ""
    return _BY_CONSTRAINT.get(name, InvariantViolation)(_MESSAGES.get(name, message))
