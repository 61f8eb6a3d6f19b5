"""`walletctl scheduler` (the Procfile's scheduler) and `walletctl relay` (one pass by hand)."""

from __future__ import annotations

import logging
import os
import signal
import threading

import click

from ledger.logs import configure_logging
from ledger.settings import BillingSettings
from walletctl.context import Context, pass_context
from workers.jobs import JobSender
from workers.scheduler import INTERVAL_S_DEFAULT, RESEND_AFTER_S_DEFAULT, Scheduler
from workers.stripe_charges import StripeSettings

_INTERVAL = click.FloatRange(0.05, 3600)


def _scheduler(ctx: Context, interval_s: float, resend_after_s: float) -> Scheduler:
    broker_url = os.environ.get("BROKER_URL", "redis://localhost:6379/0")
    try:
        billing = BillingSettings.from_env()
        stripe = StripeSettings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    return Scheduler(
        ctx.engine,
        JobSender(broker_url),
        interval_s=interval_s,
        resend_after_s=resend_after_s,
        billing=billing,
        stripe=stripe,
    )


@click.command()
@click.option("--interval-s", type=_INTERVAL, default=INTERVAL_S_DEFAULT, show_default=True)
@click.option(
    "--resend-after-s",
    type=_INTERVAL,
    default=RESEND_AFTER_S_DEFAULT,
    show_default=True,
    help="Re-send an event waiting this long since its last send.",
)
@pass_context
def scheduler(ctx: Context, interval_s: float, resend_after_s: float) -> None:
    """Run the scheduler until SIGTERM or SIGINT; safe to run several, one leads."""
    configure_logging(
        as_json=os.environ.get("LOG_FORMAT", "json") != "text",
        level=os.environ.get("LOG_LEVEL", "INFO"),
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logging.getLogger(__name__).info("Scheduler starting; every %s s.", interval_s)
    _scheduler(ctx, interval_s, resend_after_s).run(stop)


@click.command()
@click.option(
    "--resend-after-s",
    type=_INTERVAL,
    default=RESEND_AFTER_S_DEFAULT,
    show_default=True,
    help="Re-send an event waiting this long since its last send.",
)
@pass_context
def relay(ctx: Context, resend_after_s: float) -> None:
    """Run one scheduler round now: re-send waiting work, void expired holds, bill."""
    sent = _scheduler(ctx, INTERVAL_S_DEFAULT, resend_after_s).tick()
    ctx.emit({"sent": sent}, f"sent {sent} waiting events to the workers")
