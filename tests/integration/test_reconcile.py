"""Reconciling a gateway's report: every line matched to the ledger, and what is missing
repaired through the inbox exactly once, however often the report is applied and whatever a
late webhook for the same payment does at the same moment."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from ledger import inbox, reconcile, settlement
from ledger.models import InboxEvent, Topup, Transfer
from walletctl.cli import cli
from webhook_receiver.gateways import stripe_report

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HEADER = (
    "balance_transaction_id,created_utc,currency,gross,fee,net,reporting_category,source_id,"
    "charge_id,payment_intent_id,payment_metadata[topup_id]"
)


def stripe_csv(*rows):
    """An itemized balance change report: (category, source, intent, topup, gross major)."""
    lines = [HEADER]
    for category, source, intent, topup_id, gross in rows:
        fee = "1.00" if category == "charge" else "0.00"
        lines.append(
            f"txn_{uuid.uuid4().hex[:20]},2026-11-23 10:00:00,zar,{gross},{fee},{gross},"
            f"{category},{source},ch_{intent[3:]},{intent},{topup_id or ''}"
        )
    return ("\n".join(lines) + "\n").encode()


def webhook(sessions, *, kind, payment_id, amount_minor, reference=None, refund_id=None):
    """A verified Stripe webhook stored in the inbox, as the receiver would store it."""
    with sessions.begin() as session:
        return inbox.record(
            session,
            inbox.IncomingEvent(
                gateway="stripe",
                event_id=f"evt_{uuid.uuid4().hex}",
                kind=kind,
                actionable=True,
                payment_id=payment_id,
                amount_minor=amount_minor,
                currency="ZAR",
                reference=None if reference is None else str(reference),
                payment_method=None,
                occurred_at=None,
                payload={"id": str(uuid.uuid4())},
                body=b"{}",
                headers={},
                refund_id=refund_id,
            ),
        ).inbox_id


def apply_webhook(sessions, inbox_id):
    with sessions.begin() as session:
        settlement.apply_inbox(session, now=NOW, only=[inbox_id])


def reconcile_file(sessions, report, *, apply):
    lines = stripe_report.read(report)
    with sessions.begin() as session:
        result = reconcile.compare(session, "stripe", lines)
        if apply:
            reconcile.repair(session, "stripe", lines, result, now=NOW)
        return result


def credits_of(sessions, topup_id):
    with sessions() as session:
        return session.scalar(
            select(func.count()).where(Transfer.idempotency_key == f"topup:{topup_id}")
        )


def intent():
    return f"pi_{uuid.uuid4().hex[:20]}"


def test_each_line_is_matched_missing_or_mismatched(sessions, topup):
    credited, _ = topup(5000)
    lost, _ = topup(3000)
    short, _ = topup(4000)
    paid, lost_payment, short_payment = intent(), intent(), intent()
    apply_webhook(
        sessions,
        webhook(
            sessions,
            kind="payment_succeeded",
            payment_id=paid,
            amount_minor=5000,
            reference=credited,
        ),
    )
    apply_webhook(
        sessions,
        webhook(
            sessions,
            kind="payment_succeeded",
            payment_id=short_payment,
            amount_minor=4000,
            reference=short,
        ),
    )
    report = stripe_csv(
        ("charge", f"ch_{paid[3:]}", paid, credited, "50.00"),
        ("charge", f"ch_{lost_payment[3:]}", lost_payment, lost, "30.00"),
        ("charge", f"ch_{short_payment[3:]}", short_payment, short, "45.00"),
        ("charge", "ch_unknown", intent(), None, "12.00"),
        ("refund", f"re_{uuid.uuid4().hex[:20]}", paid, credited, "-10.00"),
        ("payout", "po_1", "pi_none", None, "-100.00"),
    )

    result = reconcile_file(sessions, report, apply=False)

    assert [entry["payment_id"] for entry in result.matched] == [paid]
    missing = {(entry["kind"], entry["payment_id"]) for entry in result.missing_in_ledger}
    assert ("capture", lost_payment) in missing
    assert ("refund", paid) in missing  # refunded at Stripe, not reversed here
    assert [entry["payment_id"] for entry in result.mismatched] == [short_payment]
    assert result.mismatched[0]["detail"] == "the ledger credited 4000 ZAR"
    assert result.fees == {"ZAR": 400}
    with sessions() as session:
        assert session.get(Topup, lost).status == "pending"  # comparing changes nothing


def test_applying_a_report_twice_repairs_once(sessions, topup, balance_of):
    lost, wallet = topup(3000)
    refunded, refunded_wallet = topup(2000)
    lost_payment, refunded_payment = intent(), intent()
    apply_webhook(
        sessions,
        webhook(
            sessions,
            kind="payment_succeeded",
            payment_id=refunded_payment,
            amount_minor=2000,
            reference=refunded,
        ),
    )
    refund_id = f"re_{uuid.uuid4().hex[:20]}"
    report = stripe_csv(
        ("charge", f"ch_{lost_payment[3:]}", lost_payment, lost, "30.00"),
        ("refund", refund_id, refunded_payment, refunded, "-5.00"),
    )

    first = reconcile_file(sessions, report, apply=True)
    second = reconcile_file(sessions, report, apply=True)

    assert sorted(repair["outcome"] for repair in first.repairs) == ["applied", "applied"]
    assert balance_of(wallet).balance_minor == 3000
    assert balance_of(refunded_wallet).balance_minor == 1500
    assert credits_of(sessions, lost) == 1
    assert {entry["payment_id"] for entry in second.matched} == {lost_payment, refunded_payment}
    assert second.missing_in_ledger == []
    assert second.repairs == []
    with sessions() as session:
        assert session.get(Topup, lost).payment_id == lost_payment
        assert session.get(Topup, refunded).refunded_minor == 500


def test_a_line_without_a_known_reference_goes_to_review(sessions):
    stray = intent()
    report = stripe_csv(("charge", f"ch_{stray[3:]}", stray, None, "12.00"))

    result = reconcile_file(sessions, report, apply=True)

    [repair] = result.repairs
    assert repair["outcome"] == "needs_review"
    with sessions() as session:
        event = session.get(InboxEvent, repair["inbox_id"])
        assert event.event_id == f"report:capture:{stray}"
        assert event.status_reason == "no top-up matches reference None"


def test_a_mismatch_goes_to_review_and_is_not_parked_twice(sessions, topup):
    short, _ = topup(4000)
    payment = intent()
    apply_webhook(
        sessions,
        webhook(
            sessions,
            kind="payment_succeeded",
            payment_id=payment,
            amount_minor=4000,
            reference=short,
        ),
    )
    report = stripe_csv(("charge", f"ch_{payment[3:]}", payment, short, "45.00"))

    first = reconcile_file(sessions, report, apply=True)
    second = reconcile_file(sessions, report, apply=True)

    assert first.repairs[0]["outcome"] == "needs_review"
    assert second.repairs[0]["outcome"] == "recorded before (duplicate)"
    with sessions() as session:
        reason = session.get(InboxEvent, first.repairs[0]["inbox_id"]).status_reason
    assert reason == "report: the ledger credited 4000 ZAR"


@pytest.mark.parametrize("webhook_first", [True, False])
def test_a_late_webhook_racing_the_report_credits_once(sessions, topup, balance_of, webhook_first):
    topup_id, wallet = topup(3000)
    payment = intent()
    report = stripe_csv(("charge", f"ch_{payment[3:]}", payment, topup_id, "30.00"))
    late = webhook(
        sessions,
        kind="payment_succeeded",
        payment_id=payment,
        amount_minor=3000,
        reference=topup_id,
    )
    start = threading.Barrier(2)

    def by_webhook():
        start.wait()
        apply_webhook(sessions, late)

    def by_report():
        start.wait()
        reconcile_file(sessions, report, apply=True)

    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(f)
            for f in ((by_webhook, by_report) if webhook_first else (by_report, by_webhook))
        ]
        for job in jobs:
            job.result()
    apply_webhook(sessions, late)  # in case the report's transaction held it when it looked

    assert balance_of(wallet).balance_minor == 3000
    assert credits_of(sessions, topup_id) == 1
    with sessions() as session:
        statuses = session.scalars(
            select(InboxEvent.status).where(InboxEvent.payment_id == payment)
        ).all()
    assert sorted(statuses) == ["applied", "applied"]  # one credited, one found it done


def test_a_refund_told_by_webhook_and_by_report_reverses_once(sessions, topup, balance_of):
    topup_id, wallet = topup(3000)
    payment, refund_id = intent(), f"re_{uuid.uuid4().hex[:20]}"
    apply_webhook(
        sessions,
        webhook(
            sessions,
            kind="payment_succeeded",
            payment_id=payment,
            amount_minor=3000,
            reference=topup_id,
        ),
    )
    late = webhook(
        sessions,
        kind="refund_succeeded",
        payment_id=payment,
        amount_minor=1000,
        refund_id=refund_id,
    )
    report = stripe_csv(("refund", refund_id, payment, topup_id, "-10.00"))
    start = threading.Barrier(2)

    def by_webhook():
        start.wait()
        apply_webhook(sessions, late)

    def by_report():
        start.wait()
        reconcile_file(sessions, report, apply=True)

    with ThreadPoolExecutor(2) as pool:
        for job in [pool.submit(by_webhook), pool.submit(by_report)]:
            job.result()
    apply_webhook(sessions, late)

    assert balance_of(wallet).balance_minor == 2000
    with sessions() as session:
        assert session.get(Topup, topup_id).refunded_minor == 1000


def test_walletctl_reconcile_stores_every_run(sessions, topup, database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    lost, _ = topup(3000)
    payment = intent()
    report = tmp_path / "balance_change_from_activity.csv"
    report.write_bytes(stripe_csv(("charge", f"ch_{payment[3:]}", payment, lost, "30.00")))
    runner = CliRunner()

    compared = runner.invoke(cli, ["reconcile", "stripe", str(report), "--json"])
    applied = runner.invoke(cli, ["reconcile", "stripe", str(report), "--apply", "--json"])
    listed = runner.invoke(cli, ["--json", "reconcile", "list"])

    assert compared.exit_code == 0, compared.output
    assert applied.exit_code == 0, applied.output
    first, second = json.loads(compared.output), json.loads(applied.output)
    assert set(reconcile.RESULT_KEYS) <= first.keys()
    assert [entry["payment_id"] for entry in first["missing_in_ledger"]] == [payment]
    assert [repair["outcome"] for repair in second["repairs"]] == ["applied"]
    runs = {run["id"]: run for run in json.loads(listed.output)["runs"]}
    assert runs[first["run"]]["applied"] is False
    assert runs[second["run"]]["summary"]["repairs"] == {"applied": 1}
    shown = runner.invoke(cli, ["--json", "reconcile", "show", str(second["run"])])
    assert json.loads(shown.output)["result"]["repairs"][0]["line_id"]


def test_walletctl_reconcile_says_what_is_wrong_with_a_file(database_url, monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", database_url)
    report = tmp_path / "not-a-report.csv"
    report.write_text("date,amount\n2026-11-23,10\n")

    answer = CliRunner().invoke(cli, ["reconcile", "stripe", str(report)])

    assert answer.exit_code == 1
    assert "is not a stripe report" in answer.output
    assert "no column" in answer.output


def test_a_dispute_goes_to_review_and_is_matched_once_resolved(sessions, topup, balance_of):
    from ledger import review
    from ledger.models import ReviewAction

    topup_id, wallet = topup(3000)
    payment = intent()
    apply_webhook(
        sessions,
        webhook(
            sessions,
            kind="payment_succeeded",
            payment_id=payment,
            amount_minor=3000,
            reference=topup_id,
        ),
    )
    report = stripe_csv(("dispute", f"du_{uuid.uuid4().hex[:20]}", payment, topup_id, "-30.00"))

    first = reconcile_file(sessions, report, apply=True)
    [repair] = first.repairs
    assert repair["outcome"] == "needs_review"
    with sessions.begin() as session:
        review.resolve(
            session,
            f"event-{repair['inbox_id']}",
            action=ReviewAction.APPLY_TO_TOPUP,
            note="chargeback lost",
            actor="ops",
            topup_id=topup_id,
        )
    second = reconcile_file(sessions, report, apply=False)

    assert balance_of(wallet).balance_minor == 0  # the chargeback reversed, forced
    assert [entry["detail"] for entry in second.matched] == ["resolved in review"]
    assert second.missing_in_ledger == []
