"""`walletctl verify`: recompute the ledger and exit 1 on any invariant breach."""

from __future__ import annotations

import click

from ledger.verify import verify as verify_ledger
from walletctl.context import Context, pass_context


@click.command()
@pass_context
def verify(ctx: Context) -> None:
    """Recompute every account from its transfers; exit 1 if any invariant is broken."""
    with ctx.transaction() as session:
        breaches = verify_ledger(session)
    ctx.emit(
        {
            "ok": not breaches,
            "breaches": [
                {"check": b.check, "subject": b.subject, "detail": b.detail} for b in breaches
            ],
        },
        "\n".join(f"BREACH {b.check}: {b.subject}: {b.detail}" for b in breaches)
        or "ledger verified: every invariant holds",
    )
    if breaches:
        raise SystemExit(1)
