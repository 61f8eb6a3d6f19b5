"""Off-session Stripe payments for automatic top-ups, as Stripe documents charging a saved card.

`POST {STRIPE_API_BASE}/v1/payment_intents` (form-encoded, the secret key as Bearer token)
with `amount`, `currency`, `customer`, `payment_method`, `off_session=true`, `confirm=true`
and `metadata[topup_id]`, the reference the Stripe webhook adapter reads, and the top-up id
as `Idempotency-Key`, so Stripe answers a repeated request with the first PaymentIntent. A
2xx answer is a PaymentIntent: its id is kept and the `payment_intent.succeeded` webhook
credits the wallet. An error answer (402 `card_error`: declined, or `authentication_required`
because the customer is away) fails the top-up and announces `topup.failed`. Each top-up is
claimed once before the request, so no failure is retried in a loop.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ledger import autotopup, outbox

logger = logging.getLogger(__name__)

STRIPE_API_BASE_DEFAULT = "https://api.stripe.com"
_ANSWER_BYTES_MAX = 65_536


@dataclass(frozen=True)
class StripeSettings:
    """Where and as whom walletpipe asks Stripe for payments; no key, no automatic charges."""

    api_base: str = STRIPE_API_BASE_DEFAULT
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> StripeSettings:
        """STRIPE_API_BASE (default Stripe's) and STRIPE_API_KEY (sk_...; no default)."""
        base = environ.get("STRIPE_API_BASE") or STRIPE_API_BASE_DEFAULT
        parsed = urllib.parse.urlsplit(base)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"STRIPE_API_BASE must be an http(s) URL, not {base[:60]!r}")
        return cls(api_base=base.rstrip("/"), api_key=environ.get("STRIPE_API_KEY") or None)


@dataclass(frozen=True, slots=True)
class Answer:
    """What Stripe said: a PaymentIntent id, or why it refused (and the intent, if any)."""

    payment_intent_id: str | None
    failure: str | None


def create_payment_intent(settings: StripeSettings, charge: autotopup.Charge) -> Answer:
    """Ask Stripe for an off-session PaymentIntent for `charge`; never raises for an answer.

    Network trouble is a failure too: the top-up is not retried, a person or the customer
    starts another.
    """
    assert settings.api_key is not None
    form = urllib.parse.urlencode(
        {
            "amount": str(charge.amount_minor),
            "currency": charge.currency.lower(),
            "customer": charge.customer_id,
            "payment_method": charge.payment_method_id,
            "off_session": "true",
            "confirm": "true",
            "metadata[topup_id]": str(charge.topup_id),
            "metadata[wallet_id]": str(charge.wallet_id),
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (the base URL is an http(s) setting)
        f"{settings.api_base}/v1/payment_intents",
        data=form,
        method="POST",
        headers={
            "Authorization": f"Bearer {settings.api_key}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Idempotency-Key": f"walletpipe-topup-{charge.topup_id}",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as answer:  # noqa: S310
            body = _json(answer.read(_ANSWER_BYTES_MAX))
    except urllib.error.HTTPError as exc:
        body = _json(exc.read(_ANSWER_BYTES_MAX))
        found = body.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        intent = error.get("payment_intent")
        intent_id = intent.get("id") if isinstance(intent, dict) else None
        code = error.get("decline_code") or error.get("code") or error.get("type")
        message = error.get("message") or f"HTTP {exc.code}"
        return Answer(
            intent_id if isinstance(intent_id, str) else None,
            f"stripe refused the charge ({code or exc.code}): {message}",
        )
    except (OSError, ValueError) as exc:  # refused, timed out, unreachable
        return Answer(None, f"could not reach stripe: {exc}")
    intent_id = body.get("id")
    if not isinstance(intent_id, str):
        return Answer(None, "stripe answered without a PaymentIntent id")
    status = body.get("status")
    if status in ("requires_payment_method", "canceled"):
        return Answer(intent_id, f"stripe could not charge the saved card (status {status})")
    return Answer(intent_id, None)


def charge_auto_topups(
    sessions: sessionmaker[Session], settings: StripeSettings, *, now: datetime
) -> tuple[int, list[int]]:
    """Charge the claimed automatic top-ups; (charges asked for, outbox events to send)."""
    if settings.api_key is None:
        return 0, []
    with sessions.begin() as session:
        charges = autotopup.claim_charges(session, now=now)
    notices: list[int] = []
    for charge in charges:
        answer = create_payment_intent(settings, charge)
        with sessions.begin() as session:
            if answer.failure is None:
                assert answer.payment_intent_id is not None
                autotopup.record_charge(session, charge.topup_id, answer.payment_intent_id)
            else:
                logger.warning(
                    "Automatic top-up %s was not charged: %s.", charge.topup_id, answer.failure
                )
                autotopup.record_failure(
                    session,
                    charge.topup_id,
                    answer.failure,
                    now=now,
                    charge_id=answer.payment_intent_id,
                )
            notices += outbox.emitted(session)
    return len(charges), notices


def _json(raw: bytes) -> dict[str, Any]:
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
