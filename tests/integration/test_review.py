"""The review queue: parked events and payload conflicts, each resolved once, audited, with
money moved only by the ledger's own transfers."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import jwt
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from ledger import inbox, review, settlement
from ledger.errors import ReviewActionRefused, ReviewAlreadyResolved
from ledger.models import AuditEntry, InboxEvent, ReviewAction, Topup, Transfer
from ledger.review_reason import ReviewCode
from walletctl.cli import cli
from webhook_receiver import create_app
from webhook_receiver.settings import ReceiverSettings

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "review-tests-secret-long-enough-for-hs256"


def parked(sessions, *, reference, amount_minor=5000, currency="ZAR", payload=None):
    """A Stripe capture the settlement set aside for review; its item id."""
    event = inbox.IncomingEvent(
        gateway="stripe",
        event_id=f"evt_{uuid.uuid4().hex}",
        kind="payment_succeeded",
        actionable=True,
        payment_id=f"pi_{uuid.uuid4().hex[:16]}",
        amount_minor=amount_minor,
        currency=currency,
        reference=reference,
        payment_method=None,
        occurred_at=None,
        payload=payload or {"id": str(uuid.uuid4())},
        body=b"{}",
        headers={},
    )
    with sessions.begin() as session:
        inbox_id = inbox.record(session, event).inbox_id
    with sessions.begin() as session:
        statuses = settlement.apply_inbox(session, now=NOW, only=[inbox_id])
    assert statuses == {inbox_id: "needs_review"}
    return f"event-{inbox_id}", event


def test_an_unknown_reference_is_listed_in_words_and_resolved_onto_its_top_up(
    sessions, topup, balance_of
):
    topup_id, wallet = topup(5000)
    item, _ = parked(sessions, reference="customer typed their email here")

    with sessions() as session:
        listed = {
            found.id: found for found in review.list_items(session, gateway="stripe", limit=500)
        }
    assert listed[item].code is ReviewCode.UNKNOWN_REFERENCE
    assert "no top-up matches reference" in listed[item].reason

    with sessions.begin() as session:
        resolution = review.resolve(
            session,
            item,
            action=ReviewAction.APPLY_TO_TOPUP,
            note="ticket 42: the customer's",
            actor="ops:ada",
            topup_id=topup_id,
        )
        transfer_id = resolution.transfer_id

    assert balance_of(wallet).balance_minor == 5000
    with sessions() as session:
        assert session.get(Topup, topup_id).status == "succeeded"
        assert session.get(Transfer, transfer_id).idempotency_key == f"topup:{topup_id}"
        shown = review.show(session, item)
        audit = session.scalar(select(AuditEntry).where(AuditEntry.subject == item))
        assert item not in {found.id for found in review.list_items(session, limit=500)}
    assert shown["status"] == "resolved"
    assert shown["resolution"]["actor"] == "ops:ada"
    assert (audit.actor, audit.action) == ("ops:ada", "review.resolve.apply_to_topup")
    assert audit.details["note"] == "ticket 42: the customer's"


def test_a_resolution_happens_once_even_when_two_operators_race(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    item, _ = parked(sessions, reference=str(uuid.uuid4()))
    start = threading.Barrier(2)

    def resolve(actor):
        start.wait()
        try:
            with sessions.begin() as session:
                review.resolve(
                    session,
                    item,
                    action=ReviewAction.APPLY_TO_TOPUP,
                    note="race",
                    actor=actor,
                    topup_id=topup_id,
                )
            return "resolved"
        except ReviewAlreadyResolved:
            return "refused"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(resolve, ["ops:a", "ops:b"]))

    assert outcomes == ["refused", "resolved"]
    assert balance_of(wallet).balance_minor == 5000


def test_a_late_webhook_after_a_resolution_credits_nothing_more(sessions, topup, balance_of):
    topup_id, wallet = topup(5000)
    item, event = parked(sessions, reference="wrong")
    with sessions.begin() as session:
        review.resolve(
            session,
            item,
            action=ReviewAction.APPLY_TO_TOPUP,
            note="known payer",
            actor="ops",
            topup_id=topup_id,
        )
    late = inbox.IncomingEvent(
        **{**_fields(event), "event_id": f"evt_{uuid.uuid4().hex}", "reference": str(topup_id)}
    )
    with sessions.begin() as session:
        inbox_id = inbox.record(session, late).inbox_id
    with sessions.begin() as session:
        settlement.apply_inbox(session, now=NOW, only=[inbox_id])

    assert balance_of(wallet).balance_minor == 5000
    with sessions() as session:
        assert (
            session.get(InboxEvent, inbox_id).status_reason == "this payment was credited already"
        )


def test_credit_a_wallet_and_dismiss(sessions, make_wallet, balance_of):
    wallet = make_wallet()
    credited, _ = parked(sessions, reference="gift", amount_minor=700)
    dismissed, _ = parked(sessions, reference="test payment", amount_minor=900)

    with sessions.begin() as session:
        review.resolve(
            session,
            credited,
            action=ReviewAction.CREDIT_WALLET,
            note="gift card",
            actor="ops",
            wallet_id=wallet,
        )
        review.resolve(
            session, dismissed, action=ReviewAction.DISMISS, note="refunded by hand", actor="ops"
        )

    assert balance_of(wallet).balance_minor == 700
    with sessions() as session:
        assert review.show(session, dismissed)["resolution"]["transfer_id"] is None


def test_a_wallet_in_another_currency_is_refused_and_nothing_changes(sessions, make_wallet):
    wallet = make_wallet(currency="USD")
    item, _ = parked(sessions, reference="x", currency="ZAR")

    with pytest.raises(ReviewActionRefused, match="is in USD"), sessions.begin() as session:
        review.resolve(
            session,
            item,
            action=ReviewAction.CREDIT_WALLET,
            note="n",
            actor="ops",
            wallet_id=wallet,
        )

    with sessions() as session:
        assert review.show(session, item)["status"] == "open"


def test_a_payload_conflict_is_an_item_that_can_only_be_dismissed(sessions):
    _item, event = parked(sessions, reference="first")
    with sessions.begin() as session:
        recorded = inbox.record(
            session, inbox.IncomingEvent(**{**_fields(event), "payload": {"other": True}})
        )
    assert recorded.outcome is inbox.Outcome.CONFLICT
    with sessions() as session:
        conflicts = [
            found
            for found in review.list_items(session, limit=500)
            if found.code is ReviewCode.PAYLOAD_CONFLICT and found.event_id == event.event_id
        ]
    [conflict] = conflicts

    with pytest.raises(ReviewActionRefused, match="only be dismissed"), sessions.begin() as s:
        review.resolve(
            s,
            conflict.id,
            action=ReviewAction.CREDIT_WALLET,
            note="n",
            actor="o",
            wallet_id=uuid.uuid4(),
        )
    with sessions.begin() as session:
        review.resolve(
            session, conflict.id, action=ReviewAction.DISMISS, note="replay", actor="ops"
        )
    with pytest.raises(ReviewAlreadyResolved), sessions.begin() as session:
        review.resolve(session, conflict.id, action=ReviewAction.DISMISS, note="again", actor="ops")


def test_walletctl_review_list_show_resolve(sessions, topup, database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    topup_id, _ = topup(5000)
    item, _ = parked(sessions, reference="nope")
    runner = CliRunner()

    listed = runner.invoke(
        cli, ["review", "list", "--reason", "unknown_reference", "--limit", "500"]
    )
    shown = runner.invoke(cli, ["review", "show", item])
    resolved = runner.invoke(
        cli,
        [
            "review",
            "resolve",
            item,
            "--apply-to-topup",
            str(topup_id),
            "--note",
            "matched by email",
        ],
    )
    again = runner.invoke(cli, ["review", "resolve", item, "--dismiss", "--note", "again"])
    neither = runner.invoke(cli, ["review", "resolve", item, "--note", "what?"])

    assert item in listed.output
    assert "no top-up matches reference 'nope'" in shown.output
    assert resolved.exit_code == 0, resolved.output
    assert "apply_to_topup; transfer" in resolved.output
    assert again.exit_code == 1
    assert "resolved already" in again.output
    assert neither.exit_code == 2
    assert "exactly one of" in neither.output


def token(scope):
    claims = {"sub": "ops-console", "scope": scope, "exp": int(time.time()) + 300}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@pytest.fixture
def client(database_url, broker_url):
    settings = ReceiverSettings.from_env(
        {
            "DATABASE_URL": database_url,
            "BROKER_URL": broker_url,
            "WALLETPIPE_JWT_SECRET": SECRET,
            "STRIPE_WEBHOOK_SECRET": "whsec_review_tests",
            "API_RATE_LIMIT": "100000/minute",
        }
    )
    return create_app(settings).test_client()


def test_the_admin_api_lists_shows_and_resolves_once(client, sessions, make_wallet, balance_of):
    wallet = make_wallet()
    item, _ = parked(sessions, reference="api", amount_minor=1200)
    admin = token("admin")

    listed = client.get("/api/v1/review-items?reason=unknown_reference&limit=500", headers=admin)
    shown = client.get(f"/api/v1/review-items/{item}", headers=admin)
    body = {"action": "credit_wallet", "wallet_id": str(wallet), "note": "support ticket"}
    first = client.post(f"/api/v1/review-items/{item}/resolve", json=body, headers=admin)
    second = client.post(f"/api/v1/review-items/{item}/resolve", json=body, headers=admin)

    assert item in {found["id"] for found in listed.get_json()["items"]}
    assert shown.get_json()["event"]["amount_minor"] == 1200
    assert first.status_code == 200, first.get_json()
    assert first.get_json()["actor"] == "api:ops-console"
    assert second.status_code == 409
    assert second.headers["Content-Type"] == "application/problem+json"
    assert balance_of(wallet).balance_minor == 1200


def test_the_review_api_is_for_admins_and_refuses_bad_input(client, sessions):
    item, _ = parked(sessions, reference="api")
    reader = token("wallets:read wallets:write")
    admin = token("admin")

    assert client.get("/api/v1/review-items", headers=reader).status_code == 403
    assert client.get("/api/v1/review-items/event-x", headers=admin).status_code == 404
    assert client.get("/api/v1/review-items?reason=whatever", headers=admin).status_code == 400
    missing_wallet = client.post(
        f"/api/v1/review-items/{item}/resolve",
        json={"action": "credit_wallet", "note": "n"},
        headers=admin,
    )
    assert missing_wallet.status_code == 400


def test_metrics_count_open_items_per_reason_code(client, sessions):
    parked(sessions, reference="metrics")

    text = client.get("/metrics").get_data(as_text=True)

    [line] = [
        row
        for row in text.splitlines()
        if row.startswith('walletpipe_review_items{reason="unknown_reference"}')
    ]
    assert float(line.split()[-1]) >= 1
    assert 'walletpipe_review_items{reason="refund_exceeds_credit"}' in text  # zero, not absent


def test_every_reason_the_settlement_writes_has_a_code():
    reasons = [
        "no top-up matches reference 'x'",
        "top-up 1 was to be paid via stripe, not paystack",
        "top-up 1 is in ZAR, the event in USD",
        "captured 10 but top-up 1 was for 20",
        "top-up 1 was settled by payment pi_1 already",
        "payment pi_1 settled top-up 2",
        "the event names no gateway payment",
        "the refund carries no amount",
        "refunds of top-up 1 would exceed the 10 credited",
        "a refund of top-up 1 failed after its reversal",
        "refused by the ledger: InsufficientFunds: no",
        "report: the ledger credited 10 ZAR",
    ]
    from ledger.review_reason import code_of

    codes = [code_of(reason) for reason in reasons]
    assert ReviewCode.OTHER not in codes
    assert len(set(codes)) == len(reasons)
    assert code_of("something new") is ReviewCode.OTHER


def test_sql_and_python_agree_on_codes(sessions):
    from sqlalchemy import text

    from ledger.review_reason import PATTERNS, code_of, code_sql

    with sessions() as session:
        for pattern, code in PATTERNS:
            reason = pattern.replace("%", "x")
            in_sql = session.execute(text(f"SELECT {code_sql(':r')}"), {"r": reason}).scalar()
            assert in_sql == code.value == code_of(reason).value


def _fields(event):
    return {name: getattr(event, name) for name in event.__dataclass_fields__}
