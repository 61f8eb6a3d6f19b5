"""No VM without funds: each request decided once, with a hold placed in the same transaction
as the check; confirmed, the hold pays the first hour; released or expired, it is voided."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from ledger import provisioning
from ledger.errors import PendingAlreadyResolved, ProvisioningStateError, ResourceBusy
from ledger.models import OutboxEvent, Transfer
from ledger.plan import PlanSpec, price_of_hour, price_of_hours, set_plan
from ledger.settings import BillingSettings
from ledger.transfer import void_expired

SETTINGS = BillingSettings()
SEED_PLANS = ("small", "medium", "large", "enterprise")


def plan_costing(sessions, monthly_minor):
    """A ZAR plan of its own whose month costs `monthly_minor`."""
    plan_id = f"vm-{uuid.uuid4().hex[:12]}"
    with sessions.begin() as session:
        set_plan(session, PlanSpec(plan_id, "Test VM", 2, 4, monthly_minor, "ZAR"))
    return plan_id


def request(sessions, wallet, plan="small"):
    with sessions.begin() as session:
        return provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=f"vm-{uuid.uuid4()}", plan=plan
        ).id


def decide(sessions, request_id, now=None):
    with sessions.begin() as session:
        row = provisioning.decide(
            session, request_id, now=now or datetime.now(UTC), settings=SETTINGS
        )
        return row.status, row.reason, row.shortfall_minor


def shown(sessions, request_id):
    with sessions() as session:
        return provisioning.get_provisioning_request(session, request_id)


def test_r10000_covers_a_r500_vm(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=1_000_000)
    request_id = request(sessions, wallet, plan_costing(sessions, 50_000))
    assert decide(sessions, request_id) == ("approved", None, None)
    reserve = price_of_hours(50_000, 1, SETTINGS.reserve_hours)
    assert balance_of(wallet).held_minor == reserve
    assert balance_of(wallet).available_minor == 1_000_000 - reserve


def test_r5_does_not_cover_a_r1000_vm(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=500)
    request_id = request(sessions, wallet, plan_costing(sessions, 100_000))
    reserve = price_of_hours(100_000, 1, SETTINGS.reserve_hours)
    assert decide(sessions, request_id) == ("rejected", "insufficient_funds", reserve - 500)
    assert balance_of(wallet).held_minor == 0


@pytest.mark.parametrize("plan", SEED_PLANS)
def test_a_small_balance_covers_none_of_the_four_plans(sessions, make_wallet, plan):
    wallet = make_wallet(funded_minor=100)  # R1
    assert decide(sessions, request(sessions, wallet, plan))[:2] == (
        "rejected",
        "insufficient_funds",
    )


def test_the_seed_plans_cost_r150_to_r1200_a_month(sessions):
    from ledger.plan import list_plans

    with sessions() as session:
        seeded = {p.id: (p.monthly_price_minor, p.currency) for p in list_plans(session)}
    assert {plan: seeded[plan] for plan in SEED_PLANS} == {
        "small": (15_000, "ZAR"),
        "medium": (30_000, "ZAR"),
        "large": (60_000, "ZAR"),
        "enterprise": (120_000, "ZAR"),
    }


def test_a_request_is_decided_once_and_announced_once(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100_000)
    request_id = request(sessions, wallet)
    for _ in range(3):  # the broker and the relay deliver at least once
        assert decide(sessions, request_id)[0] == "approved"
    with sessions() as session:
        holds = session.scalar(
            select(func.count())
            .select_from(Transfer)
            .where(Transfer.idempotency_key == f"provisioning:{request_id}:hold")
        )
        decided = session.scalars(
            select(OutboxEvent).where(OutboxEvent.key == f"provisioning.decided:{request_id}")
        ).all()
    assert holds == 1
    [event] = decided
    assert event.payload["status"] == "approved"
    assert event.payload["reserve_minor"] == price_of_hours(15_000, 1, SETTINGS.reserve_hours)


def test_unknown_plans_and_other_currencies_are_rejected(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100_000)
    assert decide(sessions, request(sessions, wallet, "no-such-plan"))[1] == "unknown_plan"
    usd = make_wallet(funded_minor=100_000, currency="USD")
    assert decide(sessions, request(sessions, usd, "small"))[1] == "currency_mismatch"


def test_a_resource_has_one_live_request_at_a_time(sessions, make_wallet):
    wallet = make_wallet(funded_minor=100_000)
    resource = f"vm-{uuid.uuid4()}"
    with sessions.begin() as session:
        first = provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=resource, plan="small"
        ).id
    with pytest.raises(ResourceBusy), sessions.begin() as session:
        provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=resource, plan="small"
        )
    decide(sessions, first)
    with sessions.begin() as session:
        provisioning.release(session, first, now=datetime.now(UTC))
    with sessions.begin() as session:  # released: the resource may be provisioned again
        provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=resource, plan="small"
        )


def test_confirming_posts_the_first_hour_and_releases_the_rest(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=100_000)
    request_id = request(sessions, wallet)
    decide(sessions, request_id)
    for _ in range(2):  # the platform may confirm twice
        with sessions.begin() as session:
            assert provisioning.confirm(session, request_id, now=datetime.now(UTC)).status == (
                "active"
            )
    first_hour = price_of_hour(15_000, 1)
    assert (balance_of(wallet).balance_minor, balance_of(wallet).held_minor) == (
        100_000 - first_hour,
        0,
    )
    assert shown(sessions, request_id).billed_hours == 1


def test_releasing_an_approved_request_voids_its_hold(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=100_000)
    request_id = request(sessions, wallet)
    decide(sessions, request_id)
    for _ in range(2):
        with sessions.begin() as session:
            provisioning.release(session, request_id, now=datetime.now(UTC))
    assert (balance_of(wallet).balance_minor, balance_of(wallet).held_minor) == (100_000, 0)
    with pytest.raises(ProvisioningStateError), sessions.begin() as session:
        provisioning.confirm(session, request_id, now=datetime.now(UTC))


def test_a_rejected_request_can_neither_be_confirmed_nor_released(sessions, make_wallet):
    wallet = make_wallet()
    request_id = request(sessions, wallet)
    decide(sessions, request_id)
    for act in (provisioning.confirm, provisioning.release):
        with pytest.raises(ProvisioningStateError), sessions.begin() as session:
            act(session, request_id, now=datetime.now(UTC))


def test_a_hold_nobody_confirms_expires_and_its_request_is_released(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=100_000)
    request_id = request(sessions, wallet)
    decide(sessions, request_id)
    later = datetime.now(UTC) + timedelta(seconds=SETTINGS.confirm_timeout_s + 1)
    with sessions.begin() as session:
        voided = void_expired(session, later)
        assert provisioning.release_expired(session, voided, now=later) >= 1
    row = shown(sessions, request_id)
    assert (row.status, row.reason) == ("released", "confirmation_timeout")
    assert balance_of(wallet).held_minor == 0
    with pytest.raises(ProvisioningStateError), sessions.begin() as session:
        provisioning.confirm(session, request_id, now=later)


def test_a_confirm_racing_the_expiry_loses_cleanly(sessions, make_wallet, balance_of):
    wallet = make_wallet(funded_minor=100_000)
    request_id = request(sessions, wallet)
    decide(sessions, request_id)
    later = datetime.now(UTC) + timedelta(seconds=SETTINGS.confirm_timeout_s + 1)
    with sessions.begin() as session:  # voided, but its request not yet released
        void_expired(session, later)
    with pytest.raises(PendingAlreadyResolved), sessions.begin() as session:
        provisioning.confirm(session, request_id, now=later)
    assert balance_of(wallet).balance_minor == 100_000


def test_a_release_that_read_the_request_before_its_decision_still_voids_the_hold(
    sessions, make_wallet, balance_of
):
    wallet = make_wallet(funded_minor=100_000)
    request_id = request(sessions, wallet)
    with sessions.begin() as session:
        # The API reads the request (pending) to check who may see it, and keeps it ...
        seen = provisioning.get_provisioning_request(session, request_id)
        assert seen.status == "pending"
        # ... a worker approves it meanwhile, with a hold ...
        assert decide(sessions, request_id)[0] == "approved"
        # ... and the release, under the lock, must act on what is true now.
        provisioning.release(session, request_id, now=datetime.now(UTC))
    assert shown(sessions, request_id).status == "released"
    assert balance_of(wallet).held_minor == 0


SEED_MONTHLY_MINOR = {"small": 15_000, "medium": 30_000, "large": 60_000, "enterprise": 120_000}


@pytest.mark.parametrize("plan", SEED_PLANS)
def test_by_default_r5_covers_no_plan_as_the_original_system_had_it(sessions, make_wallet, plan):
    wallet = make_wallet(funded_minor=500)  # R5.00; Small costs R150.00 a month
    with sessions.begin() as session:
        request_id = provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=f"vm-{uuid.uuid4()}", plan=plan
        ).id
    with sessions.begin() as session:
        decided = provisioning.decide(
            session, request_id, now=datetime.now(UTC), settings=BillingSettings()
        )
        assert (decided.status, decided.reserve_minor, decided.shortfall_minor) == (
            "rejected",
            SEED_MONTHLY_MINOR[plan],  # the reserve is a month of the plan
            SEED_MONTHLY_MINOR[plan] - 500,
        )


def test_a_reserve_of_a_day_is_configurable_and_then_r5_covers_small(sessions, make_wallet):
    day = BillingSettings.from_env({"PROVISIONING_RESERVE_HOURS": "24"})
    wallet = make_wallet(funded_minor=500)
    with sessions.begin() as session:
        request_id = provisioning.request_provisioning(
            session, wallet_id=wallet, resource_id=f"vm-{uuid.uuid4()}", plan="small"
        ).id
    with sessions.begin() as session:
        decided = provisioning.decide(session, request_id, now=datetime.now(UTC), settings=day)
        assert (decided.status, decided.reserve_minor) == ("approved", 493)
