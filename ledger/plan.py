"""Plans and their prices, exact to the minor unit however a month divides into hours.

A plan costs `monthly_price_minor` for a month of HOURS_PER_MONTH hours (365 * 24 / 12 = 730).
A month rarely divides into whole minor units per hour (R150 over 730 hours is 20.547... cents),
so an hour is never priced alone: hour n of a resource's life costs what the first n hours
cost together, floor(n * price / 730), less what the first n - 1 cost. Hours then cost 20 or
21 cents, no fraction is lost or invented, and every 730 hours cost exactly the monthly price.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from ledger.errors import NotFound
from ledger.models import Plan
from ledger.money import AMOUNT_MINOR_MAX, validate_currency

HOURS_PER_MONTH = 730


def price_of_hours(monthly_price_minor: int, first: int, last: int) -> int:
    """What hours `first` to `last` (1-based, inclusive) of a resource's life cost together."""
    assert 1 <= first <= last + 1, "hours are counted from 1"
    return (last * monthly_price_minor) // HOURS_PER_MONTH - (
        (first - 1) * monthly_price_minor
    ) // HOURS_PER_MONTH


def price_of_hour(monthly_price_minor: int, hour: int) -> int:
    """What hour `hour` (1-based) of a resource's life costs; 0 for a plan this cheap."""
    return price_of_hours(monthly_price_minor, hour, hour)


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """What `walletctl plan set` asks for."""

    plan_id: str
    name: str
    vcpus: int
    memory_gb: int
    monthly_price_minor: int
    currency: str
    active: bool = True


def set_plan(session: Session, spec: PlanSpec) -> Plan:
    """Create or change a plan; running resources keep the price they were approved at.

    Raises ValueError for a name, size or price the catalogue cannot hold.
    """
    validate_currency(spec.currency)
    if not 0 < spec.monthly_price_minor <= AMOUNT_MINOR_MAX // 1000:
        raise ValueError("a monthly price must be a positive amount in minor units")
    if not 1 <= len(spec.name) <= 255:
        raise ValueError("a plan's name must be 1 to 255 characters")
    if spec.vcpus <= 0 or spec.memory_gb <= 0:
        raise ValueError("a plan needs at least one vCPU and one GB of memory")
    values = {
        "id": spec.plan_id,
        "name": spec.name,
        "vcpus": spec.vcpus,
        "memory_gb": spec.memory_gb,
        "monthly_price_minor": spec.monthly_price_minor,
        "currency": spec.currency,
        "active": spec.active,
    }
    session.execute(
        insert(Plan)
        .values(**values)
        .on_conflict_do_update(
            index_elements=["id"], set_={k: v for k, v in values.items() if k != "id"}
        )
    )
    plan = session.get(Plan, spec.plan_id, populate_existing=True)
    assert plan is not None
    return plan


def describe(plan: Plan) -> dict[str, Any]:
    """A plan as JSON."""
    return {
        "id": plan.id,
        "name": plan.name,
        "vcpus": plan.vcpus,
        "memory_gb": plan.memory_gb,
        "monthly_price_minor": plan.monthly_price_minor,
        "currency": plan.currency,
        "active": plan.active,
    }


def get_plan(session: Session, plan_id: str) -> Plan:
    """The plan; raises NotFound."""
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound(f'no plan named "{plan_id}"')
    return plan


def list_plans(session: Session) -> list[Plan]:
    """Every plan, cheapest first."""
    return list(session.scalars(select(Plan).order_by(Plan.monthly_price_minor, Plan.id)))
