"""Auto top-up: when a wallet's available balance falls below a threshold, top it up to a
target (or by a fixed amount), at most `per_day_max` times a UTC day.

The transfer trigger (`ledger_watch_wallet`, migration 0012) fires the rule in the statement
that takes available below the threshold: it creates the top-up intent and writes
`topup.requested`, once per crossing (the rule re-arms when available is back at or above the
threshold), and counts the day's automatic top-ups under the wallet's lock. Where the rule
names a saved Stripe customer and payment method, the scheduler asks Stripe for an
off-session payment once per top-up (`claim_charges`, then `record_charge` or
`record_failure`); the gateway's webhook then credits the wallet as any top-up. A failed
charge marks the top-up failed and announces `topup.failed`; nothing retries it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger import outbox
from ledger.account import current_balance, get_wallet
from ledger.errors import NotFound
from ledger.models import AutoTopupRule, Topup, TopupStatus
from ledger.money import AMOUNT_MINOR_MAX, validate_amount_minor

_GATEWAY = re.compile(r"[a-z]{2,32}")
_CUSTOMER = re.compile(r"cus_[A-Za-z0-9_]{1,250}")
_PAYMENT_METHOD = re.compile(r"(pm|card|src)_[A-Za-z0-9_]{1,250}")
PER_DAY_MAX_LIMIT = 24
REASON_CHARS_MAX = 500
CHARGE_BATCH_MAX = 10
_STRIPE_ID_CHARS_MAX = 255

# Automatic Stripe top-ups not yet charged, claimed once: the claim commits before the
# request to Stripe, so a crash or a failure never leads to a second charge.
_CLAIM = text(
    """
    UPDATE topups t SET charge_attempted_at = :now
    FROM auto_topup_rules r
    WHERE r.wallet_id = t.wallet_id AND t.id IN (
        SELECT c.id FROM topups c JOIN auto_topup_rules cr ON cr.wallet_id = c.wallet_id
        WHERE c.auto_rule_day IS NOT NULL AND c.status = 'pending'
          AND c.charge_attempted_at IS NULL AND c.gateway = 'stripe'
          AND cr.stripe_customer_id IS NOT NULL
        ORDER BY c.created_at
        LIMIT :limit
        FOR UPDATE OF c SKIP LOCKED
    )
    RETURNING t.id, t.wallet_id, t.amount_minor, t.currency, r.stripe_customer_id,
              r.stripe_payment_method_id
    """
)


@dataclass(frozen=True, slots=True)
class Rule:
    """What a caller asks for: exactly one of `target_minor` and `amount_minor`."""

    threshold_minor: int
    per_day_max: int
    target_minor: int | None = None
    amount_minor: int | None = None
    gateway: str = "stripe"
    stripe_customer_id: str | None = None
    stripe_payment_method_id: str | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """An off-session payment to ask the gateway for, carrying the top-up id."""

    topup_id: uuid.UUID
    wallet_id: uuid.UUID
    amount_minor: int
    currency: str
    customer_id: str
    payment_method_id: str


def set_rule(session: Session, wallet_id: uuid.UUID, rule: Rule) -> AutoTopupRule:
    """Create or replace the wallet's rule; raises ValueError saying what is wrong.

    The rule starts armed when available is at or above the threshold now; a wallet already
    below it tops up at its next crossing, not at once.
    """
    _check(rule)
    wallet = get_wallet(session, wallet_id)
    session.refresh(wallet, with_for_update=True)  # no transfer moves available meanwhile
    available = current_balance(session, wallet.id).available_minor
    values = {
        "threshold_minor": rule.threshold_minor,
        "target_minor": rule.target_minor,
        "amount_minor": rule.amount_minor,
        "gateway": rule.gateway,
        "per_day_max": rule.per_day_max,
        "stripe_customer_id": rule.stripe_customer_id,
        "stripe_payment_method_id": rule.stripe_payment_method_id,
        "armed": available >= rule.threshold_minor,
    }
    session.execute(
        insert(AutoTopupRule)
        .values(wallet_id=wallet.id, **values)
        .on_conflict_do_update(
            index_elements=[AutoTopupRule.wallet_id], set_={**values, "updated_at": text("now()")}
        )
    )
    return get_rule(session, wallet.id)


def get_rule(session: Session, wallet_id: uuid.UUID) -> AutoTopupRule:
    """The wallet's rule; raises NotFound."""
    found = session.get(AutoTopupRule, wallet_id, populate_existing=True)
    if found is None:
        raise NotFound(f"wallet {wallet_id} has no auto top-up rule")
    return found


