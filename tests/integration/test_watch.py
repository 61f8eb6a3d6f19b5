"""Balance monitors and auto top-up: announced once per crossing by the transfer trigger, on
every path that moves money, and automatic Stripe charges asked for once each."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import ClassVar

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from ledger import autotopup, monitor
from ledger.account import current_balance, system_account_id
from ledger.adjustment import Direction, adjust
from ledger.errors import InsufficientFunds, MonitorExists
from ledger.models import Account, Category, OutboxEvent, SystemAccount, Topup
from ledger.transfer import TransferRequest, transfer
from tests.integration.test_settlement import apply, stored_event
from workers.stripe_charges import StripeSettings, charge_auto_topups


def _spend(sessions, wallet, amount_minor, *, hold=False):
    with sessions.begin() as session:
        revenue = system_account_id(session, SystemAccount.REVENUE, "ZAR")
        transfer(
            session,
            TransferRequest(
                f"spend:{uuid.uuid4()}",
                wallet,
                revenue,
                amount_minor,
                "ZAR",
                Category.HOLD if hold else Category.ORDER_PAYMENT,
                expires_at=datetime(2099, 1, 1, tzinfo=UTC) if hold else None,
            ),
        )


def _credit(sessions, wallet, amount_minor):
    with sessions.begin() as session:
        adjust(
            session,
            wallet_id=wallet,
            direction=Direction.CREDIT,
            amount_minor=amount_minor,
            reason="tests",
            actor="tests",
        )


def _events(sessions, wallet, event_type):
    with sessions() as session:
        return [
            row.payload
            for row in session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.wallet_id == wallet, OutboxEvent.event_type == event_type)
                .order_by(OutboxEvent.id)
            )
        ]


def _monitor(sessions, wallet, direction, threshold_minor):
    with sessions.begin() as session:
        return monitor.add_monitor(
            session, wallet, monitor.Direction(direction), threshold_minor
        ).id


def test_a_below_monitor_announces_each_crossing_once_and_rearms(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)
    watched = _monitor(sessions, wallet, "below", 500)

    _spend(sessions, wallet, 600)  # available 400: crossed
    _spend(sessions, wallet, 100)  # 300: still below, nothing new
    _credit(sessions, wallet, 500)  # 800: re-armed, nothing said
    _spend(sessions, wallet, 250, hold=True)  # available 550: still above
    _spend(sessions, wallet, 100, hold=True)  # available 450: crossed again, by a hold

    crossed = _events(sessions, wallet, "wallet.balance_crossed")
    assert [(e["monitor_id"], e["available_minor"]) for e in crossed] == [
        (str(watched), 400),
        (str(watched), 450),
    ]
    assert crossed[0]["direction"] == "below"
    assert crossed[0]["threshold_minor"] == 500


def test_an_above_monitor_hears_a_batched_gateway_capture(sessions, topup):
    topup_id, wallet = topup(amount_minor=5000)
    _monitor(sessions, wallet, "above", 4000)

    # The settlement's set path: one multi-row INSERT ... SELECT FROM unnest(...).
    assert apply(sessions, stored_event(sessions, reference=topup_id, amount_minor=5000)) == (
        "applied"
    )

    crossed = _events(sessions, wallet, "wallet.balance_crossed")
    assert [(e["direction"], e["available_minor"]) for e in crossed] == [("above", 5000)]


def test_a_monitor_starts_in_the_state_the_wallet_is_in(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100)
    _monitor(sessions, wallet, "below", 500)  # already below: no event for the past
    _spend(sessions, wallet, 50)
    assert _events(sessions, wallet, "wallet.balance_crossed") == []
    with pytest.raises(MonitorExists), sessions.begin() as session:
        monitor.add_monitor(session, wallet, monitor.Direction.BELOW, 500)
    with sessions.begin() as session:
        [row] = monitor.list_monitors(session, wallet)
        monitor.remove_monitor(session, wallet, row.id)
    _credit(sessions, wallet, 1000)
    _spend(sessions, wallet, 1000)
    assert _events(sessions, wallet, "wallet.balance_crossed") == []


def test_a_wallet_is_watched_while_it_has_a_monitor_and_not_by_hand(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)
    watched = _monitor(sessions, wallet, "below", 500)
    with pytest.raises(DBAPIError, match="never change by hand"), sessions.begin() as session:
        session.execute(text("UPDATE accounts SET watched = false WHERE id = :id"), {"id": wallet})
    with sessions.begin() as session:
        monitor.remove_monitor(session, wallet, watched)
    with sessions() as session:
        assert session.get(Account, wallet).watched is False


def _rule(sessions, wallet, **terms):
    with sessions.begin() as session:
        autotopup.set_rule(session, wallet, autotopup.Rule(**terms))


def _auto_topups(sessions, wallet):
    with sessions() as session:
        return [
            (row.amount_minor, row.status)
            for row in session.scalars(
                select(Topup)
                .where(Topup.wallet_id == wallet, Topup.auto_rule_day.is_not(None))
                .order_by(Topup.created_at)
            )
        ]


def test_auto_topup_fires_once_per_crossing_at_most_n_a_day(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)
    _rule(sessions, wallet, threshold_minor=500, target_minor=2000, per_day_max=2)

    _spend(sessions, wallet, 700)  # available 300: top up to 2000
    _spend(sessions, wallet, 100)  # still below: nothing more
    assert _auto_topups(sessions, wallet) == [(1700, "pending")]
    _credit(sessions, wallet, 1000)  # 1200: re-armed
    _spend(sessions, wallet, 800)  # 400: the second of the day
    _credit(sessions, wallet, 1000)
    _spend(sessions, wallet, 1000)  # 400 again: the limit of 2 a day is reached

    assert _auto_topups(sessions, wallet) == [(1700, "pending"), (1600, "pending")]
    requested = _events(sessions, wallet, "topup.requested")
    assert [(e["amount_minor"], e["automatic"]) for e in requested] == [(1700, True), (1600, True)]


def test_a_fixed_amount_rule_and_bad_rules(sessions, make_wallet):
    wallet = make_wallet(funded_minor=1000)
    _rule(sessions, wallet, threshold_minor=500, amount_minor=2500, per_day_max=1)
    _spend(sessions, wallet, 600)
    assert _auto_topups(sessions, wallet) == [(2500, "pending")]
    for terms, message in (
        ({"threshold_minor": 500, "per_day_max": 1}, "exactly one"),
        ({"threshold_minor": 500, "target_minor": 400, "per_day_max": 1}, "above threshold"),
        ({"threshold_minor": 5, "amount_minor": 5, "per_day_max": 0}, "per_day_max"),
        (
            {"threshold_minor": 5, "amount_minor": 5, "per_day_max": 1, "stripe_customer_id": "x"},
            "both",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            _rule(sessions, wallet, **terms)


class FakeStripe(http.server.BaseHTTPRequestHandler):
    """Answers POST /v1/payment_intents as Stripe's API documents it; declines pm_declined."""

    requests: ClassVar[list[tuple[dict[str, str], dict[str, str]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        FakeStripe.requests.append((form, dict(self.headers)))
        intent = {
            "id": f"pi_{uuid.uuid4().hex[:24]}",
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "currency": form["currency"],
            "customer": form["customer"],
            "metadata": {"topup_id": form["metadata[topup_id]"]},
        }
        if form["payment_method"] == "pm_declined":
            status, body = (
                402,
                {
                    "error": {
                        "type": "card_error",
                        "code": "card_declined",
                        "decline_code": "insufficient_funds",
                        "message": "Your card has insufficient funds.",
                        "payment_intent": {**intent, "status": "requires_payment_method"},
                    }
                },
            )
        else:
            status, body = 200, {**intent, "status": "succeeded"}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


def _stripe_requests_for(wallet):
    """The requests about this test's wallet: the scheduler charges every wallet's top-ups."""
    return [r for r in FakeStripe.requests if r[0]["metadata[wallet_id]"] == str(wallet)]


@pytest.fixture
def stripe_api() -> Iterator[StripeSettings]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeStripe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeStripe.requests = []
    yield StripeSettings(
        api_base=f"http://127.0.0.1:{server.server_address[1]}", api_key="sk_test_local"
    )
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_saved_card_is_charged_off_session_once_and_its_webhook_credits(
    sessions, make_wallet, stripe_api
):
    wallet = make_wallet(funded_minor=1000)
    _rule(
        sessions,
        wallet,
        threshold_minor=500,
        target_minor=3000,
        per_day_max=3,
        stripe_customer_id="cus_Local123",
        stripe_payment_method_id="pm_card_visa",
    )
    _spend(sessions, wallet, 800)  # 200: a top-up of 2800

    charge_auto_topups(sessions, stripe_api, now=datetime.now(UTC))
    charge_auto_topups(sessions, stripe_api, now=datetime.now(UTC))

    [(form, headers)] = _stripe_requests_for(wallet)
    with sessions() as session:
        [row] = session.scalars(select(Topup).where(Topup.wallet_id == wallet)).all()
    assert form == {
        "amount": "2800",
        "currency": "zar",
        "customer": "cus_Local123",
        "payment_method": "pm_card_visa",
        "off_session": "true",
        "confirm": "true",
        "metadata[topup_id]": str(row.id),
        "metadata[wallet_id]": str(wallet),
    }
    assert headers["Authorization"] == "Bearer sk_test_local"
    assert headers["Idempotency-Key"] == f"walletpipe-topup-{row.id}"
    assert row.charge_id.startswith("pi_")

    # Stripe's payment_intent.succeeded webhook settles it as any top-up.
    event = stored_event(sessions, reference=row.id, amount_minor=2800, payment_id=row.charge_id)
    assert apply(sessions, event) == "applied"
    with sessions() as session:
        assert session.get(Topup, row.id).status == "succeeded"
        assert current_balance(session, wallet).available_minor == 3000


def test_a_declined_charge_fails_the_topup_once_and_is_not_retried(
    sessions, make_wallet, stripe_api
):
    wallet = make_wallet(funded_minor=1000)
    _rule(
        sessions,
        wallet,
        threshold_minor=500,
        amount_minor=1000,
        per_day_max=3,
        stripe_customer_id="cus_Local123",
        stripe_payment_method_id="pm_declined",
    )
    _spend(sessions, wallet, 800)

    for _ in range(3):
        charge_auto_topups(sessions, stripe_api, now=datetime.now(UTC))

    assert len(_stripe_requests_for(wallet)) == 1
    assert _auto_topups(sessions, wallet) == [(1000, "failed")]
    [failed] = _events(sessions, wallet, "topup.failed")
    assert "insufficient_funds" in failed["reason"]
    with sessions() as session:
        row = session.scalars(select(Topup).where(Topup.wallet_id == wallet)).one()
    assert row.charge_id.startswith("pi_")
    with pytest.raises(InsufficientFunds):
        _spend(sessions, wallet, 201)
