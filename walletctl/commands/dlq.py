"""`walletctl dlq list|replay`: the jobs the workers gave up on, and sending them again.

Replaying is safe whatever the job did before it failed: every actor is idempotent, and a
dead letter is claimed by one replay only, however many operators run it at once.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import click

from ledger import deadletter
from walletctl.context import CommandFailed, Context, pass_context
from workers.jobs import REPLACED_BY, Job, JobSender


def _age(failed_at: datetime, now: datetime) -> str:
    seconds = max(0, int((now - failed_at).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@click.group()
def dlq() -> None:
    """Dead letters: jobs that failed for good."""


@dlq.command("list")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@pass_context
def list_(ctx: Context, limit: int) -> None:
    """List dead letters not replayed yet, oldest first: queue, actor, error, age."""
    now = datetime.now(UTC)
    with ctx.transaction() as session:
        letters = deadletter.waiting(session, limit=limit)
    data = [
        {
            "id": letter.id,
            "queue": letter.queue_name,
            "actor": letter.actor_name,
            "args": letter.args,
            "error": _last_line(letter.error),
            "failed_at": letter.failed_at.isoformat(),
            "age": _age(letter.failed_at, now),
        }
        for letter in letters
    ]
    lines = [
        f"{letter.id:>6}  {_age(letter.failed_at, now):>5}  "
        f"{letter.queue_name}/{letter.actor_name}{tuple(letter.args)}  "
        f"{_last_line(letter.error)[:120]}"
        for letter in letters
    ]
    ctx.emit({"dead_letters": data}, "\n".join(lines) or "no dead letters")


def _last_line(error: str) -> str:
    """A traceback's last line: the exception and its message."""
    lines = error.strip().splitlines()
    return lines[-1] if lines else ""


@dlq.command("replay")
@click.option("--id", "ids", type=int, multiple=True, help="Replay only these (repeatable).")
@pass_context
def replay(ctx: Context, ids: tuple[int, ...]) -> None:
    """Send dead letters to their queues again: the given ids, or every waiting one."""
    sender = JobSender(os.environ.get("BROKER_URL", "redis://localhost:6379/0"), timeout_s=5.0)
    replayed: list[int] = []
    try:
        with ctx.transaction() as session:
            now = datetime.now(UTC)
            for letter in deadletter.claim_for_replay(session, list(ids) if ids else None):
                doorbell = REPLACED_BY.get(letter.actor_name)
                if doorbell is not None:
                    message_id = sender.send_message(doorbell)
                else:
                    job = Job(letter.actor_name, letter.queue_name)
                    message_id = sender.send_message(job, *letter.args, **letter.kwargs)
                if message_id is None:
                    break  # the broker is down: what was sent stays marked, the rest waits
                deadletter.mark_replayed(letter, message_id=message_id, now=now)
                replayed.append(letter.id)
    finally:
        sender.close()
    missing = sorted(set(ids) - set(replayed))
    ctx.emit(
        {"replayed": replayed, "not_replayed": missing},
        f"replayed {len(replayed)} dead letters"
        + (f"; not replayed: {missing}" if missing else ""),
    )
    if missing:
        raise CommandFailed(
            f"dead letters {missing} were not replayed: they are unknown, replayed already, "
            "or the broker is down (check BROKER_URL; `walletctl dlq list` shows what waits)."
        )
