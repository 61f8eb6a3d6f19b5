"""Typed table models of the ledger; the migrations create the same schema plus its triggers."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Constraint names are the contract between the database and ledger.errors: an IntegrityError
# is mapped to a domain error by the name of the constraint that refused it.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        int: BigInteger(),
        str: Text(),
        datetime: DateTime(timezone=True),
        dict[str, Any]: JSONB(),
    }


class AccountKind(enum.StrEnum):
    WALLET = "wallet"
    SYSTEM = "system"


class SystemAccount(enum.StrEnum):
    """Codes of the per-currency system accounts; gateway clearing adds the gateway name."""

    REVENUE = "revenue"
    REFUNDS = "refunds"
    PROMOTIONS = "promotions"
    HOLDS = "provisioning_holds"
    ADJUSTMENTS = "adjustments"
    EXPIRED_CREDITS = "expired_credits"

    @staticmethod
    def clearing(gateway: str) -> str:
        return f"clearing:{gateway}"


class TransferKind(enum.StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    POST_PENDING = "post_pending"
    VOID_PENDING = "void_pending"


class Category(enum.StrEnum):
    """What a transfer is for; only facts that already happened may be forced."""

    TOPUP = "topup"
    TOPUP_REVERSAL = "topup_reversal"
    ORDER_PAYMENT = "order_payment"
    ORDER_REFUND = "order_refund"
    USAGE = "usage"
    HOLD = "hold"
    TRANSFER = "transfer"
    ADJUSTMENT = "adjustment"
    GRANT = "grant"
    GRANT_EXPIRY = "grant_expiry"


FORCEABLE_CATEGORIES = (Category.TOPUP_REVERSAL, Category.USAGE)


def _in(column: str, values: Any) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Account(Base):
    """A wallet (credit-normal liability of one owner) or a per-currency system account.

    Only wallets cache their totals here; a system account's totals are derived from its
    transfers when read (ledger.totals), so no transfer writes or locks a system account row.
    """

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(_in("kind", AccountKind), name="kind_known"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        CheckConstraint("(kind = 'wallet') = (owner_id IS NOT NULL)", name="wallet_has_owner"),
        CheckConstraint("(kind = 'system') = (code IS NOT NULL)", name="system_has_code"),
        CheckConstraint("length(owner_id) BETWEEN 1 AND 255", name="owner_id_length"),
        CheckConstraint("overdraft_limit_minor >= 0", name="overdraft_limit_nonnegative"),
        CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0"
            " AND debits_pending >= 0 AND credits_pending >= 0",
            name="totals_nonnegative",
        ),
        CheckConstraint(
            "kind = 'wallet' OR (debits_posted = 0 AND credits_posted = 0"
            " AND debits_pending = 0 AND credits_pending = 0)",
            name="system_totals_derived",
        ),
        # The split of a wallet's balance, kept by the transfer trigger.
        CheckConstraint(
            "paid_minor + granted_minor = credits_posted - debits_posted AND granted_minor >= 0",
            name="paid_and_granted_make_balance",
        ),
        UniqueConstraint("owner_id", "currency"),
        UniqueConstraint("code", "currency"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    kind: Mapped[str]
    owner_id: Mapped[str | None]
    code: Mapped[str | None]
    currency: Mapped[str] = mapped_column(String(3))
    overdraft_limit_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    debits_posted: Mapped[int] = mapped_column(default=0, server_default="0")
    credits_posted: Mapped[int] = mapped_column(default=0, server_default="0")
    debits_pending: Mapped[int] = mapped_column(default=0, server_default="0")
    credits_pending: Mapped[int] = mapped_column(default=0, server_default="0")
    # Paid credit (top-ups less their refunds; negative when in debt) and unused granted
    # credit; together the balance.
    paid_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    granted_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    # Has a balance monitor or an auto top-up rule, which the transfer trigger then judges.
    watched: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Transfer(Base):
    """An immutable movement of money from a debit account to a credit account.

    A pending transfer (a hold) is later resolved by a second transfer of kind post_pending
    (full or partial) or void_pending that references it; at most one resolution each.
    """

    __tablename__ = "transfers"
    # The accounts are checked by the ledger_apply_transfer trigger (they exist, and share the
    # transfer's currency), not by foreign keys: a foreign key would share-lock the system
    # account's row in every transfer, a hot row every wallet would wait on. Accounts are
    # never deleted and never change currency, so the check cannot be raced.
    __table_args__ = (
        CheckConstraint(_in("kind", TransferKind), name="kind_known"),
        CheckConstraint(_in("category", Category), name="category_known"),
        CheckConstraint("amount_minor > 0 AND amount_minor <= 1000000000000000", name="amount"),
        CheckConstraint("debit_account_id <> credit_account_id", name="distinct_accounts"),
        CheckConstraint(
            "(kind IN ('post_pending', 'void_pending')) = (pending_id IS NOT NULL)",
            name="resolution_names_pending",
        ),
        CheckConstraint("(kind = 'pending') = (expires_at IS NOT NULL)", name="pending_has_expiry"),
        CheckConstraint(
            f"NOT forced OR (kind = 'posted' AND {_in('category', FORCEABLE_CATEGORIES)})",
            name="forced_only_for_facts",
        ),
        CheckConstraint("length(idempotency_key) BETWEEN 1 AND 255", name="key_length"),
        CheckConstraint(
            "(category IN ('grant', 'grant_expiry')) = (grant_id IS NOT NULL)",
            name="grant_names_grant",
        ),
        # One funding and one expiry per grant.
        Index(
            "uq_transfers_grant_funding",
            "grant_id",
            unique=True,
            postgresql_where=text("category = 'grant'"),
        ),
        Index(
            "uq_transfers_grant_expiry",
            "grant_id",
            unique=True,
            postgresql_where=text("category = 'grant_expiry'"),
        ),
        Index("ix_transfers_debit_account_id", "debit_account_id", "id"),
        Index("ix_transfers_credit_account_id", "credit_account_id", "id"),
        # At most one resolution per hold. Partial, so the NULLs of ordinary transfers do not
        # all crowd into one hot index page.
        Index(
            "uq_transfers_pending_id",
            "pending_id",
            unique=True,
            postgresql_where=text("pending_id IS NOT NULL"),
        ),
        Index(
            "ix_transfers_open_pending_expiry",
            "expires_at",
            postgresql_where=text("kind = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    idempotency_key: Mapped[str] = mapped_column(unique=True)
    kind: Mapped[str]
    category: Mapped[str]
    debit_account_id: Mapped[uuid.UUID]
    credit_account_id: Mapped[uuid.UUID]
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    pending_id: Mapped[int | None] = mapped_column(ForeignKey("transfers.id"))
    expires_at: Mapped[datetime | None]
    forced: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    memo: Mapped[str | None]
    # The credit grant a grant or grant_expiry transfer funds or expires.
    grant_id: Mapped[uuid.UUID | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CreditGrant(Base):
    """Granted credit in a wallet: promotion, goodwill, a reseller's gift.

    Inserted unfunded; its transfer funds it, spends draw on it (lowest priority number
    first, then earliest expiry), and at expiry its unused remainder leaves once. Only the
    transfer trigger changes `remaining_minor`.
    """

    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint("amount_minor > 0 AND amount_minor <= 1000000000000000", name="amount"),
        CheckConstraint(
            "remaining_minor >= 0 AND expired_minor >= 0"
            " AND remaining_minor + expired_minor <= amount_minor",
            name="remaining_within_amount",
        ),
        CheckConstraint("priority BETWEEN 0 AND 100", name="priority_range"),
        CheckConstraint("length(reason) BETWEEN 1 AND 500", name="reason_length"),
        CheckConstraint("length(granted_by) BETWEEN 1 AND 255", name="granted_by_length"),
        CheckConstraint(
            "(expired_at IS NULL) OR (expires_at IS NOT NULL AND remaining_minor = 0)",
            name="expired_when_due",
        ),
        Index(
            "ix_credit_grants_wallet_open",
            "wallet_id",
            postgresql_where=text("remaining_minor > 0"),
        ),
        Index(
            "ix_credit_grants_expiring",
            "expires_at",
            postgresql_where=text("remaining_minor > 0 AND expires_at IS NOT NULL"),
        ),
        Index("ix_credit_grants_wallet_id", "wallet_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    remaining_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    expired_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    priority: Mapped[int] = mapped_column(Integer(), default=50, server_default="50")
    expires_at: Mapped[datetime | None]
    reason: Mapped[str]
    granted_by: Mapped[str]
    # The account the granted money came from: promotions, or a reseller's wallet.
    funded_by: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    funded_at: Mapped[datetime | None]
    expired_at: Mapped[datetime | None]


class CreditGrantUse(Base):
    """How much of one grant one spend drew on; written by the transfer trigger."""

    __tablename__ = "credit_grant_uses"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        Index("ix_credit_grant_uses_grant_id", "grant_id"),
    )

    transfer_id: Mapped[int] = mapped_column(primary_key=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    amount_minor: Mapped[int]
    at: Mapped[datetime] = mapped_column(server_default=text("statement_timestamp()"))


class WalletEntry(Base):
    """One wallet leg of a transfer with the wallet's balance after it; written by the
    transfer trigger in the statement that moves the money, so history reads a range."""

    __tablename__ = "wallet_entries"
    __table_args__ = (Index("ix_wallet_entries_wallet_id_at", "wallet_id", "at", "id"),)

    id: Mapped[int] = mapped_column(Identity(always=False), primary_key=True)
    wallet_id: Mapped[uuid.UUID]
    transfer_id: Mapped[int]
    at: Mapped[datetime] = mapped_column(server_default=text("clock_timestamp()"))
    balance_delta_minor: Mapped[int]
    held_delta_minor: Mapped[int]
    paid_delta_minor: Mapped[int]
    granted_delta_minor: Mapped[int]
    balance_after_minor: Mapped[int]
    held_after_minor: Mapped[int]
    paid_after_minor: Mapped[int]


class BalanceMonitor(Base):
    """A threshold on a wallet's available balance; announced once per crossing."""

    __tablename__ = "balance_monitors"
    __table_args__ = (
        CheckConstraint("direction IN ('below', 'above')", name="direction_known"),
        CheckConstraint(
            "threshold_minor BETWEEN -1000000000000000 AND 1000000000000000",
            name="threshold_range",
        ),
        UniqueConstraint("wallet_id", "direction", "threshold_minor"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    direction: Mapped[str]
    threshold_minor: Mapped[int]
    # Whether available was past the threshold when last looked at: the event goes out when
    # this turns true, and the monitor re-arms when it turns false again.
    crossed: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    crossings: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    changed_at: Mapped[datetime | None]


class AutoTopupRule(Base):
    """When available falls below `threshold_minor`, top up to a target or by an amount."""

    __tablename__ = "auto_topup_rules"
    __table_args__ = (
        CheckConstraint(
            "(target_minor IS NULL) <> (amount_minor IS NULL)", name="target_or_amount"
        ),
        CheckConstraint(
            "threshold_minor >= 0 AND threshold_minor <= 1000000000000000", name="threshold_range"
        ),
        CheckConstraint(
            "target_minor IS NULL OR (target_minor > threshold_minor"
            " AND target_minor <= 1000000000000000)",
            name="target_above_threshold",
        ),
        CheckConstraint(
            "amount_minor IS NULL OR (amount_minor > 0 AND amount_minor <= 1000000000000000)",
            name="amount",
        ),
        CheckConstraint("per_day_max BETWEEN 1 AND 24", name="per_day_range"),
        CheckConstraint("gateway ~ '^[a-z]{2,32}$'", name="gateway_name"),
        CheckConstraint(
            "(stripe_customer_id IS NULL) = (stripe_payment_method_id IS NULL)",
            name="stripe_pair",
        ),
    )

    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    threshold_minor: Mapped[int]
    target_minor: Mapped[int | None]
    amount_minor: Mapped[int | None]
    gateway: Mapped[str]
    per_day_max: Mapped[int] = mapped_column(Integer())
    stripe_customer_id: Mapped[str | None]
    stripe_payment_method_id: Mapped[str | None]
    # Armed while available is at or above the threshold: one top-up per crossing.
    armed: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class AuditEntry(Base):
    """Who did what, when: every manual correction and mutating API call."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor: Mapped[str]
    action: Mapped[str]
    subject: Mapped[str]
    request_id: Mapped[str | None]
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


class InboxStatus(enum.StrEnum):
    """Where a gateway event stands; the receiver writes `received` or `ignored`."""

    RECEIVED = "received"
    IGNORED = "ignored"
    APPLIED = "applied"
    PARKED = "parked"
    NEEDS_REVIEW = "needs_review"
    RESOLVED = "resolved"  # was needs_review; an operator's resolution says how


class InboxEvent(Base):
    """A verified gateway event, durable before the gateway hears 2xx; applied at most once."""

    __tablename__ = "inbox_events"
    __table_args__ = (
        UniqueConstraint("gateway", "event_id"),
        CheckConstraint(_in("status", InboxStatus), name="status_known"),
        CheckConstraint("length(event_id) BETWEEN 1 AND 255", name="event_id_length"),
        CheckConstraint("amount_minor IS NULL OR amount_minor > 0", name="amount_positive"),
        CheckConstraint("currency IS NULL OR currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        # The relay looks for events still waiting to be applied.
        Index(
            "ix_inbox_events_waiting",
            "received_at",
            postgresql_where=text("status IN ('received', 'parked')"),
        ),
        # Operators (and /metrics) count the events set aside for review.
        Index(
            "ix_inbox_events_needs_review",
            "received_at",
            postgresql_where=text("status = 'needs_review'"),
        ),
        # Workers claim waiting events in batches, oldest id first.
        Index(
            "ix_inbox_events_claimable",
            "id",
            postgresql_where=text("status IN ('received', 'parked')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    gateway: Mapped[str]
    event_id: Mapped[str]
    kind: Mapped[str]
    payment_id: Mapped[str | None]
    amount_minor: Mapped[int | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    reference: Mapped[str | None]
    payment_method: Mapped[str | None]
    occurred_at: Mapped[datetime | None]
    payload: Mapped[dict[str, Any]]
    payload_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]]
    # The gateway's own id of a refund: a refund told by a webhook and by a report is one.
    refund_id: Mapped[str | None]
    status: Mapped[str] = mapped_column(server_default=InboxStatus.RECEIVED.value)
    status_reason: Mapped[str | None]
    retry_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    relayed_at: Mapped[datetime | None]
    applied_at: Mapped[datetime | None]


class InboxConflict(Base):
    """A repeat of a known gateway event id with another payload: kept for review, never applied."""

    __tablename__ = "inbox_conflicts"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    inbox_event_id: Mapped[int] = mapped_column(ForeignKey("inbox_events.id"), index=True)
    payload: Mapped[dict[str, Any]]
    payload_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ReviewAction(enum.StrEnum):
    APPLY_TO_TOPUP = "apply_to_topup"
    CREDIT_WALLET = "credit_wallet"
    DISMISS = "dismiss"


class ReviewResolution(Base):
    """How an operator resolved one review item: at most one per inbox event or conflict."""

    __tablename__ = "review_resolutions"
    __table_args__ = (
        CheckConstraint(_in("action", ReviewAction), name="action_known"),
        CheckConstraint("(inbox_event_id IS NULL) <> (inbox_conflict_id IS NULL)", name="one_item"),
        CheckConstraint("length(note) BETWEEN 1 AND 2000", name="note_length"),
        UniqueConstraint("inbox_event_id"),
        UniqueConstraint("inbox_conflict_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    inbox_event_id: Mapped[int | None] = mapped_column(ForeignKey("inbox_events.id"))
    inbox_conflict_id: Mapped[int | None] = mapped_column(ForeignKey("inbox_conflicts.id"))
    action: Mapped[str]
    topup_id: Mapped[uuid.UUID | None]
    wallet_id: Mapped[uuid.UUID | None]
    transfer_id: Mapped[int | None] = mapped_column(ForeignKey("transfers.id"))
    actor: Mapped[str]
    note: Mapped[str]
    resolved_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ReconcileRun(Base):
    """One comparison of a gateway's report with the ledger, and what it repaired."""

    __tablename__ = "reconcile_runs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    gateway: Mapped[str]
    source_name: Mapped[str]
    source_sha256: Mapped[bytes] = mapped_column(LargeBinary)
    applied: Mapped[bool]
    actor: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    summary: Mapped[dict[str, Any]]
    result: Mapped[dict[str, Any]]


class TopupStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Topup(Base):
    """A top-up intent; its id travels through the gateway and the verified event settles it."""

    __tablename__ = "topups"
    __table_args__ = (
        CheckConstraint(_in("status", TopupStatus), name="status_known"),
        CheckConstraint("amount_minor > 0 AND amount_minor <= 1000000000000000", name="amount"),
        CheckConstraint("gateway ~ '^[a-z]{2,32}$'", name="gateway_name"),
        CheckConstraint(
            "(status = 'succeeded') = (credited_minor > 0)", name="credited_when_succeeded"
        ),
        # Refunds reported by the gateway never reverse more than was credited.
        CheckConstraint(
            "refunded_minor BETWEEN 0 AND credited_minor", name="refunds_within_credited"
        ),
        UniqueConstraint("gateway", "payment_id"),
        Index(
            "ix_topups_auto_rule_day",
            "wallet_id",
            "auto_rule_day",
            postgresql_where=text("auto_rule_day IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    gateway: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=TopupStatus.PENDING.value)
    payment_id: Mapped[str | None]
    credited_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    refunded_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    settled_at: Mapped[datetime | None]
    # The day (UTC) an auto top-up rule made this top-up, counted against its daily limit.
    auto_rule_day: Mapped[date | None] = mapped_column(Date())
    # An off-session charge walletpipe asked the gateway for: its id, when, why it failed.
    charge_id: Mapped[str | None]
    charge_attempted_at: Mapped[datetime | None]
    failure_reason: Mapped[str | None]


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    REJECTED = "rejected"


class Order(Base):
    """An order paid from a wallet once, refundable up to what was paid, never beyond."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in("status", OrderStatus), name="status_known"),
        CheckConstraint("amount_minor > 0 AND amount_minor <= 1000000000000000", name="amount"),
        CheckConstraint("length(reference) BETWEEN 1 AND 255", name="reference_length"),
        CheckConstraint("paid_minor IN (0, amount_minor)", name="paid_in_full_or_not"),
        # Racing refunds each lock the order row; this is the guard if anything else writes.
        CheckConstraint("refunded_minor BETWEEN 0 AND paid_minor", name="refunds_within_paid"),
        CheckConstraint(
            "CASE status"
            " WHEN 'pending' THEN paid_minor = 0"
            " WHEN 'rejected' THEN paid_minor = 0"
            " WHEN 'paid' THEN paid_minor > 0 AND refunded_minor = 0"
            " WHEN 'partially_refunded' THEN refunded_minor > 0 AND refunded_minor < paid_minor"
            " WHEN 'refunded' THEN paid_minor > 0 AND refunded_minor = paid_minor END",
            name="status_matches_amounts",
        ),
        UniqueConstraint("wallet_id", "reference"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    reference: Mapped[str]
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(server_default=OrderStatus.PENDING.value)
    paid_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    refunded_minor: Mapped[int] = mapped_column(default=0, server_default="0")
    reason: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class ProvisioningStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ACTIVE = "active"
    RELEASED = "released"


class ProvisioningRequest(Base):
    """A request to run a resource on a plan; decided once, with a hold, by the workers.

    Approved, it holds a reserve of the plan's first hours until the platform confirms
    (active: the hold pays the first hour, each later hour is billed once) or releases it.
    The plan's price is kept as it was when approved: a price change applies to new requests.
    """

    __tablename__ = "provisioning_requests"
    __table_args__ = (
        CheckConstraint(_in("status", ProvisioningStatus), name="status_known"),
        CheckConstraint("length(resource_id) BETWEEN 1 AND 255", name="resource_id_length"),
        CheckConstraint("plan ~ '^[a-z0-9_-]{1,64}$'", name="plan_name"),
        CheckConstraint(
            "status NOT IN ('approved', 'active') OR (hold_id IS NOT NULL"
            " AND monthly_price_minor > 0 AND reserve_minor > 0)",
            name="approved_with_hold",
        ),
        CheckConstraint(
            "status <> 'active' OR (activated_at IS NOT NULL AND next_bill_at IS NOT NULL)",
            name="active_since",
        ),
        CheckConstraint("billed_hours >= 0", name="billed_hours_nonnegative"),
        CheckConstraint(
            "shortfall_minor IS NULL OR shortfall_minor > 0", name="shortfall_positive"
        ),
        # One live request per resource of a wallet: never held or billed twice at once.
        # Per wallet, so that no tenant can squat on another's resource ids.
        Index(
            "uq_provisioning_requests_live_resource_id",
            "wallet_id",
            "resource_id",
            unique=True,
            postgresql_where=text("status IN ('pending', 'approved', 'active')"),
        ),
        # The billing tick finds the active resources whose next hour has ended...
        Index(
            "ix_provisioning_requests_next_bill_at",
            "next_bill_at",
            postgresql_where=text("status = 'active'"),
        ),
        # ... and the debt review the ones in a grace period.
        Index(
            "ix_provisioning_requests_in_grace",
            "wallet_id",
            postgresql_where=text("grace_started_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()")
    )
    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    resource_id: Mapped[str]
    plan: Mapped[str]
    status: Mapped[str] = mapped_column(server_default=ProvisioningStatus.PENDING.value)
    reason: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    decided_at: Mapped[datetime | None]
    monthly_price_minor: Mapped[int | None]
    reserve_minor: Mapped[int | None]
    shortfall_minor: Mapped[int | None]
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("transfers.id"))
    activated_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    billed_hours: Mapped[int] = mapped_column(default=0, server_default="0")
    # When the hour after the billed ones ends: activated_at + (billed_hours + 1) hours.
    next_bill_at: Mapped[datetime | None]
    grace_started_at: Mapped[datetime | None]
    suspend_requested_at: Mapped[datetime | None]
    relayed_at: Mapped[datetime | None]


class Plan(Base):
    """A size of resource and its price: a month of HOURS_PER_MONTH hours, in minor units."""

    __tablename__ = "plans"
    __table_args__ = (
        CheckConstraint("id ~ '^[a-z0-9_-]{1,64}$'", name="id_format"),
        CheckConstraint("length(name) BETWEEN 1 AND 255", name="name_length"),
        CheckConstraint("vcpus > 0 AND memory_gb > 0", name="size_positive"),
        CheckConstraint(
            "monthly_price_minor > 0 AND monthly_price_minor <= 1000000000000",
            name="price_positive",
        ),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    vcpus: Mapped[int]
    memory_gb: Mapped[int]
    monthly_price_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class OwnerParent(Base):
    """A customer owner and the reseller above it: resellers see and fund their trees."""

    __tablename__ = "owner_parents"
    __table_args__ = (
        CheckConstraint("owner_id <> parent_id", name="not_own_parent"),
        CheckConstraint(
            "length(owner_id) BETWEEN 1 AND 255 AND length(parent_id) BETWEEN 1 AND 255",
            name="ids_length",
        ),
    )

    owner_id: Mapped[str] = mapped_column(primary_key=True)
    parent_id: Mapped[str] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class LowBalanceAlert(Base):
    """A low-balance threshold a wallet has crossed; deleted when it is above it again, so an
    alert goes out once per crossing."""

    __tablename__ = "low_balance_alerts"
    __table_args__ = (CheckConstraint("threshold_h > 0", name="threshold_positive"),)

    wallet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    threshold_h: Mapped[int] = mapped_column(primary_key=True)
    crossed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class UsageRecord(Base):
    """A metered charge a service reports, keyed by the id it chose within a wallet; billed once."""

    __tablename__ = "usage_records"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'billed')", name="status_known"),
        CheckConstraint("amount_minor > 0 AND amount_minor <= 1000000000000000", name="amount"),
        CheckConstraint("length(id) BETWEEN 1 AND 255", name="id_length"),
        CheckConstraint("length(resource_id) BETWEEN 1 AND 255", name="resource_id_length"),
        # The relay looks for records still to bill.
        Index(
            "ix_usage_records_pending",
            "created_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    wallet_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id"), primary_key=True, index=True
    )
    id: Mapped[str] = mapped_column(primary_key=True)
    resource_id: Mapped[str]
    description: Mapped[str]
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    occurred_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(server_default="pending")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    billed_at: Mapped[datetime | None]
    relayed_at: Mapped[datetime | None]


class ApiIdempotencyKey(Base):
    """A POST's Idempotency-Key, its request's fingerprint and the response it got."""

    __tablename__ = "api_idempotency_keys"
    __table_args__ = (
        CheckConstraint("length(key) BETWEEN 1 AND 255", name="key_length"),
        Index("ix_api_idempotency_keys_created_at", "created_at"),
    )

    subject: Mapped[str] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    status_code: Mapped[int]
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class OutboxEvent(Base):
    """A fact for the world outside, written in the transaction that made it true.

    The workers deliver it to every configured channel after commit; the scheduler re-sends
    what a crash or a broker outage left undelivered. One event per `key`.
    """

    __tablename__ = "outbox_events"
    __table_args__ = (
        CheckConstraint(r"event_type ~ '^[a-z_]+(\.[a-z_]+)+$'", name="event_type_format"),
        CheckConstraint("length(key) BETWEEN 1 AND 255", name="key_length"),
        CheckConstraint("attempts >= 0", name="attempts_nonnegative"),
        CheckConstraint("delivered_at IS NULL OR failed_at IS NULL", name="delivered_or_failed"),
        # The relay looks for events still to deliver...
        Index(
            "ix_outbox_events_undelivered",
            "created_at",
            postgresql_where=text("delivered_at IS NULL AND failed_at IS NULL"),
        ),
        # ... and operators for the ones given up on.
        Index(
            "ix_outbox_events_failed",
            "failed_at",
            postgresql_where=text("failed_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    event_type: Mapped[str]
    key: Mapped[str] = mapped_column(unique=True)
    wallet_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    relayed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]


class OutboxDelivery(Base):
    """One channel's successful delivery of an outbox event: never repeated on a retry."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (CheckConstraint("length(channel) BETWEEN 1 AND 255", name="channel_length"),)

    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"), primary_key=True)
    channel: Mapped[str] = mapped_column(primary_key=True)
    delivered_at: Mapped[datetime] = mapped_column(server_default=func.now())


class OwnerContact(Base):
    """Where an owner hears of its wallets' events: a WhatsApp number in E.164 form."""

    __tablename__ = "owner_contacts"
    __table_args__ = (
        CheckConstraint("length(owner_id) BETWEEN 1 AND 255", name="owner_id_length"),
        CheckConstraint(r"whatsapp_to ~ '^\+[1-9][0-9]{6,14}$'", name="whatsapp_e164"),
    )

    owner_id: Mapped[str] = mapped_column(primary_key=True)
    whatsapp_to: Mapped[str]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


class DeadLetter(Base):
    """A job the workers gave up on: kept with its error until an operator replays it."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        CheckConstraint("length(message_id) BETWEEN 1 AND 255", name="message_id_length"),
        Index("ix_dead_letters_waiting", "failed_at", postgresql_where=text("replayed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(unique=True)
    queue_name: Mapped[str]
    actor_name: Mapped[str]
    args: Mapped[list[Any]] = mapped_column(JSONB())
    kwargs: Mapped[dict[str, Any]]
    error: Mapped[str]
    failed_at: Mapped[datetime] = mapped_column(server_default=func.now())
    replayed_at: Mapped[datetime | None]
    replay_message_id: Mapped[str | None]
