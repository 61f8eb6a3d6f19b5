"""`walletctl scheduler` (the Procfile's scheduler) and `walletctl relay` (one pass by hand)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from datetime import UTC, datetime, timedelta

import click

from ledger.logs import configure_logging
from ledger.settings import BillingSettings
from walletctl.commands.catchup import catch_up
from walletctl.context import Context, pass_context
from webhook_receiver.gateways.catchup import FETCHERS
from workers.jobs import JobSender
from workers.scheduler import INTERVAL_S_DEFAULT, RESEND_AFTER_S_DEFAULT, Periodic, Scheduler
from workers.stripe_charges import StripeSettings

_INTERVAL = click.FloatRange(0.05, 3600)


def _scheduler(
    ctx: Context, interval_s: float, resend_after_s: float, *, periodic: bool = False
) -> Scheduler:
    broker_url = os.environ.get("BROKER_URL", "redis://localhost:6379/0")
    try:
        billing = BillingSettings.from_env()
        stripe = StripeSettings.from_env()
        duties = _catch_ups(ctx) if periodic else []
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    return Scheduler(
        ctx.engine,
        JobSender(broker_url),
        interval_s=interval_s,
        resend_after_s=resend_after_s,
        billing=billing,
        stripe=stripe,
        periodic=duties,
    )


def _catch_ups(ctx: Context) -> list[Periodic]:
    """Catch-up of CATCHUP_GATEWAYS every CATCHUP_INTERVAL_S (0, the default: never), each
    looking CATCHUP_LOOKBACK_S back (default a day, so an outage overnight is covered)."""
    gateways = [name.strip() for name in os.environ.get("CATCHUP_GATEWAYS", "").split(",")]
    gateways = [name for name in gateways if name]
    try:
        interval_s = float(os.environ.get("CATCHUP_INTERVAL_S", "0"))
        lookback_s = float(os.environ.get("CATCHUP_LOOKBACK_S", "86400"))
    except ValueError:
        raise ValueError(
            "CATCHUP_INTERVAL_S and CATCHUP_LOOKBACK_S are numbers of seconds"
        ) from None
    unknown = sorted(set(gateways) - set(FETCHERS))
    if unknown:
        raise ValueError(
            f"CATCHUP_GATEWAYS names {', '.join(unknown)}; "
            f"catch-up reads {', '.join(sorted(FETCHERS))}"
        )
    if interval_s <= 0 or not gateways:
        return []
    if interval_s < 60 or lookback_s <= 0:
        raise ValueError("CATCHUP_INTERVAL_S must be at least 60 and CATCHUP_LOOKBACK_S above 0")

    def duty(gateway: str) -> Periodic:
        def run() -> None:
            since = datetime.now(UTC) - timedelta(seconds=lookback_s)
            try:
                catch_up(ctx, gateway, since)
            except click.ClickException as exc:
                logging.getLogger(__name__).warning("Catch-up of %s: %s.", gateway, exc.message)

        return Periodic(f"catch-up {gateway}", interval_s, run)

    return [duty(gateway) for gateway in gateways]


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
    _scheduler(ctx, interval_s, resend_after_s, periodic=True).run(stop)


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
