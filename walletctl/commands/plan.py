"""`walletctl plan set|list`: the catalogue of resource sizes and their monthly prices."""

from __future__ import annotations

import re

import click

from ledger.models import Plan
from ledger.money import Money
from ledger.plan import (
    HOURS_PER_MONTH,
    PlanSpec,
    describe,
    list_plans,
    price_of_hours,
    set_plan,
)
from walletctl.context import CommandFailed, Context, pass_context

_PLAN_ID = r"^[a-z0-9_-]{1,64}$"


def _line(plan: Plan) -> str:
    month = Money(plan.monthly_price_minor, plan.currency).format_major()
    first_hour = price_of_hours(plan.monthly_price_minor, 1, 1)
    return (
        f"{plan.id:<12} {plan.name:<12} {plan.vcpus:>3} vCPU {plan.memory_gb:>4} GB"
        f"  {plan.currency} {month:>10} a month ({HOURS_PER_MONTH} h; first hour {first_hour}"
        f" minor){'' if plan.active else '  retired'}"
    )


@click.group()
def plan() -> None:
    """Plans: sizes of resource and their prices."""


@plan.command("set")
@click.argument("plan_id")
@click.option("--name", required=True)
@click.option("--vcpus", type=click.IntRange(min=1), required=True)
@click.option("--memory-gb", type=click.IntRange(min=1), required=True)
@click.option(
    "--monthly-price",
    required=True,
    help=f"Major units for a month of {HOURS_PER_MONTH} hours, e.g. 150.00.",
)
@click.option("--currency", required=True, help="ISO 4217 code, for example ZAR.")
@click.option("--retired", is_flag=True, help="New requests for it are rejected.")
@pass_context
def set_(
    ctx: Context,
    plan_id: str,
    name: str,
    vcpus: int,
    memory_gb: int,
    monthly_price: str,
    currency: str,
    retired: bool,
) -> None:
    """Create or change a plan; running resources keep the price they were approved at."""
    if not re.fullmatch(_PLAN_ID, plan_id):
        raise CommandFailed("a plan id is 1 to 64 of a-z, 0-9, _ and -, like 'small'.")
    try:
        price = Money.parse(monthly_price, currency.upper())
        with ctx.transaction() as session:
            row = set_plan(
                session,
                PlanSpec(
                    plan_id=plan_id,
                    name=name,
                    vcpus=vcpus,
                    memory_gb=memory_gb,
                    monthly_price_minor=price.amount_minor,
                    currency=price.currency,
                    active=not retired,
                ),
            )
            data, text = describe(row), _line(row)
    except ValueError as exc:
        raise CommandFailed(
            f"{exc}; give a name of 1 to 255 characters and the price in major units, like 150.00."
        ) from exc
    ctx.emit(data, text)


@plan.command("list")
@pass_context
def list_(ctx: Context) -> None:
    """List the plans, cheapest first."""
    with ctx.transaction() as session:
        plans = list_plans(session)
        data = {"plans": [describe(row) for row in plans]}
        text = "\n".join(_line(row) for row in plans) or "no plans: `walletctl plan set` adds one"
    ctx.emit(data, text)
