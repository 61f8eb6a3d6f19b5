"""`walletctl catch-up GATEWAY --since TIME`: record what a gateway's API says the inbox lacks."""

from __future__ import annotations

import logging
import os
import re
from datetime import UTC, datetime, timedelta

import click

from walletctl.context import CommandFailed, Context, pass_context
from webhook_receiver import catchup
from webhook_receiver.errors import CatchupFailed
from webhook_receiver.gateways.catchup import FETCHERS
from webhook_receiver.gateways.catchup_settings import CatchupSettings
from workers.jobs import APPLY_INBOX_BATCH, JobSender

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d{1,6})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(value: str, now: datetime) -> datetime:
    """An ISO 8601 time (with its offset, or UTC), or a duration back from now: 90m, 24h, 7d."""
    duration = _DURATION.fullmatch(value.strip())
    if duration:
        return now - timedelta(**{_UNITS[duration[2]]: int(duration[1])})
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither an ISO 8601 time (2026-11-23T00:00:00Z) nor a duration "
            "back from now (90m, 24h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def catch_up(ctx: Context, gateway: str, since: datetime) -> catchup.CaughtUp:
    """One catch-up of `gateway`: ask its API, record what is new, ring the workers."""
    try:
        settings = CatchupSettings.from_env()
        found = catchup.fetch(gateway, settings, since)
    except ValueError as exc:
        raise CommandFailed(str(exc)) from exc
    except CatchupFailed as exc:
        raise CommandFailed(f"catch-up of {gateway} failed: {exc}") from exc
    with ctx.transaction() as session:
        caught = catchup.record(session, gateway, found)
    if caught.recorded:
        sender = JobSender(os.environ.get("BROKER_URL", "redis://localhost:6379/0"))
        try:
            sender.send(APPLY_INBOX_BATCH)  # the relay re-sends it if the broker is down
        finally:
            sender.close()
    return caught


@click.command("catch-up")
@click.argument("gateway", type=click.Choice(sorted(FETCHERS)))
@click.option("--since", required=True, help="ISO 8601 time, or a duration back: 24h, 7d.")
@pass_context
def catch_up_command(ctx: Context, gateway: str, since: str) -> None:
    """Ask GATEWAY's API what happened since TIME and record what the inbox lacks."""
    start = parse_since(since, datetime.now(UTC))
    caught = catch_up(ctx, gateway, start)
    ctx.emit(
        {**caught.as_dict(), "since": start.isoformat()},
        f"{gateway} since {start.isoformat()}: {caught.seen} money events listed, "
        f"{caught.recorded} new in the inbox (the workers apply them), {caught.known} known",
    )
