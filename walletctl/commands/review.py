"""`walletctl review list|show|resolve`: events set aside for a person, and their resolution."""

from __future__ import annotations

import getpass
import json
import os
import uuid

import click

from ledger import outbox, review
from ledger.local_names import default_broker_url
from ledger.models import ReviewAction
from ledger.review_reason import ReviewCode
from walletctl.context import Context, pass_context
from workers.jobs import DELIVER_NOTIFICATIONS, JobSender


@click.group("review")
def review_() -> None:
    """The review queue: parked gateway events and payload conflicts."""


@review_.command("list")
@click.option("--gateway", help="Only this gateway's items.")
@click.option(
    "--reason",
    type=click.Choice([code.value for code in ReviewCode]),
    help="Only items with this reason code.",
)
@click.option("--limit", type=click.IntRange(1, review.LIST_LIMIT_MAX), default=100)
@pass_context
def list_(ctx: Context, gateway: str | None, reason: str | None, limit: int) -> None:
    """Open review items, oldest first, each with its reason in words."""
    with ctx.transaction() as session:
        items = review.list_items(
            session,
            gateway=gateway,
            code=None if reason is None else ReviewCode(reason),
            limit=limit,
        )
    lines = [
        f"{item.id:<16} {item.gateway:<9} {item.kind:<18} "
        f"{_money(item.amount_minor, item.currency):<16} {item.code.value:<24} {item.reason}"
        for item in items
    ]
    ctx.emit(
        {"items": [item.as_dict() for item in items]},
        "\n".join(lines) or "nothing to review",
    )


@review_.command("show")
@click.argument("item_id")
@pass_context
def show(ctx: Context, item_id: str) -> None:
    """An item in full: the event, the reason, the top-up it was meant for, the raw payload."""
    with ctx.transaction() as session:
        item = review.show(session, item_id)
    event, topup = item["event"], item["topup"]
    lines = [
        f"{item['id']} ({item['status']}): {item['reason']} [{item['reason_code']}]",
        f"event    {event['gateway']} {event['event_id']} {event['kind']}"
        f" payment {event['payment_id']} {_money(event['amount_minor'], event['currency'])}"
        f" reference {event['reference']}",
        "top-up   "
        + (
            "none matches the reference"
            if topup is None
            else f"{topup['id']} wallet {topup['wallet_id']} {topup['gateway']}"
            f" {_money(topup['amount_minor'], topup['currency'])} {topup['status']}"
            f" (payment {topup['payment_id']})"
        ),
    ]
    if item["resolution"]:
        done = item["resolution"]
        lines.append(
            f"resolved {done['action']} by {done['actor']} at {done['resolved_at']}: {done['note']}"
        )
    lines.append("payload  " + json.dumps(item["payload"], sort_keys=True)[:4000])
    if item["conflicting_payload"] is not None:
        lines.append("repeat   " + json.dumps(item["conflicting_payload"], sort_keys=True)[:4000])
    ctx.emit(item, "\n".join(lines))


@review_.command("resolve")
@click.argument("item_id")
@click.option("--apply-to-topup", "topup_id", type=click.UUID, help="Credit (or reverse) it.")
@click.option("--credit-wallet", "wallet_id", type=click.UUID, help="Credit this wallet.")
@click.option("--dismiss", is_flag=True, help="Move no money.")
@click.option("--note", required=True, help="Why; kept with the resolution and in the audit log.")
@click.option("--actor", help="Who resolves (default: walletctl:<login name>).")
@pass_context
def resolve(
    ctx: Context,
    item_id: str,
    topup_id: uuid.UUID | None,
    wallet_id: uuid.UUID | None,
    dismiss: bool,
    note: str,
    actor: str | None,
) -> None:
    """Resolve an item once: --apply-to-topup T, --credit-wallet W or --dismiss, with --note."""
    chosen = [topup_id is not None, wallet_id is not None, dismiss]
    if sum(chosen) != 1:
        raise click.UsageError(
            "give exactly one of --apply-to-topup T, --credit-wallet W or --dismiss."
        )
    if not note.strip():
        raise click.UsageError("--note must say why the item is resolved this way.")
    action = (
        ReviewAction.APPLY_TO_TOPUP
        if topup_id is not None
        else ReviewAction.CREDIT_WALLET
        if wallet_id is not None
        else ReviewAction.DISMISS
    )
    with ctx.transaction() as session:
        resolution = review.resolve(
            session,
            item_id,
            action=action,
            note=note,
            actor=actor or f"walletctl:{getpass.getuser()}",
            topup_id=topup_id,
            wallet_id=wallet_id,
        )
        notices = outbox.emitted(session)
        done = review.resolution_view(resolution)
    _announce(notices)
    moved = f"; transfer {done['transfer_id']}" if done["transfer_id"] else "; no money moved"
    ctx.emit({"id": item_id, **done}, f"resolved {item_id}: {done['action']}{moved}")


def _announce(notices: list[int]) -> None:
    """Hand the committed notifications to the workers; the scheduler re-sends any that fail."""
    if not notices:
        return
    sender = JobSender(os.environ.get("BROKER_URL") or default_broker_url())
    try:
        sender.send(DELIVER_NOTIFICATIONS)
    finally:
        sender.close()


def _money(amount_minor: int | None, currency: str | None) -> str:
    return "-" if amount_minor is None else f"{amount_minor} {currency or '?'}"
