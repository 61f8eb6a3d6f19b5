"""`walletctl token`: mint a service-API JWT with the configured WALLETPIPE_JWT_SECRET."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click

from walletctl.context import CommandFailed, Context, pass_context
from webhook_receiver.auth import SCOPES, TTL_S_MAX, mint_token
from webhook_receiver.settings import ReceiverSettings


def _scope_words(ctx: click.Context, param: click.Parameter, value: str) -> str:
    words = value.split()
    unknown = sorted(set(words) - SCOPES)
    if not words or unknown:
        problem = f"unknown scope(s) {' '.join(unknown)}" if unknown else "no scope given"
        raise click.BadParameter(f"{problem}; choose from: {' '.join(sorted(SCOPES))}")
    return " ".join(dict.fromkeys(words))


@click.command()
@click.option("--sub", "subject", required=True, help="Who the token speaks for (its sub claim).")
@click.option(
    "--scope",
    required=True,
    callback=_scope_words,
    help=f"Space-separated scopes: {' '.join(sorted(SCOPES))}.",
)
@click.option("--owner-id", help="Bind the token to this owner's wallets only.")
@click.option(
    "--ttl-s",
    type=click.IntRange(1, TTL_S_MAX),
    default=3600,
    show_default=True,
    help="Lifetime in seconds (at most 31 days).",
)
@pass_context
def token(ctx: Context, subject: str, scope: str, owner_id: str | None, ttl_s: int) -> None:
    """Print a signed bearer token for /api/v1 (HS256, the newest WALLETPIPE_JWT_SECRET)."""
    try:
        settings = ReceiverSettings.from_env()
    except ValueError as exc:
        raise CommandFailed(str(exc)) from exc
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        minted = mint_token(
            settings, subject=subject, scopes=scope, owner_id=owner_id, ttl_s=ttl_s, now=now
        )
    except ValueError as exc:
        raise CommandFailed(str(exc)) from exc
    ctx.emit(
        {
            "token": minted,
            "expires_at": (now + timedelta(seconds=ttl_s)).isoformat(),
            "sub": subject,
            "scope": scope,
            "owner_id": owner_id,
        },
        minted,
    )
