"""`walletctl monitor add|list|remove` and `walletctl autotopup set|show|remove`."""

from __future__ import annotations

import uuid

import click

from ledger import autotopup as rules
from ledger import monitor as monitors
from ledger.account import get_wallet
from ledger.money import AMOUNT_MINOR_MAX
from walletctl.context import Context, pass_context

_MINOR = click.IntRange(-AMOUNT_MINOR_MAX, AMOUNT_MINOR_MAX)
_AMOUNT = click.IntRange(1, AMOUNT_MINOR_MAX)


@click.group()
def monitor() -> None:
    """Balance monitors: wallet.balance_crossed once per crossing of a threshold."""


@monitor.command("add")
@click.argument("wallet_id", type=click.UUID)
@click.option("--below", type=_MINOR, help="Announce when available falls below this.")
@click.option("--above", type=_MINOR, help="Announce when available rises above this.")
@pass_context
def add(ctx: Context, wallet_id: uuid.UUID, below: int | None, above: int | None) -> None:
    """Watch a wallet's available balance against a threshold (minor units)."""
    if (below is None) == (above is None):
        raise click.UsageError("give exactly one of --below N or --above N (minor units).")
    direction, threshold = (
        (monitors.Direction.BELOW, below)
        if below is not None
        else (monitors.Direction.ABOVE, above)
    )
    assert threshold is not None
    with ctx.transaction() as session:
        added = monitors.add_monitor(session, wallet_id, direction, threshold)
        session.flush()
        data = monitors.monitor_view(added)
    state = "past it now" if data["crossed"] else "armed"
    ctx.emit(data, f"monitor {data['id']}: {direction} {threshold} on wallet {wallet_id} ({state})")


@monitor.command("list")
@click.argument("wallet_id", type=click.UUID)
@pass_context
def list_(ctx: Context, wallet_id: uuid.UUID) -> None:
    """The wallet's monitors and how often each was crossed."""
    with ctx.transaction() as session:
        get_wallet(session, wallet_id)
        found = [monitors.monitor_view(row) for row in monitors.list_monitors(session, wallet_id)]
    lines = [
        f"{row['id']}  {row['direction']:<5} {row['threshold_minor']:>14}"
        f"  {'crossed' if row['crossed'] else 'armed':<7}  {row['crossings']} crossings"
        for row in found
    ]
    ctx.emit({"items": found}, "\n".join(lines) or f"wallet {wallet_id} has no monitors")


@monitor.command("remove")
@click.argument("wallet_id", type=click.UUID)
@click.argument("monitor_id", type=click.UUID)
@pass_context
def remove(ctx: Context, wallet_id: uuid.UUID, monitor_id: uuid.UUID) -> None:
    """Stop a monitor."""
    with ctx.transaction() as session:
        monitors.remove_monitor(session, wallet_id, monitor_id)
    ctx.emit({"id": str(monitor_id), "removed": True}, f"monitor {monitor_id} removed")


@click.group()
def autotopup() -> None:
    """Auto top-up: below a threshold, top up to a target or by an amount, N times a day."""


@autotopup.command("set")
@click.argument("wallet_id", type=click.UUID)
@click.option("--below", "threshold", type=click.IntRange(0, AMOUNT_MINOR_MAX), required=True)
@click.option("--to", "target", type=_AMOUNT, help="Top up to this available balance.")
@click.option("--by", "amount", type=_AMOUNT, help="Top up by this fixed amount.")
@click.option(
    "--per-day",
    type=click.IntRange(1, rules.PER_DAY_MAX_LIMIT),
    default=1,
    show_default=True,
    help="Automatic top-ups a UTC day at most.",
)
@click.option("--gateway", default="stripe", show_default=True)
@click.option("--stripe-customer", help="A saved Stripe customer (cus_...) to charge off-session.")
@click.option("--stripe-payment-method", help="Its saved payment method (pm_...).")
@pass_context
def set_(
    ctx: Context,
    wallet_id: uuid.UUID,
    threshold: int,
    target: int | None,
    amount: int | None,
    per_day: int,
    gateway: str,
    stripe_customer: str | None,
    stripe_payment_method: str | None,
) -> None:
    """Create or replace the wallet's auto top-up rule (amounts in minor units)."""
    try:
        rule = rules.Rule(
            threshold_minor=threshold,
            per_day_max=per_day,
            target_minor=target,
            amount_minor=amount,
            gateway=gateway,
            stripe_customer_id=stripe_customer,
            stripe_payment_method_id=stripe_payment_method,
        )
        with ctx.transaction() as session:
            data = rules.rule_view(rules.set_rule(session, wallet_id, rule))
    except ValueError as exc:
        raise click.UsageError(f"{exc}.") from exc
    how = f"to {target}" if target is not None else f"by {amount}"
    ctx.emit(
        data,
        f"wallet {wallet_id}: below {threshold}, top up {how} via {gateway},"
        f" at most {per_day} a day{' (charged off-session)' if stripe_customer else ''}",
    )


@autotopup.command("show")
@click.argument("wallet_id", type=click.UUID)
@pass_context
def show(ctx: Context, wallet_id: uuid.UUID) -> None:
    """The wallet's auto top-up rule."""
    with ctx.transaction() as session:
        data = rules.rule_view(rules.get_rule(session, wallet_id))
    ctx.emit(data, "\n".join(f"{key}: {value}" for key, value in data.items()))


@autotopup.command("remove")
@click.argument("wallet_id", type=click.UUID)
@pass_context
def remove_rule(ctx: Context, wallet_id: uuid.UUID) -> None:
    """Stop topping the wallet up automatically."""
    with ctx.transaction() as session:
        rules.remove_rule(session, wallet_id)
    ctx.emit({"wallet_id": str(wallet_id), "removed": True}, "auto top-up removed")
