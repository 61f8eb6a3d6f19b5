"""Hourly billing: every hour a resource runs is charged once, whenever and however often the
tick runs; debt leads to a grace period, then a suspension request, and a top-up to resume;
low balances are announced once per crossing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from ledger import provisioning
from ledger.adjustment import Direction, adjust
from ledger.models import OutboxEvent, Transfer
from ledger.plan import HOURS_PER_MONTH, price_of_hour, price_of_hours
from ledger.settings import BillingSettings
from ledger.usage import bill_usage_record, record_usage

# Billing, not admission, is tested here: a day of reserve keeps the wallets small.
SETTINGS = BillingSettings(reserve_hours=24)
SMALL_MONTH_MINOR = 15_000
HOUR = timedelta(hours=1)


def running(sessions, wallet, plan="small"):
    """A Small resource decided, confirmed now; returns (request id, activation time)."""
    with sessions.begin() as session:
        request_id = provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=f"vm-{uuid.uuid4()}", plan=plan
        ).id
    started = datetime.now(UTC)
    with sessions.begin() as session:
        assert provisioning.decide(session, request_id, now=started, settings=SETTINGS).status == (
            "approved"
        )
    with sessions.begin() as session:
        provisioning.confirm(session, request_id, now=started)
    return request_id, started


def tick(sessions, now):
    with sessions.begin() as session:
        charged = provisioning.bill_due(session, now=now)
        provisioning.review_debts(session, now=now, settings=SETTINGS, charged=set(charged))
        provisioning.review_low_balance(session, set(charged), settings=SETTINGS)
    return charged


def charged_to(sessions, wallet):
    with sessions() as session:
        rows = session.execute(
            select(func.count(), func.coalesce(func.sum(Transfer.amount_minor), 0)).where(
                Transfer.debit_account_id == wallet,
                Transfer.kind.in_(("posted", "post_pending")),
            )
        ).one()
    return tuple(rows)


def events(sessions, wallet, event_type):
    with sessions() as session:
        return session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.wallet_id == wallet, OutboxEvent.event_type == event_type)
            .order_by(OutboxEvent.id)
        ).all()


def test_hour_prices_add_up_to_the_month_exactly():
    hours = [price_of_hour(SMALL_MONTH_MINOR, n) for n in range(1, HOURS_PER_MONTH + 1)]
    assert sum(hours) == SMALL_MONTH_MINOR
    assert set(hours) == {20, 21}  # R150 / 730 h = 20.547 cents: no fraction lost or made
    assert price_of_hours(SMALL_MONTH_MINOR, 1, 2 * HOURS_PER_MONTH) == 2 * SMALL_MONTH_MINOR


def test_thirty_hours_with_the_scheduler_down_for_ten_bill_thirty_hours(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=100_000)
    request_id, started = running(sessions, wallet)
    for hour in range(1, 11):  # ticking every hour for ten hours
        tick(sessions, started + hour * HOUR + timedelta(seconds=5))
    # ... then the scheduler is down for ten hours; it comes back at hour 20 and catches up.
    for hour in range(20, 31):
        tick(sessions, started + hour * HOUR + timedelta(seconds=5))
    with sessions.begin() as session:
        provisioning.release(session, request_id, now=started + 30 * HOUR)
    assert charged_to(sessions, wallet) == (30, price_of_hours(SMALL_MONTH_MINOR, 1, 30))
    assert balance_of(wallet).balance_minor == 100_000 - price_of_hours(SMALL_MONTH_MINOR, 1, 30)


def test_the_same_tick_twice_bills_once(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100_000)
    _, started = running(sessions, wallet)
    at = started + 5 * HOUR + timedelta(minutes=1)
    tick(sessions, at)
    tick(sessions, at)
    tick(sessions, at - HOUR)  # a late, older tick changes nothing either
    assert charged_to(sessions, wallet) == (5, price_of_hours(SMALL_MONTH_MINOR, 1, 5))


def test_a_month_of_a_small_vm_costs_exactly_r150(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=20_000)
    request_id, started = running(sessions, wallet)
    for day in range(1, 31):
        tick(sessions, started + day * 24 * HOUR)
    with sessions.begin() as session:
        provisioning.release(session, request_id, now=started + HOURS_PER_MONTH * HOUR)
    assert charged_to(sessions, wallet) == (HOURS_PER_MONTH, SMALL_MONTH_MINOR)
    assert balance_of(wallet).balance_minor == 20_000 - 15_000


def test_the_hour_under_way_at_release_is_charged_whole(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100_000)
    request_id, started = running(sessions, wallet)
    with sessions.begin() as session:
        provisioning.release(session, request_id, now=started + 2 * HOUR + timedelta(minutes=1))
    tick(sessions, started + 10 * HOUR)  # released: billing has stopped
    assert charged_to(sessions, wallet)[0] == 3


def test_debt_brings_grace_then_a_suspension_request_and_a_top_up_allows_resume(
    sessions, make_wallet, balance_of
):
    reserve = price_of_hours(SMALL_MONTH_MINOR, 1, SETTINGS.reserve_hours)
    wallet = make_wallet(funded_minor=reserve)  # just enough to be approved
    request_id, started = running(sessions, wallet)
    in_debt_at = started + (SETTINGS.reserve_hours + 2) * HOUR
    tick(sessions, in_debt_at)
    assert balance_of(wallet).balance_minor < 0  # consumed hours are charged regardless
    row = provisioning_row(sessions, request_id)
    assert row.grace_started_at is not None
    assert row.suspend_requested_at is None
    assert [e.event_type for e in events(sessions, wallet, "wallet.negative")] == [
        "wallet.negative"
    ]

    after_grace = in_debt_at + timedelta(seconds=SETTINGS.grace_s + 1)
    tick(sessions, after_grace)
    tick(sessions, after_grace + timedelta(minutes=5))
    [suspend] = events(sessions, wallet, "resource.suspend_requested")
    assert suspend.payload["request_id"] == str(request_id)
    assert suspend.payload["debt_minor"] > 0

    with sessions.begin() as session:
        adjust(
            session,
            wallet_id=wallet,
            direction=Direction.CREDIT,
            amount_minor=-balance_of(wallet).balance_minor + 10_000,
            reason="top-up covers the debt",
            actor="tests",
        )
    tick(sessions, after_grace + timedelta(minutes=10))
    tick(sessions, after_grace + timedelta(minutes=15))
    [resume] = events(sessions, wallet, "resource.resume_allowed")
    assert resume.payload["request_id"] == str(request_id)
    row = provisioning_row(sessions, request_id)
    assert (row.grace_started_at, row.suspend_requested_at) == (None, None)


def provisioning_row(sessions, request_id):
    with sessions() as session:
        return provisioning.get_provisioning_request(session, request_id)


def test_low_balance_is_announced_once_per_threshold_crossing(sessions, make_wallet, balance_of):
    # Enough for the reserve and about 100 hours of a Small VM.
    wallet = make_wallet(funded_minor=price_of_hours(SMALL_MONTH_MINOR, 1, 100))
    _, started = running(sessions, wallet)
    tick(sessions, started + 2 * HOUR)
    assert events(sessions, wallet, "wallet.low_balance") == []
    tick(sessions, started + 30 * HOUR)  # about 70 h left: below 72
    tick(sessions, started + 31 * HOUR)
    assert [
        e.payload["threshold_hours"] for e in events(sessions, wallet, "wallet.low_balance")
    ] == [72]
    tick(sessions, started + 80 * HOUR)  # about 20 h left: below 24 too
    alerts = events(sessions, wallet, "wallet.low_balance")
    assert [e.payload["threshold_hours"] for e in alerts] == [72, 24]
    assert alerts[-1].payload["hours_to_zero"] < 24
    with sessions.begin() as session:  # topped up well above both thresholds
        adjust(
            session,
            wallet_id=wallet,
            direction=Direction.CREDIT,
            amount_minor=price_of_hours(SMALL_MONTH_MINOR, 1, 500),
            reason="top-up",
            actor="tests",
        )
    tick(sessions, started + 81 * HOUR)
    assert len(events(sessions, wallet, "wallet.low_balance")) == 2
    with sessions() as session:
        burn = provisioning.burn_rate(session, wallet)
    assert burn.burn_minor_per_month == SMALL_MONTH_MINOR
    assert burn.hours_to_zero == balance_of(wallet).available_minor * HOURS_PER_MONTH // 15_000


def test_a_usage_record_is_billed_once_even_into_debt(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=100)
    with sessions.begin() as session:
        record_usage(
            session,
            usage_id="egress-2026-12-01",
            wallet_id=wallet,
            resource_id="vm-1",
            description="egress 10 GB",
            amount_minor=250,
            occurred_at=datetime.now(UTC),
        )
    for _ in range(2):
        with sessions.begin() as session:
            assert bill_usage_record(session, wallet, "egress-2026-12-01").status == "billed"
    assert balance_of(wallet).balance_minor == -150
    assert len(events(sessions, wallet, "wallet.negative")) == 1


def test_a_long_usage_id_is_billed_under_a_bounded_key(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1000)
    usage_id = "u" * 255
    with sessions.begin() as session:
        record_usage(
            session,
            usage_id=usage_id,
            wallet_id=wallet,
            resource_id="vm-1",
            description="metered",
            amount_minor=100,
            occurred_at=datetime.now(UTC),
        )
    for _ in range(2):
        with sessions.begin() as session:
            bill_usage_record(session, wallet, usage_id)
    assert balance_of(wallet).balance_minor == 900


def test_low_balance_alerts_again_after_a_top_up_and_a_new_crossing(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=price_of_hours(SMALL_MONTH_MINOR, 1, 60))
    _, started = running(sessions, wallet)
    tick(sessions, started + 2 * HOUR)  # about 58 h left: below 72
    assert len(events(sessions, wallet, "wallet.low_balance")) == 1
    with sessions.begin() as session:
        adjust(
            session,
            wallet_id=wallet,
            direction=Direction.CREDIT,
            amount_minor=price_of_hours(SMALL_MONTH_MINOR, 1, 40),
            reason="top-up to about 98 h",
            actor="tests",
        )
    tick(sessions, started + 3 * HOUR)  # above 72 again: the alert is re-armed
    assert len(events(sessions, wallet, "wallet.low_balance")) == 1
    tick(sessions, started + 30 * HOUR)  # below 72 a second time
    assert [
        e.payload["threshold_hours"] for e in events(sessions, wallet, "wallet.low_balance")
    ] == [
        72,
        72,
    ]
