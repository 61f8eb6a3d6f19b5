"""`walletctl reconcile GATEWAY FILE [--apply]`, and `reconcile list|show` of the stored runs."""

from __future__ import annotations

import getpass
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ledger import outbox
from ledger import reconcile as reconciliation
from ledger.local_names import default_broker_url
from ledger.models import ReconcileRun
from walletctl.context import CommandFailed, Context, pass_context
from webhook_receiver.errors import ReportUnreadable
from webhook_receiver.gateways.reports import READERS
from workers.jobs import APPLY_INBOX_BATCH, DELIVER_NOTIFICATIONS, JobSender


class _RunOrSubcommand(click.Group):
    """`reconcile list`, `reconcile show N`, or else `reconcile GATEWAY FILE` (the run)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("reconcile", cls=_RunOrSubcommand)
def reconcile() -> None:
    """Compare a gateway's settlement report with the ledger; repair what is missing.

    walletctl reconcile GATEWAY FILE [--apply] [--json] | reconcile list | reconcile show ID
    """


@reconcile.command("run", hidden=True)
@click.argument("gateway", type=click.Choice(sorted(READERS)))
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--apply", "apply_", is_flag=True, help="Repair what the ledger misses.")
@click.option("--actor", help="Who reconciles (default: walletctl:<login name>).")
@pass_context
def run(ctx: Context, gateway: str, report: Path, apply_: bool, actor: str | None) -> None:
    """Read GATEWAY's REPORT, match every line to the ledger, print what differs."""
    source = report.read_bytes()
    try:
        lines = READERS[gateway](source)
    except ReportUnreadable as exc:
        raise CommandFailed(
            f"{report} is not a {gateway} report as {gateway} documents it: {exc} "
            "(see docs/reconciliation.md for the files each gateway reader takes)"
        ) from exc
    waiting: list[int] = []
    with ctx.transaction() as session:
        result = reconciliation.compare(session, gateway, lines)
        if apply_:
            waiting = reconciliation.repair(session, gateway, lines, result, now=datetime.now(UTC))
        stored = reconciliation.store(
            session,
            gateway=gateway,
            source_name=report.name,
            source=source,
            applied=apply_,
            actor=actor or f"walletctl:{getpass.getuser()}",
            result=result,
        )
        notices = outbox.emitted(session)
        run_id = stored.id
    _ring(waiting, notices)
    data = {"run": run_id, "gateway": gateway, "applied": apply_, **result.as_dict()}
    ctx.emit(data, _text(run_id, gateway, apply_, result, len(lines)))


@reconcile.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@pass_context
def list_(ctx: Context, limit: int) -> None:
    """Stored runs, newest first, with their summaries."""
    with ctx.transaction() as session:
        rows = [_run_view(row, full=False) for row in reconciliation.runs(session, limit=limit)]
    lines = [
        f"{row['id']:>5}  {row['created_at'][:19]}  {row['gateway']:<9} "
        f"{'applied' if row['applied'] else 'compared':<8}  {row['source_name']}  "
        + ", ".join(
            f"{key} {_count(value)}" for key, value in row["summary"].items() if key != "fees"
        )
        for row in rows
    ]
    ctx.emit({"runs": rows}, "\n".join(lines) or "no reconciliation runs yet")


@reconcile.command("show")
@click.argument("run_id", type=click.IntRange(1))
@pass_context
def show(ctx: Context, run_id: int) -> None:
    """One stored run in full: every line's finding and what was repaired."""
    with ctx.transaction() as session:
        row = session.get(ReconcileRun, run_id)
        if row is None:
            raise CommandFailed(f"no reconciliation run {run_id}: see `walletctl reconcile list`")
        view = _run_view(row, full=True)
    result = view["result"]
    text = [
        f"run {view['id']} {view['gateway']} {view['source_name']} by {view['actor']} at "
        f"{view['created_at']} ({'applied' if view['applied'] else 'compared'})",
        *_sections(result),
    ]
    ctx.emit(view, "\n".join(text))


def _count(value: Any) -> str:
    """A summary's figure: a number, or the repairs by outcome ("applied 2, needs_review 1")."""
    if isinstance(value, dict):
        return "(" + (", ".join(f"{key} {count}" for key, count in value.items()) or "none") + ")"
    return str(value)


def _run_view(row: ReconcileRun, *, full: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "gateway": row.gateway,
        "source_name": row.source_name,
        "source_sha256": row.source_sha256.hex(),
        "applied": row.applied,
        "actor": row.actor,
        "created_at": row.created_at.isoformat(),
        "summary": row.summary,
    }
    if full:
        view["result"] = row.result
    return view


def _text(run_id: int, gateway: str, applied: bool, result: Any, line_count: int) -> str:
    summary = result.summary()
    head = (
        f"run {run_id}: {line_count} {gateway} report lines; matched {summary['matched']},"
        f" missing in ledger {summary['missing_in_ledger']}, missing at gateway"
        f" {summary['missing_at_gateway']}, mismatched {summary['mismatched']}"
    )
    tail = [] if applied else ["(nothing changed; --apply repairs what is missing)"]
    return "\n".join([head, *_sections(result.as_dict()), *tail])


def _sections(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key in ("missing_in_ledger", "mismatched", "missing_at_gateway"):
        for entry in result.get(key, []):
            what = entry.get("line_id") or entry.get("topup_id")
            lines.append(
                f"  {key:<18} {entry.get('kind', 'credit'):<16} {what}  payment "
                f"{entry.get('payment_id')}  {entry.get('amount_minor')} {entry.get('currency')}"
                f"  {entry.get('detail', '')}".rstrip()
            )
    for repair in result.get("repairs", []):
        lines.append(
            f"  repaired           {repair['kind']:<16} {repair['line_id']}  inbox "
            f"{repair['inbox_id']}: {repair['outcome']}"
        )
    fees = result.get("fees") or {}
    if fees:
        lines.append(
            "  fees " + ", ".join(f"{amount} {code} (minor)" for code, amount in fees.items())
        )
    return lines


def _ring(waiting: list[int], notices: list[int]) -> None:
    """After the commit: wake the workers for held rows, hand over the notifications."""
    if not waiting and not notices:
        return
    sender = JobSender(os.environ.get("BROKER_URL") or default_broker_url())
    try:
        if waiting:
            sender.send(APPLY_INBOX_BATCH)
        if notices:
            sender.send(DELIVER_NOTIFICATIONS)
    finally:
        sender.close()