def remove_rule(session: Session, wallet_id: uuid.UUID) -> None:
    """Stop topping up the wallet automatically; raises NotFound when it has no rule."""
    removed = session.execute(
        delete(AutoTopupRule)
        .where(AutoTopupRule.wallet_id == wallet_id)
        .returning(AutoTopupRule.wallet_id)
    ).first()
    if removed is None:
        raise NotFound(f"wallet {wallet_id} has no auto top-up rule")


def claim_charges(
    session: Session, *, now: datetime, limit: int = CHARGE_BATCH_MAX
) -> list[Charge]:
    """Claim up to `limit` automatic top-ups to charge off-session; commit before charging."""
    return [
        Charge(row[0], row[1], row[2], row[3], row[4], row[5])
        for row in session.execute(_CLAIM, {"now": now, "limit": limit})
    ]


def record_charge(session: Session, topup_id: uuid.UUID, charge_id: str) -> None:
    """The gateway accepted the payment: keep its id; its webhook settles the top-up."""
    topup = session.get(Topup, topup_id, with_for_update=True)
    if topup is None:
        raise NotFound(f"no top-up with id {topup_id}")
    topup.charge_id = charge_id[:_STRIPE_ID_CHARS_MAX]


def record_failure(
    session: Session, topup_id: uuid.UUID, reason: str, *, now: datetime, charge_id: str | None
) -> bool:
    """The gateway refused the payment: the top-up fails, `topup.failed` goes out, once.

    False when the top-up had been settled otherwise meanwhile (its webhook came first).
    """
    topup = session.get(Topup, topup_id, with_for_update=True, populate_existing=True)
    if topup is None:
        raise NotFound(f"no top-up with id {topup_id}")
    if topup.status != TopupStatus.PENDING:
        return False
    topup.status = TopupStatus.FAILED
    topup.settled_at = now
    topup.failure_reason = reason[:REASON_CHARS_MAX]
    if charge_id:
        topup.charge_id = charge_id[:_STRIPE_ID_CHARS_MAX]
    outbox.emit_for_wallet(
        session,
        "topup.failed",
        key=f"topup.failed:{topup.id}",
        wallet_id=topup.wallet_id,
        data={
            "topup_id": str(topup.id),
            "amount_minor": topup.amount_minor,
            "gateway": topup.gateway,
            "automatic": True,
            "reason": topup.failure_reason,
        },
    )
    return True


def rule_view(rule: AutoTopupRule) -> dict[str, object]:
    return {
        "wallet_id": str(rule.wallet_id),
        "threshold_minor": rule.threshold_minor,
        "target_minor": rule.target_minor,
        "amount_minor": rule.amount_minor,
        "gateway": rule.gateway,
        "per_day_max": rule.per_day_max,
        "stripe_customer_id": rule.stripe_customer_id,
        "stripe_payment_method_id": rule.stripe_payment_method_id,
        "armed": rule.armed,
    }


def _check(rule: Rule) -> None:
    if (rule.target_minor is None) == (rule.amount_minor is None):
        raise ValueError("give exactly one of target_minor and amount_minor")
    if not 0 <= rule.threshold_minor <= AMOUNT_MINOR_MAX:
        raise ValueError(f"threshold_minor must be from 0 to {AMOUNT_MINOR_MAX}")
    if rule.target_minor is not None:
        validate_amount_minor(rule.target_minor)
        if rule.target_minor <= rule.threshold_minor:
            raise ValueError("target_minor must be above threshold_minor")
    if rule.amount_minor is not None:
        validate_amount_minor(rule.amount_minor)
    if not 1 <= rule.per_day_max <= PER_DAY_MAX_LIMIT:
        raise ValueError(f"per_day_max must be from 1 to {PER_DAY_MAX_LIMIT}")
    if (rule.stripe_customer_id is None) != (rule.stripe_payment_method_id is None):
        raise ValueError("give both stripe_customer_id and stripe_payment_method_id, or neither")
    if rule.stripe_customer_id is not None and rule.gateway != "stripe":
        raise ValueError("a saved Stripe customer needs gateway stripe")
    if not _GATEWAY.fullmatch(rule.gateway):
        raise ValueError("gateway must be a gateway's name, like stripe")
    for name, value, pattern, example in (
        ("stripe_customer_id", rule.stripe_customer_id, _CUSTOMER, "cus_..."),
        ("stripe_payment_method_id", rule.stripe_payment_method_id, _PAYMENT_METHOD, "pm_..."),
    ):
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{name} is not a Stripe id like {example}")
