"""`walletctl plan set|list`: the catalogue of resource sizes and their monthly prices."""

from __future__ import annotations

import re

import click

from ledger.models import Plan
from ledger.money import AMOUNT_MINOR_MAX, Money
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
        f"  {plan.monthly_price_minor:>9} minor units of {plan.currency} a month"
        f" ({month} {plan.currency}; {HOURS_PER_MONTH} h; first hour {first_hour} minor units)"
        f"{'' if plan.active else '  retired'}"
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
    "--monthly-price-minor",
    type=click.IntRange(1, AMOUNT_MINOR_MAX),
    help=f"Price of a month of {HOURS_PER_MONTH} hours in minor units, e.g. 15000 for 150.00.",
)
# The old spelling took major units; it is refused with the new one's name rather than
# silently read a hundred times too low or too high.
@click.option("--monthly-price", "major_price", hidden=True)
@click.option("--currency", required=True, help="ISO 4217 code, for example ZAR.")
@click.option("--retired", is_flag=True, help="New requests for it are rejected.")
@pass_context
def set_(
    ctx: Context,
    plan_id: str,
    name: str,
    vcpus: int,
    memory_gb: int,
    monthly_price_minor: int | None,
    major_price: str | None,
    currency: str,
    retired: bool,
) -> None:
    """Create or change a plan; running resources keep the price they were approved at."""
    if major_price is not None:
        raise click.UsageError(
            "--monthly-price (major units) is now --monthly-price-minor, in minor units like "
            "every amount walletctl takes: 150.00 ZAR is --monthly-price-minor 15000."
        )
    if monthly_price_minor is None:
        raise click.UsageError("give --monthly-price-minor N (minor units, 15000 for 150.00).")
    if not re.fullmatch(_PLAN_ID, plan_id):
        raise CommandFailed("a plan id is 1 to 64 of a-z, 0-9, _ and -, like small.")
    try:
        price = Money(monthly_price_minor, currency.upper())
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
            f"{exc}; give a name of 1 to 255 characters and an ISO 4217 currency like ZAR."
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
