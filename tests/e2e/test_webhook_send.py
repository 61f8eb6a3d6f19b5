"""`walletctl webhook send` against gunicorn serving the receiver, as in the README's demo."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from sqlalchemy import select

from ledger.models import InboxEvent

from .conftest import BIN


def walletctl(web, *args):
    return subprocess.run(
        [str(BIN / "walletctl"), "--json", *args],
        env=web.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("gateway", ["stripe", "paystack", "yoco", "razorpay", "adyen", "payfast"])
def test_a_signed_event_is_accepted_and_stored(web, sessions, gateway):
    reference = f"topup-{uuid.uuid4()}"
    event_id = f"evt{uuid.uuid4().hex[:16]}"
    args = [
        "webhook",
        "send",
        gateway,
        "--amount-minor",
        "2500",
        "--currency",
        "ZAR",
        "--reference",
        reference,
        "--event-id",
        event_id,
        "--url",
        f"{web.url}/webhooks/{gateway}",
    ]
    sent = walletctl(web, *args)
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)
    assert answer["status"] == 200
    with sessions() as session:
        row = session.scalars(
            select(InboxEvent).where(
                InboxEvent.gateway == gateway, InboxEvent.reference == reference
            )
        ).one()
    assert (row.amount_minor, row.currency, row.kind) == (2500, "ZAR", "payment_succeeded")

    again = walletctl(web, *args)
    assert again.returncode == 0
    if gateway != "adyen":  # Adyen hears "[accepted]" whatever happened
        assert json.loads(json.loads(again.stdout)["answer"]) == {"status": "duplicate"}


def send_stripe(web, env):
    return subprocess.run(
        [
            str(BIN / "walletctl"),
            "webhook",
            "send",
            "stripe",
            "--amount-minor",
            "1",
            "--currency",
            "ZAR",
            "--reference",
            "x",
            "--url",
            f"{web.url}/webhooks/stripe",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_unconfigured_gateway_is_explained(web):
    env = {k: v for k, v in web.env.items() if k != "STRIPE_WEBHOOK_SECRET"}
    sent = send_stripe(web, env)
    assert sent.returncode == 1
    assert "STRIPE_WEBHOOK_SECRET is not set" in sent.stderr


def test_a_wrong_secret_is_refused_by_the_receiver(web):
    sent = send_stripe(web, {**web.env, "STRIPE_WEBHOOK_SECRET": "whsec_not_the_receivers"})
    assert sent.returncode == 1
    assert "answered 401" in sent.stderr


@pytest.mark.parametrize("gateway", ["stripe", "paystack", "yoco", "razorpay", "adyen"])
def test_a_refund_names_the_payment_its_capture_printed(web, sessions, gateway):
    reference = f"topup-{uuid.uuid4()}"
    common = [
        "--currency",
        "ZAR",
        "--reference",
        reference,
        "--url",
        f"{web.url}/webhooks/{gateway}",
    ]
    captured = walletctl(web, "webhook", "send", gateway, "--amount-minor", "2500", *common)
    assert captured.returncode == 0, captured.stderr
    payment_id = json.loads(captured.stdout)["payment_id"]

    refunded = walletctl(
        web,
        "webhook",
        "send",
        gateway,
        "--kind",
        "refund_succeeded",
        "--amount-minor",
        "1000",
        "--payment-id",
        payment_id,
        *common,
    )

    assert refunded.returncode == 0, refunded.stderr
    assert json.loads(refunded.stdout)["payment_id"] == payment_id
    with sessions() as session:
        kinds = dict(
            session.execute(
                select(InboxEvent.kind, InboxEvent.payment_id).where(
                    InboxEvent.gateway == gateway, InboxEvent.reference == reference
                )
            ).all()
        )
    assert kinds == {"payment_succeeded": payment_id, "refund_succeeded": payment_id}
