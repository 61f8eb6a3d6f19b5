"""The walletctl entry point: a click group that each command module adds to."""

from __future__ import annotations

import click

from ledger.settings import LedgerSettings
from walletctl.commands import (
    adjust,
    catchup,
    contact,
    db,
    dlq,
    grant,
    owner,
    plan,
    reconcile,
    review,
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


def _json_anywhere(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    found = ctx.find_object(Context)
    if value and found is not None:
        found.as_json = True


def _take_json_flag(command: click.Command) -> None:
    """Give `command` and every command under it a --json flag of its own, so that it works
    before or after the subcommand's name and arguments alike."""
    command.params.append(
        click.Option(
            ["--json"],
            is_flag=True,
            expose_value=False,
            callback=_json_anywhere,
            help="Machine-readable JSON output.",
        )
    )
    if isinstance(command, click.Group):
        for subcommand in command.commands.values():
            _take_json_flag(subcommand)


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
    review.review_,
    reconcile.reconcile,
    catchup.catch_up_command,
):
    _take_json_flag(command)
    cli.add_command(command)


def main() -> None:
    cli(prog_name="walletctl")
