"""The walletctl entry point: a click group that each command module adds to."""

from __future__ import annotations

import click

from ledger.settings import LedgerSettings
from walletctl.commands import (
    adjust,
    contact,
    db,
    dlq,
    grant,
    owner,
    plan,
    scheduler,
    token,
    verify,
    wallet,
    watch,
    webhook,
)
from walletctl.context import Context


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> None:
    """Operate a walletpipe ledger (DATABASE_URL selects the database)."""
    try:
        settings = LedgerSettings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    ctx.obj = Context(as_json=as_json, settings=settings)


for command in (
    db.db,
    wallet.wallet,
    adjust.adjust,
    grant.grant,
    watch.monitor,
    watch.autotopup,
    verify.verify,
    webhook.webhook,
    token.token,
    scheduler.scheduler,
    scheduler.relay,
    dlq.dlq,
    contact.contact,
    plan.plan,
    owner.owner,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="walletctl")
