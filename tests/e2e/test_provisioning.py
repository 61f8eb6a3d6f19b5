"""Provisioning over the real pipeline: requests over HTTP, decided by Dramatiq worker
processes, confirmed and released by the platform; and a race no worker count can break."""

from __future__ import annotations

import subprocess
import time
import uuid

import psycopg
import pytest

from ledger.adjustment import Direction, adjust
from ledger.plan import price_of_hour, price_of_hours
from ledger.settings import BillingSettings
from workers.jobs import DECIDE_PROVISIONING, JobSender

from .conftest import BIN, api_call, start, stop, worker_command

RESERVE_MINOR = price_of_hours(15_000, 1, BillingSettings().reserve_hours)


call = api_call


def funded_wallet(web, sessions, amount_minor):
    status, wallet = call(
        web, "POST", "/wallets", {"owner_id": f"e2e-{uuid.uuid4()}", "currency": "ZAR"}
    )
    assert status == 201
    with sessions.begin() as session:
        adjust(
            session,
            wallet_id=uuid.UUID(wallet["id"]),
            direction=Direction.CREDIT,
            amount_minor=amount_minor,
            reason="e2e funding",
            actor="tests",
        )
    return wallet["id"]


def wait_for(predicate, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail("timed out")


@pytest.fixture(scope="module")
def workers(web, tmp_path_factory):
    """Three worker processes, as three machines would run them."""
    process = start(
        worker_command(processes=3, threads=4),
        web.env,
        tmp_path_factory.mktemp("workers") / "worker.log",
    )
    yield web
    assert stop(process) == 0


@pytest.mark.slow
def test_the_platforms_flow_over_http(workers, sessions):
    web = workers
    wallet = funded_wallet(web, sessions, 100_000)
    status, created = call(
        web,
        "POST",
        "/provisioning-requests",
        {"wallet_id": wallet, "resource_id": f"vm-{uuid.uuid4()}", "plan": "small"},
    )
    assert (status, created["status"]) == (202, "pending")
    path = f"/provisioning-requests/{created['id']}"
    decided = wait_for(lambda: (r := call(web, "GET", path)[1])["status"] != "pending" and r)
    assert (decided["status"], decided["reserve_minor"]) == ("approved", RESERVE_MINOR)
    assert call(web, "GET", f"/wallets/{wallet}")[1]["held_minor"] == RESERVE_MINOR

    status, active = call(web, "POST", f"{path}/confirm")
    assert (status, active["status"], active["billed_hours"]) == (200, "active", 1)
    shown = call(web, "GET", f"/wallets/{wallet}")[1]
    assert (shown["balance_minor"], shown["held_minor"]) == (100_000 - price_of_hour(15_000, 1), 0)
    burn = call(web, "GET", f"/wallets/{wallet}/burn-rate")[1]
    assert burn["burn_minor_per_month"] == 15_000
    assert burn["hours_to_zero"] == shown["available_minor"] * 730 // 15_000

    status, released = call(web, "POST", f"{path}/release")
    assert (status, released["status"]) == (200, "released")
    status, _ = call(web, "POST", f"{path}/confirm")
    assert status == 409


@pytest.mark.slow
def test_twenty_requests_race_for_seven_reserves_across_worker_processes(
    workers, sessions, database_url, broker_url
):
    web = workers
    wallet = funded_wallet(web, sessions, 7 * RESERVE_MINOR + RESERVE_MINOR // 2)
    ids = []
    for _ in range(20):
        status, created = call(
            web,
            "POST",
            "/provisioning-requests",
            {"wallet_id": wallet, "resource_id": f"vm-{uuid.uuid4()}", "plan": "small"},
        )
        assert status == 202
        ids.append(created["id"])
    # Each request twice more at once: the broker and the relay deliver at least once.
    sender = JobSender(broker_url)
    for request_id in ids * 2:
        sender.send(DECIDE_PROVISIONING, request_id)
    sender.close()

    def decided():
        with psycopg.connect(database_url) as connection:
            rows = connection.execute(
                "SELECT status, count(*) FROM provisioning_requests"
                " WHERE id = ANY(%s::uuid[]) GROUP BY status",
                (ids,),
            ).fetchall()
        counts = dict(rows)
        return counts if "pending" not in counts else None

    assert wait_for(decided) == {"approved": 7, "rejected": 13}
    shown = call(web, "GET", f"/wallets/{wallet}")[1]
    assert shown["held_minor"] == 7 * RESERVE_MINOR
    assert shown["available_minor"] == RESERVE_MINOR // 2
    verified = subprocess.run(
        [str(BIN / "walletctl"), "verify"], env=web.env, capture_output=True, text=True, timeout=120
    )
    assert verified.returncode == 0, verified.stdout
