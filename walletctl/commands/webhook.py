"""`walletctl webhook send <gateway>`: sign a realistic gateway event and post it."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import click

from ledger.money import AMOUNT_MINOR_MAX
from walletctl.context import CommandFailed, Context, pass_context
from webhook_receiver.errors import GatewayUnknown
from webhook_receiver.event import EventKind
from webhook_receiver.gateways import ADAPTERS
from webhook_receiver.settings import ReceiverSettings

_TIMEOUT_S = 10
_ANSWER_MAX = 64 * 1024


@click.group()
def webhook() -> None:
    """Gateway webhooks."""


@webhook.command("send")
@click.argument("gateway", type=click.Choice(sorted(ADAPTERS)))
@click.option("--amount-minor", type=click.IntRange(1, AMOUNT_MINOR_MAX), required=True)
@click.option("--currency", required=True, help="ISO 4217 code, for example ZAR.")
@click.option("--reference", required=True, help="Our top-up id, as the paying client sends it.")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in EventKind]),
    default=EventKind.PAYMENT_SUCCEEDED.value,
    show_default=True,
)
@click.option("--event-id", help="The gateway's event id (default: a new one).")
@click.option(
    "--payment-id",
    help="The gateway's payment id; for a refund, the captured payment it refunds "
    "(the payment id a capture's send printed). Default: a new one.",
)
@click.option("--url", help="Receiver URL (default: http://127.0.0.1:$PORT/webhooks/<gateway>).")
@pass_context
def send(
    ctx: Context,
    gateway: str,
    amount_minor: int,
    currency: str,
    reference: str,
    kind: str,
    event_id: str | None,
    payment_id: str | None,
    url: str | None,
) -> None:
    """Build a realistic GATEWAY event, sign it with the configured secret, post it."""
    if gateway == "paypal":
        raise CommandFailed(
            "PayPal signs its events with its own private key, and the receiver trusts only "
            "certificates from PayPal's hosts, so walletctl cannot sign a PayPal event; "
            "send one from PayPal's webhook simulator instead."
        )
    adapter = ADAPTERS[gateway]
    try:
        secret = adapter.configured_secrets(ReceiverSettings.from_env())[-1]
        sample = adapter.sample(
            secret,
            amount_minor=amount_minor,
            currency=currency.upper(),
            reference=reference,
            event_id=event_id,
            kind=EventKind(kind),
            payment_id=payment_id,
        )
    except GatewayUnknown as exc:
        raise CommandFailed(f"{exc}: set it to the secret the receiver uses.") from exc
    except ValueError as exc:
        raise CommandFailed(str(exc)) from exc
    target = url or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}/webhooks/{gateway}"
    request = urllib.request.Request(  # noqa: S310 (an operator-given http(s) URL)
        target,
        data=sample.body,
        headers={**sample.headers, "Content-Type": sample.content_type},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as answer:  # noqa: S310
            status, text = answer.status, answer.read(_ANSWER_MAX).decode(errors="replace")
    except urllib.error.HTTPError as answer:
        status, text = answer.code, answer.read(_ANSWER_MAX).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise CommandFailed(
            f"could not reach {target} ({exc}): is the receiver running (`make run`)?"
        ) from exc
    ctx.emit(
        {"url": target, "status": status, "answer": text, "payment_id": sample.payment_id},
        f"{status} {text.strip()} (payment {sample.payment_id})",
    )
    if status >= 300:
        hint = ""
        if status == 401 and gateway == "payfast":
            hint = " (PayFast ITNs must come from PAYFAST_ALLOWED_NETWORKS; add 127.0.0.1/32)"
        raise CommandFailed(f"the receiver answered {status}{hint}")
